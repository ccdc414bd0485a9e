"""HiFST-like baseline (Golestaneh and Karam, CVPR 2017), numpy/scipy version.

High-frequency multiscale Fusion and Sort Transform of gradient magnitudes:

1. grey image, 3x3 Gaussian (sigma 0.5), Sobel gradient magnitude;
2. around every `stride`-th pixel, the 2-D DCT of the M x M patch of the
   gradient magnitude for M in (7, 15, 31, 63); the high-frequency
   coefficients (u + v >= M - 1) of all scales are pooled per pixel and
   sorted by magnitude ("fusion and sort");
3. the smallest 1 + sum(M) sorted coefficients form as many layers; each
   layer is divided by its maximum over the image and the layers are
   max-pooled into one sharpness map;
4. the map is weighted by its local entropy (7x7), smoothed with an
   edge-aware domain-transform recursive filter guided by the image,
   resized back to the photo's size and normalised.

The output here is a blur map, 1 - sharpness in [0, 1] (1 = blurred). The
patch DCTs are computed as two batched matrix products on sliding windows,
so a 640x480 photo takes about a second. `backend="blur-detector"` uses the
PyPI package `blur-detector` instead (optional; it needs scikit-image < 0.27
and OpenCV, and returns high = sharp, flipped here).
"""

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from keras_defusion.errors import RuntimeUnavailable
from keras_defusion.evaluation.baselines.lbp import normalise
from keras_defusion.evaluation.baselines.lbp import to_gray
from keras_defusion.evaluation.metrics import resize_bilinear

DEFAULT_SCALES = (7, 15, 31, 63)


def dct_matrix(size):
    """Orthonormal DCT-II matrix [size, size] (row u = frequency u): scipy's DCT of the identity."""
    return scipy.fft.dct(np.eye(size), norm="ortho", axis=0)


def gradient_magnitude(gray):
    """Sobel gradient magnitude after a 3x3 Gaussian (sigma 0.5)."""
    smooth = ndimage.gaussian_filter(gray, sigma=0.5, truncate=2.0, mode="reflect")
    gx = ndimage.sobel(smooth, axis=1, mode="reflect")
    gy = ndimage.sobel(smooth, axis=0, mode="reflect")
    return np.hypot(gx, gy)


def _high_frequency_coefficients(padded, pad, rows, cols, size):
    """|DCT| high-frequency coefficients of size x size patches: [R, C, K]."""
    half = size // 2
    dct = dct_matrix(size).astype(np.float32)
    # Stage 1: DCT along y of the vertical windows centred on `rows`.
    windows = sliding_window_view(padded, size, axis=0)[rows + pad - half]  # [R, Wp, M]
    along_y = windows @ dct.T  # [R, Wp, U]
    # Stage 2: DCT along x of the horizontal windows centred on `cols`.
    patches = np.ascontiguousarray(sliding_window_view(along_y, size, axis=1)[:, cols + pad - half])
    # One large matrix product is much faster than R x C small ones.
    coefficients = (patches.reshape(-1, size) @ dct.T).reshape(patches.shape)  # [R, C, U, V]
    u, v = np.indices((size, size))
    return np.abs(coefficients[..., u + v >= size - 1])


def hifst_sharpness_grid(gray, scales=DEFAULT_SCALES, stride=4, rows_per_chunk=16):
    """The max-pooled, normalised sorted-coefficient map on a `stride` grid.

    Returns:
        (sharpness [R, C], rows, cols): the map and the pixel rows/cols it
        samples.
    """
    magnitude = gradient_magnitude(gray).astype(np.float32)
    pad = max(scales) // 2
    padded = np.pad(magnitude, pad, mode="symmetric")
    rows = np.arange(0, gray.shape[0], stride)
    cols = np.arange(0, gray.shape[1], stride)
    layers = 1 + int(sum(scales))
    sorted_layers = np.empty((len(rows), len(cols), layers), dtype=np.float32)
    for start in range(0, len(rows), rows_per_chunk):
        chunk = rows[start:start + rows_per_chunk]
        pooled = np.concatenate(
            [_high_frequency_coefficients(padded, pad, chunk, cols, m) for m in scales], axis=-1
        )
        smallest = np.partition(pooled, layers - 1, axis=-1)[..., :layers]
        sorted_layers[start:start + len(chunk)] = np.sort(smallest, axis=-1)
    peak = sorted_layers.reshape(-1, layers).max(axis=0)
    sorted_layers /= np.where(peak > 0, peak, 1.0)
    return sorted_layers.max(axis=-1), rows, cols


