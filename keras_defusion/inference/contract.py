"""The inference contract: what goes into a model and what comes out.

Shared by the detector, the SavedModel signatures and the TFLite exporter:

- Input photos are RGB, float32 values 0..255 (uint8 in a quantised TFLite
  file). The model does its own preprocessing inside; there is no
  normalisation to apply outside.
- A photo goes to the square `inference_size` (`model_inference_size`: the
  size the model was saved with) with `resize_photos`
  (bilinear, antialiased, clipped to 0..255, as training resizes), and its
  map comes back to the photo's size with `resize_maps` (bilinear).
- A TFLite file's input can be `input_reduction` times the inference size:
  the caller's resize (MediaPipe's, say: plain bilinear) then only shrinks
  the photo mildly, and `reduce_input`, inside the file, does the
  antialiased reduction to the inference size. The map stays at the
  inference size.
- Every exported output is named `blur_map`: the blur probability per pixel,
  float32 0..1, 1 = blurred (out of focus).
"""

import numpy as np

from keras_defusion.errors import UsageError
from keras_defusion.models.defusionnet.config import FUSED  # noqa: F401 (the contract's name)

# The size of models that record none (DeFusionNet's default before sizes
# were recorded), and the smallest the encoders' stride of 32 allows.
DEFAULT_INFERENCE_SIZE = 320
MIN_INFERENCE_SIZE = 32
# The largest square side accepted (4096 px crashed a process limited to
# 8 GB; 2048 takes a quarter of that memory).
MAX_INFERENCE_SIZE = 2048


# Factors a TFLite file's input may exceed the inference size by (1: none).
# Even factors only: their antialiasing kernel is centred with whole-pixel
# padding. 2 is the default: the map then hardly depends on how the photo
# was resized (README, "Phones").
INPUT_REDUCTIONS = (1, 2)
DEFAULT_INPUT_REDUCTION = 2


SERVING_SIGNATURE = "serving_default"


IMAGES_INPUT = "images"


BLUR_MAP_OUTPUT = "blur_map"


CONFIG_ASSET = "defusion_config.json"


OUTPUT_MEANING = (
    "blur probability per pixel, 0..1, 1 = blurred (out of focus), "
    "0 = sharp (in focus)"
)


NORMALIZATION = (
    "none: RGB values 0..255 (float32, or uint8/int8 through the input's "
    "quantisation); the model does its encoder's preprocessing inside"
)


def resize_photos(images, size):
    """Resizes RGB photos to the square the model runs at.

    Bilinear with antialiasing (as training resizes), then clipped to 0..255.

    Args:
        images: [N, H, W, 3] or [H, W, 3], RGB 0..255, any real dtype.
        size: the side S of the square (the config's `inference_size`).

    Returns:
        float32 tensor [N, S, S, 3] (or [S, S, 3]).
    """
    import tensorflow as tf

    images = tf.cast(images, tf.float32)
    resized = tf.image.resize(images, [size, size], method="bilinear", antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0)


# Photos and maps over this many pixels are resized a strip at a time, so a
# photo near the pixel limit never exists as one float32 tensor (an 81-MP
# photo would take 1 GB, and the resize as much again).
STRIP_PIXELS = 1 << 22


