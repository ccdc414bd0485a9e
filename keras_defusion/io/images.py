"""Reading photos and masks, listing them, and writing PNG maps.

Every loader here raises `ImageReadError` with the file's path in the message,
so callers can report a bad file and carry on with the rest.
"""

import os
import pathlib
import warnings

import numpy as np
from PIL import ExifTags
from PIL import Image
from PIL import ImageOps

from keras_defusion.errors import DataWarning
from keras_defusion.errors import ImageReadError
from keras_defusion.io.files import atomic_write

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Pillow's own default is ~89 MP (a warning) and 2x that (an error); we turn the
# warning into an error so a decompression bomb never reaches the decoder.
MAX_IMAGE_PIXELS = 89_478_485

POLARITIES = ("blur-white", "sharp-white")


def is_image_file(path):
    """Whether `path` has an image extension (any case)."""
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def is_hidden(path):
    """Whether a file or folder name starts with "." (macOS `._x.jpg`, `.DS_Store`)."""
    return pathlib.PurePath(path).name.startswith(".")


def list_images(folder, recursive=False):
    """The image files of `folder`, sorted, hidden names (".x") left out.

    Args:
        folder: a folder.
        recursive: also search its subfolders (not hidden ones).

    Returns:
        A sorted list of `pathlib.Path`.
    """
    folder = pathlib.Path(folder)
    entries = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        entry for entry in entries
        if entry.is_file() and is_image_file(entry)
        and not any(is_hidden(part) for part in entry.relative_to(folder).parts)
    )


def open_image(path, load=True):
    """Opens an image file, refusing missing, empty and oversized ones.

    The one decompression-bomb guard: a file over `MAX_IMAGE_PIXELS` is
    refused from its header, before any pixel is decoded.

    Args:
        path: the file.
        load: decode the pixels now (False reads the header only).

    Returns:
        A `PIL.Image.Image`.

    Raises:
        ImageReadError: the file cannot be used (the message names it).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageReadError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ImageReadError(f"{path}: is a folder, not an image")
    if os.path.getsize(path) == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ImageReadError(
                    f"{path}: {image.width}x{image.height} pixels is over the "
                    f"limit of {MAX_IMAGE_PIXELS} (possible decompression bomb)"
                )
            if load:
                image.load()
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(f"{path}: refused as a decompression bomb ({e})")
    except Exception as e:  # Pillow raises a zoo of types on corrupt data.
        raise ImageReadError(f"{path}: not a readable image ({e})") from None
    return image


def to_rgb_array(image):
    """Converts a PIL image of any mode to an RGB uint8 array [H, W, 3].

    EXIF orientation is applied. Grey, palette, CMYK and 16-bit images are
    converted; RGBA loses its alpha channel (the colour values are kept).

    16-bit grey ("I;16*") is always scaled by 255 / 65535, whatever its
    values, so a dark 16-bit photo stays dark; this matches uint16 arrays in
    `keras_defusion.inference.detector` and `load_gray_float`. Mode "I" (32-bit int) is
    what Pillow gives for 16-bit PNG/TIFF data, so it is read on the same
    0..65535 scale (values outside are clipped).
    """
    # No copy unless the orientation or the mode needs one: each copy of a
    # photo near the pixel limit costs hundreds of MB.
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        array = np.clip(array / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(array[..., None], 3, axis=-1)
    if image.mode == "F":
        array = np.clip(np.asarray(image) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(array[..., None], 3, axis=-1)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def load_rgb(path):
    """Reads a photo as RGB uint8 [H, W, 3], EXIF orientation applied."""
    image = open_image(path)
    try:
        return to_rgb_array(image)
    except Exception as e:
        raise ImageReadError(f"{path}: cannot convert to RGB ({e})") from None
    finally:
        image.close()


def load_gray_float(path):
    """Reads a single-channel map as float32 [H, W] in [0, 1].

    8-bit files are divided by 255, 16-bit ones by 65535. Colour files (RGB,
    RGBA, palette) are read through their luminance; 1-bit files give 0 or 1.
    """
    return gray_values(open_image(path), path)


def gray_values(image, path):
    """`load_gray_float` of an image already opened (`open_image`)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float32) / 65535.0
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float32)
    elif image.mode == "1":
        array = np.asarray(image, dtype=np.float32)
    else:
        if image.mode not in ("L",):
            image = image.convert("L")
        array = np.asarray(image, dtype=np.float32) / 255.0
    if array.size == 0:
        raise ImageReadError(f"{path}: image has no pixels")
    return np.clip(array, 0.0, 1.0)


# A mask is "not binary" when more than this share of its pixels is grey
# (between 0.1 and 0.9): JPEG-saved masks have a little grey at edges.
MAX_GREY_SHARE = 0.01


def load_mask(path, polarity="blur-white"):
    """Reads a ground-truth mask as float32 {0, 1} [H, W] with 1 = blurred.

    Grey values are thresholded at 0.5. A mask whose shape is in its alpha
    channel (colour constant) is read from its alpha. A mask of two values
    both under 0.5 (a label map: 0 and 1 out of 255) is read as such. Warns
    (`DataWarning`, naming the file) when the result has no blurred pixel,
    when many pixels are grey, and when a label map was read.

    Args:
        path: the mask file (L, RGB, RGBA, LA, palette or 1-bit).
        polarity: `"blur-white"` (CUHK: white = blurred) or `"sharp-white"`
            (DUT: white = sharp, flipped here).
    """
    check_polarity(polarity)
    values = _mask_values(open_image(path), path)
    grey_share = float(np.mean((values > 0.1) & (values < 0.9)))
    if grey_share > MAX_GREY_SHARE:
        _warn(f"{path}: not a binary mask ({grey_share:.0%} of its pixels are grey); "
              "thresholded at 0.5")
    mask = (values >= 0.5).astype(np.float32)
    distinct = np.unique(values)
    if len(distinct) == 2 and distinct[1] < 0.5:
        mask = (values > distinct[0]).astype(np.float32)
        _warn(f"{path}: read as a label map (its two values, {distinct[0] * 255:.0f} and "
              f"{distinct[1] * 255:.0f} of 255, are both dark): {distinct[1] * 255:.0f} = white")
    mask = 1.0 - mask if polarity == "sharp-white" else mask
    if not mask.any():
        _warn(f"{path}: the mask has no blurred pixel (polarity {polarity}); "
              "check the file and --polarity")
    return mask


def _mask_values(image, path):
    """Grey values 0..1 of a mask image; its alpha where the shape is there."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
        grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        if np.ptp(grey) < 1 / 255 and np.ptp(alpha) >= 0.5:
            return alpha
        return grey
    return gray_values(image, path)


def check_polarity(polarity):
    if polarity not in POLARITIES:
        raise ValueError(
            f"polarity must be one of {POLARITIES}, got {polarity!r}"
        )


def save_png(path, array):
    """Writes a uint8 array (grey [H, W] or RGB [H, W, 3]) as PNG atomically."""
    image = Image.fromarray(np.asarray(array, dtype=np.uint8))
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def map_to_uint8(prob_map):
    """A float map in [0, 1] to uint8 0..255 (rounded)."""
    scaled = np.asarray(prob_map) * 255.0  # the one temporary, for large maps
    scaled += 0.5
    return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)


def _warn(message):
    warnings.warn(message, DataWarning, stacklevel=3)
