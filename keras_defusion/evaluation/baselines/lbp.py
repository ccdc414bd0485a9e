"""LBP sharpness baseline (Yi and Eramian, IEEE TIP 2016), numpy version.

Per pixel, a local binary pattern with P = 8 neighbours on a circle of
radius R = 1 (diagonals bilinearly interpolated) whose bits are set where the
grey-level difference to the centre has magnitude >= T_LBP = 0.016 (grey in
[0, 1]). Patterns are reduced to rotation-invariant uniform codes (riu2:
the count of set bits for uniform patterns, 9 for the rest). The sharpness
at a pixel is the fraction of the "sharp" codes 6, 7, 8 and 9 in a square
window around it, computed for windows of 11, 15 and 21 pixels and averaged.

The paper then propagates the sharpness with alpha matting and a multi-scale
inference step; here an edge-aware guided filter (He et al., guided by the
grey image) stands in for that propagation. The blur map is
1 - sharpness normalised to [0, 1] per image (1 = blurred).
"""

import numpy as np
from scipy import ndimage

T_LBP = 0.016
DEFAULT_WINDOWS = (11, 15, 21)
# ITU-R BT.601 luma (MATLAB's rgb2gray), scaled to sum to exactly 1.
LUMA_WEIGHTS = np.array([0.2989, 0.5870, 0.1140])


def to_gray(image):
    """RGB uint8/float or grey image -> float64 grey [H, W] in [0, 1]."""
    array = np.asarray(image)
    scale = 255.0 if array.dtype == np.uint8 else 65535.0 if array.dtype == np.uint16 else 1.0
    array = array.astype(np.float64) / scale
    if array.ndim == 3:
        if array.shape[-1] == 1:
            array = array[..., 0]
        else:
            array = array[..., :3] @ (LUMA_WEIGHTS / LUMA_WEIGHTS.sum())
    if array.ndim != 2 or min(array.shape) < 2:
        raise ValueError(f"expected an image [H, W] or [H, W, 3] of at least 2x2, got {np.shape(image)}")
    return np.clip(array, 0.0, 1.0)


def _circle_neighbours(gray, radius=1.0, points=8):
    """The `points` neighbours of every pixel, bilinearly sampled: [P, H, W]."""
    pad = int(np.ceil(radius)) + 1
    padded = np.pad(gray, pad, mode="symmetric")
    height, width = gray.shape
    neighbours = np.empty((points,) + gray.shape)
    for p in range(points):
        angle = 2.0 * np.pi * p / points
        dy, dx = -radius * np.sin(angle), radius * np.cos(angle)
        dy, dx = round(dy, 12), round(dx, 12)  # Exact 0/1 on the axes.
        y0, x0 = int(np.floor(dy)), int(np.floor(dx))
        fy, fx = dy - y0, dx - x0
        sample = np.zeros(gray.shape)
        for oy, wy in ((y0, 1.0 - fy), (y0 + 1, fy)):
            for ox, wx in ((x0, 1.0 - fx), (x0 + 1, fx)):
                weight = wy * wx
                if weight > 0:
                    sample += weight * padded[pad + oy:pad + oy + height, pad + ox:pad + ox + width]
        neighbours[p] = sample
    return neighbours


def lbp_riu2(gray, threshold=T_LBP, points=8, radius=1.0):
    """Rotation-invariant uniform LBP codes with the magnitude threshold.

    A bit is set where |neighbour - centre| >= threshold. Uniform patterns
    (at most 2 circular 0/1 transitions) get their number of set bits
    (0..P); the others get P + 1.

    Args:
        gray: float grey image [H, W] in [0, 1].

    Returns:
        int array [H, W] of codes 0..P+1.
    """
    gray = np.asarray(gray, dtype=np.float64)
    bits = np.abs(_circle_neighbours(gray, radius, points) - gray[None]) >= threshold
    ones = bits.sum(axis=0)
    transitions = (bits != np.roll(bits, 1, axis=0)).sum(axis=0)
    return np.where(transitions <= 2, ones, points + 1)


def lbp_sharpness(gray, window, threshold=T_LBP):
    """Fraction of sharp LBP codes (6..9) in a `window` x `window` square."""
    sharp = (lbp_riu2(gray, threshold) >= 6).astype(np.float64)
    return ndimage.uniform_filter(sharp, size=window, mode="reflect")


def guided_filter(guide, source, radius, eps):
    """Edge-aware smoothing of `source` guided by `guide` (He et al., 2010)."""
    size = 2 * radius + 1

    def box(x):
        return ndimage.uniform_filter(x, size=size, mode="reflect")

    mean_i, mean_p = box(guide), box(source)
    var_i = box(guide * guide) - mean_i * mean_i
    cov_ip = box(guide * source) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def normalise(values):
    """Min-max scaling to [0, 1]; a constant array gives zeros."""
    low, high = float(values.min()), float(values.max())
    if high - low <= 1e-12:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def lbp_blur_map(image, windows=DEFAULT_WINDOWS, threshold=T_LBP, refine_radius=8, refine_eps=1e-3):
    """Blur map of a photo with the LBP sharpness metric.

    Args:
        image: RGB [H, W, 3] (uint8 or float in [0, 1]) or grey [H, W].
        windows: square window sizes of the multi-scale sharpness.
        threshold: T_LBP on |neighbour - centre| (grey in [0, 1]).
        refine_radius: radius of the guided-filter propagation; 0 turns it off.
        refine_eps: regularisation of the guided filter.

    Returns:
        float32 [H, W] in [0, 1], 1 = blurred.
    """
    gray = to_gray(image)
    sharp = (lbp_riu2(gray, threshold) >= 6).astype(np.float64)
    sharpness = np.mean(
        [ndimage.uniform_filter(sharp, size=w, mode="reflect") for w in windows], axis=0
    )
    if refine_radius > 0:
        sharpness = guided_filter(gray, sharpness, refine_radius, refine_eps)
    return (1.0 - normalise(sharpness)).astype(np.float32)