def resize_photo_array(photo, size, strip_pixels=STRIP_PIXELS):
    """One photo [H, W, 3] to float32 [S, S, 3]: `resize_photos`, in bounded memory.

    A large photo is reduced in height one strip of columns at a time, then
    in width: the order the antialiased resize itself takes, so the result is
    the same, bit for bit.

    Args:
        photo: an array [H, W, 3], RGB 0..255, any real dtype.
        size: the side S of the square.
        strip_pixels: the most pixels converted to float32 at once.
    """
    import tensorflow as tf

    height, width = photo.shape[:2]
    if (height, width) == (size, size):
        return np.asarray(photo, np.float32)
    if height * width <= strip_pixels:
        return resize_photos(photo, size).numpy()
    step = max(1, strip_pixels // height)
    columns = np.concatenate([
        tf.image.resize(tf.cast(photo[:, left:left + step], tf.float32),
                        [size, min(step, width - left)], antialias=True).numpy()
        for left in range(0, width, step)
    ], axis=1)
    return resize_photos(columns, size).numpy()


def resize_map_array(blur_map, height, width, strip_pixels=STRIP_PIXELS):
    """One map [S, S] to float32 [height, width] in [0, 1]: `resize_maps`, in bounded memory.

    The map is widened first, then heightened a strip of columns at a time:
    the order the bilinear resize itself takes, so the result is the same,
    bit for bit.
    """
    blur_map = np.asarray(blur_map, np.float32)[..., None]
    if blur_map.shape[:2] == (height, width):
        resized = blur_map[..., 0].copy()
    elif height * width <= strip_pixels:
        resized = resize_maps(blur_map, height, width).numpy()[..., 0]
    else:
        wide = resize_maps(blur_map, blur_map.shape[0], width).numpy()
        resized = np.empty((height, width), np.float32)
        step = max(1, strip_pixels // height)
        for left in range(0, width, step):
            strip = wide[:, left:left + step]
            resized[:, left:left + step] = resize_maps(strip, height, strip.shape[1]).numpy()[..., 0]
    return np.clip(resized, 0.0, 1.0, out=resized)


def check_input_reduction(factor, name="input_reduction"):
    """`factor` as an int, or UsageError when it is not one of `INPUT_REDUCTIONS`."""
    if isinstance(factor, bool) or factor not in INPUT_REDUCTIONS:
        choices = ", ".join(str(f) for f in INPUT_REDUCTIONS)
        raise UsageError(f"{name} must be one of {choices}, got {factor!r}")
    return int(factor)


def _tent_taps(factor):
    """1-D weights of an antialiased bilinear downscale by an even `factor`."""
    taps = np.array([1.0 - abs((i + 0.5 - factor) / factor) for i in range(2 * factor)])
    return (taps / taps.sum()).astype(np.float32)


def reduce_input(images, factor):
    """Downscales photos by a whole factor, as `resize_photos` would.

    The kernel of `tf.image.resize(..., antialias=True)` at an exact factor
    (a triangle of radius `factor` pixels), written with builtin TFLite ops
    that a GPU delegate and int8 take: zero padding, a strided depthwise
    convolution, and two multiplications that renormalise the border rows
    and columns (as the antialiased resize does), so it matches that
    resize to float rounding.

    Args:
        images: float32 [N, factor * S, factor * S, 3], RGB 0..255.
        factor: one of `INPUT_REDUCTIONS`.

    Returns:
        float32 tensor [N, S, S, 3].
    """
    import tensorflow as tf

    factor = check_input_reduction(factor)
    if factor == 1:
        return images
    taps = _tent_taps(factor)
    kernel = np.outer(taps, taps)[:, :, None, None] * np.ones((1, 1, 3, 1), np.float32)
    pad = factor // 2
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    reduced = tf.nn.depthwise_conv2d(padded, kernel, [1, factor, factor, 1], "VALID")
    height, width = images.shape[1] // factor, images.shape[2] // factor
    # Weight that fell inside the photo, per output row and column.
    inside = 1.0 - taps[:pad].sum()
    rows = np.ones(height, np.float32)
    rows[[0, -1]] = 1.0 / inside
    cols = np.ones(width, np.float32)
    cols[[0, -1]] = 1.0 / inside
    reduced = reduced * rows[None, :, None, None]
    return reduced * cols[None, None, :, None]


def resize_maps(maps, height, width):
    """Resizes blur maps [N, S, S, 1] (or [S, S, 1]) to height x width, bilinear."""
    import tensorflow as tf

    return tf.image.resize(maps, tf.stack([height, width]), method="bilinear")


def preprocess_photo(photo, size):
    """One photo (array [H, W, 3] RGB 0..255) as the float32 batch [1, S, S, 3]."""
    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[-1] != 3:
        raise ValueError(f"a photo must be an RGB array [H, W, 3], got shape {photo.shape}")
    return resize_photos(photo[None], size).numpy()


def check_inference_size(size, name="inference_size"):
    """`size` as an int, or UsageError when it is not a whole number >= 32.

    Args:
        size: the square side S photos are resized to.
        name: how the message calls it (a flag, say `--inference-size`).
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer, float)) or int(size) != size:
        raise UsageError(f"{name} must be a whole number of pixels, got {size!r}")
    if size < MIN_INFERENCE_SIZE:
        raise UsageError(
            f"{name} must be at least {MIN_INFERENCE_SIZE} (the encoder's total stride), "
            f"got {size}"
        )
    if size > MAX_INFERENCE_SIZE:
        raise UsageError(
            f"{name} must be at most {MAX_INFERENCE_SIZE} (memory grows with its square; "
            f"maps are resized to each photo's size anyway), got {size}"
        )
    return int(size)


def model_inference_size(model):
    """The square size a model runs at: the `inference_size` it was saved with.

    DeFusionNet records it as metadata (`DeFusionNet(inference_size=...)`,
    kept in its saved config); a model without one runs at
    `DEFAULT_INFERENCE_SIZE`.
    """
    size = getattr(model, "inference_size", None)
    return DEFAULT_INFERENCE_SIZE if size is None else check_inference_size(size)
