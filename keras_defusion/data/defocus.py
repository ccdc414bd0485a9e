"""Defocus blur painted onto a photo: a pillbox blur under a soft random mask.

The building block of synthetic defocus, for the synthetic pairs
(`keras_defusion.data.synthetic`) and for extra blurred regions on real
training crops (`keras_defusion.data.augmentation.SyntheticDefocus`). NumPy
and SciPy, driven by a `numpy.random.Generator`.
"""

import numpy as np
from scipy import ndimage
from scipy import signal

# Blur radii as fractions of an image's short side: a defocus visible at that
# size without erasing every structure.
RADIUS_FRACTIONS = (0.015, 0.04)

def disk_kernel(radius):
    """A normalised pillbox kernel of (real) `radius`, edge pixels antialiased.

    Args:
        radius: disk radius in pixels, > 0.

    Returns:
        float64 [2k + 1, 2k + 1] summing to 1, with k = ceil(radius).
    """
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    half = int(np.ceil(radius))
    # 4x4 supersampling per pixel gives the partial coverage at the rim.
    steps = (np.arange(4) + 0.5) / 4 - 0.5
    grid = np.arange(-half, half + 1)
    fine = (grid[:, None] + steps[None, :]).ravel()
    inside = (fine[:, None] ** 2 + fine[None, :] ** 2) <= radius**2
    size = 2 * half + 1
    kernel = inside.reshape(size, 4, size, 4).mean(axis=(1, 3))
    return kernel / kernel.sum()


def disk_blur(image, radius):
    """Blurs an [H, W, C] array with a pillbox (FFT, reflected borders)."""
    kernel = disk_kernel(radius)
    pad = kernel.shape[0] // 2
    image = np.asarray(image, dtype=np.float32)
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    kernel = kernel[..., None].astype(np.float32)
    blurred = signal.fftconvolve(padded, kernel, mode="valid", axes=(0, 1))
    return blurred.astype(np.float32)


def soft_mask(rng, height, width, feather):
    """A soft blur mask in [0, 1]: thresholded smooth noise plus a depth ramp."""
    # Noise on a coarse grid, upsampled: blobs a few per image side.
    cells = int(rng.integers(2, 6))
    coarse = rng.normal(size=(cells + 1, cells + 1))
    zoom = (height / cells, width / cells)
    field = ndimage.zoom(coarse, zoom, order=3, mode="nearest", grid_mode=True)
    field = field[:height, :width]
    field = (field - field.mean()) / (field.std() + 1e-6)
    ys, xs = np.meshgrid(
        np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij"
    )
    direction = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(direction) * xs + np.sin(direction) * ys
    field = field + rng.uniform(0, 2.5) * ramp
    blurred_fraction = rng.uniform(0.3, 0.8)
    threshold = np.quantile(field, 1.0 - blurred_fraction)
    hard = (field >= threshold).astype(np.float32)
    if feather > 0:
        hard = ndimage.gaussian_filter(hard, feather, mode="nearest")
    return hard


def default_radius_range(height, width):
    """Blur radii in pixels for this image size: `RADIUS_FRACTIONS` of the
    short side, at least 1.5 and 3 px."""
    side = min(height, width)
    low, high = RADIUS_FRACTIONS
    return max(1.5, low * side), max(3.0, high * side)


def add_defocus(rng, image, mask, radius):
    """Blurs a random region of `image` and adds it to `mask`.

    The region is a `soft_mask` feathered by half the blur radius, as a
    defocus edge is; the photo is blended with its pillbox-blurred copy
    through it, and the pixels where it reaches 0.5 become blurred in the
    mask. Blurred pixels stay blurred (more so); no noise is added.

    Args:
        rng: a `numpy.random.Generator`.
        image: float RGB [H, W, 3], 0..255.
        mask: float [H, W, 1] in {0, 1}, 1 = blurred.
        radius: pillbox radius in pixels, > 0.

    Returns:
        `(image, mask)`, float32, the shapes of the inputs.
    """
    image = np.asarray(image, dtype=np.float32)
    height, width = image.shape[:2]
    soft = soft_mask(rng, height, width, feather=radius / 2)[..., None]
    blended = soft * disk_blur(image, radius) + (1.0 - soft) * image
    grown = np.maximum(np.asarray(mask, dtype=np.float32), (soft >= 0.5).astype(np.float32))
    return blended.astype(np.float32), grown
