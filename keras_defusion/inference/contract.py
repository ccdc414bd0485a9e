"""The inference contract: what goes into a model and what comes out.

Shared by the detector, the SavedModel signatures and the TFLite exporter:

- Input photos are RGB, float32 values 0..255 (uint8 in a quantised TFLite
  file). The model does its own preprocessing inside; there is no
  normalisation to apply outside.
- A photo goes to the square `inference_size` (`model_inference_size`: the
  size the model was saved with) with `resize_photos`
  (bilinear, antialiased, clipped to 0..255, as training resizes), and its
  map comes back to the photo's size with `resize_maps` (bilinear).
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
    return int(size)


def model_inference_size(model):
    """The square size a model runs at: the `inference_size` it was saved with.

    DeFusionNet records it as metadata (`DeFusionNet(inference_size=...)`,
    kept in its saved config); a model without one runs at
    `DEFAULT_INFERENCE_SIZE`.
    """
    size = getattr(model, "inference_size", None)
    return DEFAULT_INFERENCE_SIZE if size is None else check_inference_size(size)