def local_entropy(values, size=7, bins=256):
    """Shannon entropy (bits) of the 8-bit-quantised values in a size x size window."""
    levels = np.clip(np.round(normalise(values) * (bins - 1)), 0, bins - 1).astype(np.int64)
    counts_total = float(size * size)
    entropy = np.zeros(values.shape)
    for level in np.unique(levels):
        frequency = ndimage.uniform_filter((levels == level).astype(np.float64), size, mode="reflect")
        frequency = np.clip(frequency, 0.0, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            term = np.where(frequency > 0.5 / counts_total, -frequency * np.log2(frequency), 0.0)
        entropy += term
    return entropy


def _recursive_filter_rows(values, derivative, sigma):
    """One horizontal pass (left-right, then right-left) of the domain-transform RF."""
    feedback = np.exp(-np.sqrt(2.0) / sigma)
    weights = feedback ** derivative
    out = values.copy()
    for i in range(1, out.shape[1]):
        out[:, i] += weights[:, i] * (out[:, i - 1] - out[:, i])
    for i in range(out.shape[1] - 2, -1, -1):
        out[:, i] += weights[:, i + 1] * (out[:, i + 1] - out[:, i])
    return out


def domain_transform_filter(values, guide, sigma_s=15.0, sigma_r=0.25, iterations=3):
    """Edge-aware recursive filter (Gastal and Oliveira, 2011) guided by `guide`."""
    dx = np.zeros_like(guide)
    dy = np.zeros_like(guide)
    dx[:, 1:] = np.abs(np.diff(guide, axis=1))
    dy[1:, :] = np.abs(np.diff(guide, axis=0))
    horizontal = 1.0 + sigma_s / sigma_r * dx
    vertical = (1.0 + sigma_s / sigma_r * dy).T
    out = values.astype(np.float64)
    for i in range(iterations):
        sigma = sigma_s * np.sqrt(3.0) * 2 ** (iterations - (i + 1)) / np.sqrt(4 ** iterations - 1)
        out = _recursive_filter_rows(out, horizontal, sigma)
        out = _recursive_filter_rows(out.T, vertical, sigma).T
    return out


def hifst_blur_map(image, scales=DEFAULT_SCALES, stride=4, backend="numpy"):
    """Blur map of a photo with the HiFST-like method.

    Args:
        image: RGB [H, W, 3] (uint8 or float in [0, 1]) or grey [H, W].
        scales: DCT patch sizes (odd).
        stride: the coefficients are computed every `stride` pixels and the
            map is resized back (the original is per pixel and much slower).
        backend: "numpy" (this module) or "blur-detector" (the optional
            PyPI package).

    Returns:
        float32 [H, W] in [0, 1], 1 = blurred.
    """
    gray = to_gray(image)
    if backend == "blur-detector":
        return _blur_detector_map(gray)
    if backend != "numpy":
        raise ValueError(f"backend must be 'numpy' or 'blur-detector', got {backend!r}")
    if any(m % 2 == 0 or m < 3 for m in scales):
        raise ValueError(f"scales must be odd sizes >= 3, got {scales}")
    sharpness, rows, cols = hifst_sharpness_grid(gray, scales, stride)
    weighted = local_entropy(sharpness) * sharpness
    guide = ndimage.gaussian_filter(gray, 1.0)[np.ix_(rows, cols)]
    smoothed = domain_transform_filter(weighted, guide)
    full = resize_bilinear(smoothed, gray.shape)
    return (1.0 - normalise(full)).astype(np.float32)


def import_blur_detector():
    """The optional `blur_detector` module, or RuntimeUnavailable saying how to install it."""
    try:
        import blur_detector
    except ImportError as e:
        raise RuntimeUnavailable(
            "the hifst-blur-detector baseline needs the optional package blur-detector: "
            "pip install blur-detector 'scikit-image<0.27' opencv-python-headless "
            "(or the hifst extra: pip install -e .[hifst])"
        ) from e
    return blur_detector


def _blur_detector_map(gray):
    blur_detector = import_blur_detector()
    sharp = blur_detector.detectBlur(np.round(gray * 255).astype(np.uint8), show_progress=False)
    return (1.0 - normalise(np.asarray(sharp, dtype=np.float64))).astype(np.float32)
