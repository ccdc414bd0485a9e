"""Pictures of blur maps for people: colour maps, overlays, panels, masks.

All functions take a photo as RGB uint8 [H, W, 3] (grey [H, W] is accepted)
and a blur map as float [H, W] in [0, 1] (1 = blurred) of the same size, and
return uint8 arrays ready for `PIL.Image.fromarray` or `image_io.save_png`.
"""

import functools

import matplotlib
import numpy as np
from PIL import Image

COLORMAPS = ("inferno", "gray")
# Large photos are tinted this many pixels at a time (bounded memory).
STRIP_PIXELS = 1 << 22
BLUR_TINT = (255, 0, 0)


def _map_view(blur_map):
    """The map as float32 [H, W] (no copy when it already is), shape checked."""
    blur_map = np.asarray(blur_map, dtype=np.float32)
    if blur_map.ndim == 3 and blur_map.shape[-1] == 1:
        blur_map = blur_map[..., 0]
    if blur_map.ndim != 2:
        raise ValueError(f"a blur map must be [H, W], got shape {blur_map.shape}")
    return blur_map


def _check_map(blur_map):
    blur_map = np.nan_to_num(_map_view(blur_map))  # a copy: the caller's map is left as it was
    return np.clip(blur_map, 0.0, 1.0, out=blur_map)


def _check_photo(photo, map_shape):
    photo = np.asarray(photo)
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=-1)
    if photo.ndim != 3 or photo.shape[-1] not in (3, 4):
        raise ValueError(f"a photo must be [H, W, 3], got shape {photo.shape}")
    if photo.shape[:2] != tuple(map_shape):
        raise ValueError(
            f"photo size {photo.shape[:2]} differs from the map's {tuple(map_shape)}"
        )
    photo = photo[..., :3]
    if photo.dtype != np.uint8:
        photo = np.clip(photo, 0, 255).astype(np.uint8)
    return photo


def colorize(blur_map, cmap="inferno"):
    """A blur map as an RGB uint8 image [H, W, 3].

    Args:
        blur_map: float [H, W] in [0, 1].
        cmap: `"inferno"` (dark = sharp, yellow = blurred) or `"gray"`
            (white = blurred).
    """
    blur_map = _check_map(blur_map)
    if cmap == "gray":
        grey = np.clip(blur_map * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if cmap != "inferno":
        raise ValueError(f"cmap must be one of {COLORMAPS}, got {cmap!r}")
    # matplotlib's 256-colour table: dark = sharp, bright yellow = blurred.
    # Indexed as matplotlib indexes it (floor(x * 256), 1.0 -> 255), from a
    # uint8 copy of the table: the same colours at a third of the time.
    index = np.minimum((blur_map * np.float32(256)).astype(np.intp), 255)
    return _colour_table(cmap)[index]


@functools.lru_cache(maxsize=None)
def _colour_table(cmap):
    colours = matplotlib.colormaps[cmap](np.arange(256))[:, :3] * 255.0
    return np.clip(colours + 0.5, 0, 255).astype(np.uint8)


def binary_mask(blur_map, threshold=0.5):
    """uint8 mask [H, W]: 255 where the map is >= `threshold`, else 0."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return np.where(_check_map(blur_map) >= threshold, 255, 0).astype(np.uint8)


def overlay(photo, blur_map, color=BLUR_TINT, alpha=0.5, threshold=None):
    """The photo with blurred regions tinted in `color`.

    Args:
        photo: RGB uint8 [H, W, 3].
        blur_map: float [H, W] in [0, 1], the photo's size.
        color: RGB tint of blurred regions (default red).
        alpha: opacity of the tint where the map is 1.
        threshold: None tints in proportion to the map (soft); a number
            tints only pixels at or above it, at full `alpha`.

    Returns:
        RGB uint8 [H, W, 3].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    blur_map = _map_view(blur_map)
    photo = _check_photo(photo, blur_map.shape)
    tinted = np.empty_like(photo)
    # A strip of rows at a time, so a photo near the pixel limit needs no
    # float copy of itself. PIL blends in C.
    rows = max(1, STRIP_PIXELS // max(1, photo.shape[1]))
    for top in range(0, photo.shape[0], rows):
        strip = _check_map(blur_map[top:top + rows])
        if threshold is not None:
            strip = binary_mask(strip, threshold) / np.float32(255.0)
        weight = np.clip(strip * np.float32(alpha * 255.0) + 0.5, 0, 255).astype(np.uint8)
        base = Image.fromarray(photo[top:top + rows])
        tint = Image.new("RGB", base.size, tuple(int(c) for c in color))
        tinted[top:top + rows] = np.asarray(Image.composite(tint, base, Image.fromarray(weight)))
    return tinted


def side_by_side(photo, blur_map, cmap="inferno", max_side=1024, gap=8, threshold=None):
    """A panel: photo | colour-mapped blur map | overlay, left to right.

    Args:
        photo: RGB uint8 [H, W, 3].
        blur_map: float [H, W] in [0, 1], the photo's size.
        cmap: colour map of the middle tile (see `colorize`).
        max_side: each tile is scaled down so its longer side is at most
            this many pixels (a 12-MP photo gives a panel of a few MP).
        gap: white pixels between tiles.
        threshold: passed to `overlay`.

    Returns:
        RGB uint8 [h, 3 w + 2 gap, 3].
    """
    blur_map = _map_view(blur_map)
    photo = _check_photo(photo, blur_map.shape)
    height, width = blur_map.shape
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        # Scale down first, so a 12-MP photo is tinted at panel size only.
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        photo = np.asarray(Image.fromarray(photo).resize(size, Image.BILINEAR, reducing_gap=2.0))
        blur_map = np.asarray(Image.fromarray(blur_map).resize(size, Image.BILINEAR))
    blur_map = _check_map(blur_map)
    tiles = [photo, colorize(blur_map, cmap), overlay(photo, blur_map, threshold=threshold)]
    tile_height, tile_width = photo.shape[:2]
    panel = np.full((tile_height, 3 * tile_width + 2 * gap, 3), 255, dtype=np.uint8)
    for index, tile in enumerate(tiles):
        left = index * (tile_width + gap)
        panel[:, left:left + tile_width] = tile
    return panel
