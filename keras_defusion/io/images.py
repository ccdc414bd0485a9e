"""Reading photos and masks, and writing PNG files atomically.

Every loader here raises `ImageReadError` with the file's path in the message,
so callers can report a bad file and carry on with the rest.
"""

import json
import os
import tempfile
import warnings

import numpy as np
from PIL import Image
from PIL import ImageOps

from keras_defusion.errors import ImageReadError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Pillow's own default is ~89 MP (a warning) and 2x that (an error); we turn the
# warning into an error so a decompression bomb never reaches the decoder.
MAX_IMAGE_PIXELS = 89_478_485

POLARITIES = ("blur-white", "sharp-white")


def is_image_file(path):
    """Whether `path` has an image extension (any case)."""
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def _open(path):
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
            image.load()
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(f"{path}: refused as a decompression bomb ({e})")
    except OSError as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from None
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
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        array = np.clip(array / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(array[..., None], 3, axis=-1)
    if image.mode == "F":
        array = np.clip(np.asarray(image) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(array[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def load_rgb(path):
    """Reads a photo as RGB uint8 [H, W, 3], EXIF orientation applied."""
    image = _open(path)
    try:
        return to_rgb_array(image)
    except Exception as e:
        raise ImageReadError(f"{path}: cannot convert to RGB ({e})") from None


def load_gray_float(path):
    """Reads a single-channel map as float32 [H, W] in [0, 1].

    8-bit files are divided by 255, 16-bit ones by 65535. Colour files (RGB,
    RGBA, palette) are read through their luminance; 1-bit files give 0 or 1.
    """
    image = _open(path)
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


def load_mask(path, polarity="blur-white"):
    """Reads a ground-truth mask as float32 {0, 1} [H, W] with 1 = blurred.

    Args:
        path: the mask file (L, RGB, RGBA or 1-bit).
        polarity: `"blur-white"` (CUHK: white = blurred) or `"sharp-white"`
            (DUT: white = sharp, flipped here).
    """
    check_polarity(polarity)
    mask = (load_gray_float(path) >= 0.5).astype(np.float32)
    return 1.0 - mask if polarity == "sharp-white" else mask


def check_polarity(polarity):
    if polarity not in POLARITIES:
        raise ValueError(
            f"polarity must be one of {POLARITIES}, got {polarity!r}"
        )


def atomic_write(path, write_fn):
    """Calls `write_fn(tmp_path)` and renames the result onto `path`.

    A crash or error leaves no half-written `path` behind.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        write_fn(tmp)
        # mkstemp makes 0600 files; give the result the usual umask mode.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path, payload, **dump_options):
    """Writes `payload` as JSON (indent 2 unless given, trailing newline), atomically.

    Args:
        path: the file to write.
        payload: a JSON-serialisable object.
        **dump_options: passed to `json.dump` (e.g. `default=float`).
    """
    dump_options.setdefault("indent", 2)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(payload, f, **dump_options)
            f.write("\n")

    atomic_write(path, write)


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_png(path, array):
    """Writes a uint8 array (grey [H, W] or RGB [H, W, 3]) as PNG atomically."""
    image = Image.fromarray(np.asarray(array, dtype=np.uint8))
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def map_to_uint8(prob_map):
    """A float map in [0, 1] to uint8 0..255 (rounded)."""
    return np.clip(np.asarray(prob_map) * 255.0 + 0.5, 0, 255).astype(np.uint8)
