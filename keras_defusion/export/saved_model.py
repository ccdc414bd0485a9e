"""SavedModel export for TF Serving.

Layout (TF Serving's): `<base>/<name>/<version>/` with `saved_model.pb`,
`variables/` and `assets/defusion_config.json`, and two signatures:

- `serving_default`: `images` float32 [N, H, W, 3] (any N, H, W) ->
  `blur_map` float32 [N, H, W, 1].
- `detect_encoded`: `encoded` string [N] of JPEG/PNG/GIF/BMP/WebP bytes ->
  `blur_map` float32 [N, Hmax, Wmax, 1] (each map at its photo's size, padded
  with 0), `height` and `width` int32 [N].
"""

import logging
import os
import shutil
import tempfile

from keras_defusion.export.common import MODEL_NAME
from keras_defusion.export.common import _tf_variables
from keras_defusion.export.common import model_metadata
from keras_defusion.export.encoded import apply_orientation
from keras_defusion.export.encoded import exif_orientation
from keras_defusion.export.encoded import file_formats
from keras_defusion.export.encoded import header_size
from keras_defusion.export.encoded import is_cut_short
from keras_defusion.export.warmup import warmup_requests
from keras_defusion.export.warmup import write_warmup_file
from keras_defusion.export.common import serving_model
from keras_defusion.inference.contract import BLUR_MAP_OUTPUT
from keras_defusion.inference.contract import CONFIG_ASSET
from keras_defusion.inference.contract import IMAGES_INPUT
from keras_defusion.inference.contract import MIN_INFERENCE_SIZE
from keras_defusion.inference.contract import SERVING_SIGNATURE
from keras_defusion.inference.contract import model_inference_size
from keras_defusion.inference.contract import reduce_input
from keras_defusion.inference.contract import resize_maps
from keras_defusion.inference.contract import resize_photos
from keras_defusion.io.files import write_json

logger = logging.getLogger(__name__)


ENCODED_SIGNATURE = "detect_encoded"


ENCODED_INPUT = "encoded"


ENCODED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WebP")  # file_formats' names


# detect_encoded's default limit: a 50-MP phone photo passes. Decoding and
# resizing one takes about 1.5 GB; a larger header is refused before that.
DEFAULT_MAX_PIXELS = 50_000_000


def _encoded_check(encoded, index):
    """An assertion that `encoded` starts like a supported image file."""
    import tensorflow as tf

    known = tf.reduce_any(tf.stack(list(file_formats(encoded).values())))
    template = (
        f"{ENCODED_SIGNATURE}: {ENCODED_INPUT}[{{}}] ({{}} bytes) is not a "
        f"{'/'.join(ENCODED_FORMATS)} file; send each image file's bytes "
        "(base64-encoded under the key b64 in a JSON request)"
    )
    message = tf.strings.format(template, (index, tf.strings.length(encoded)))
    return tf.debugging.Assert(known, [message], name="check_image_format")


def _complete_check(encoded, index):
    """An assertion that `encoded` is not cut short (see `is_cut_short`)."""
    import tensorflow as tf

    template = (
        f"{ENCODED_SIGNATURE}: {ENCODED_INPUT}[{{}}] ({{}} bytes) is cut short: its bytes "
        "end before the image file does; send the whole file"
    )
    message = tf.strings.format(template, (index, tf.strings.length(encoded)))
    return tf.debugging.Assert(tf.logical_not(is_cut_short(encoded)), [message],
                               name="check_image_complete")


def _pixel_check(height, width, index, max_pixels):
    """An assertion that an image's header declares at most `max_pixels` pixels."""
    import tensorflow as tf

    pixels = height * width
    template = (
        f"{ENCODED_SIGNATURE}: {ENCODED_INPUT}[{{}}] is {{}} x {{}} = {{}} pixels, over the "
        f"limit of {max_pixels} set at export (max_pixels, --max-pixels); send a smaller image"
    )
    message = tf.strings.format(template, (index, height, width, pixels))
    return tf.debugging.Assert(pixels <= max_pixels, [message], name="check_pixel_count")


def _images_check(images):
    """Assertions that `serving_default`'s images are usable, with messages
    that say what to send (not a TensorFlow node's internals)."""
    import tensorflow as tf

    height, width = tf.shape(images)[1], tf.shape(images)[2]
    return [
        tf.debugging.Assert(
            tf.logical_and(height >= MIN_INFERENCE_SIZE, width >= MIN_INFERENCE_SIZE),
            [tf.strings.format(
                f"{SERVING_SIGNATURE}: {IMAGES_INPUT} are {{}} x {{}}; send images of at "
                f"least {MIN_INFERENCE_SIZE} x {MIN_INFERENCE_SIZE} (or JPEG/PNG bytes to "
                f"{ENCODED_SIGNATURE}, which resizes them)", (height, width))],
            name="check_image_size"),
        tf.debugging.Assert(
            tf.reduce_all(tf.math.is_finite(images)),
            [f"{SERVING_SIGNATURE}: {IMAGES_INPUT} hold NaN or infinite values; send RGB "
             "values 0..255"], name="check_finite"),
    ]


def _serving_root(model, image_size=None, batch_size=None, config_path=None, with_encoded=True,
                  input_reduction=1, max_pixels=DEFAULT_MAX_PIXELS):
    """The SavedModel's root `tf.Module`: its functions and tracked variables.

    The Keras model lives in the functions' closures only, so the SavedModel
    tracks each variable once (as `tf.Variable`): Keras' own `model.export`
    tracks both the Keras and the TF variable, doubling `variables/`.

    Args:
        model: a DeFusionNet.
        image_size: static H = W of `serve`'s input, or None (any).
        batch_size: static N of `serve`'s input, or None (any).
        config_path: a JSON file to store as an asset.
        with_encoded: also build `detect_encoded`, and check `serve`'s images
            (the SavedModel; TFLite has no assertion op).
        input_reduction: `serve` takes [N, k * S, k * S, 3] and reduces it to
            S inside (`reduce_input`); needs a static `image_size` S.
        max_pixels: `detect_encoded` refuses an image whose header declares
            more pixels, before decoding it.
    """
    import tensorflow as tf

    keras_model = serving_model(model)
    size = model_inference_size(model)

    root = tf.Module()
    root.model_variables = _tf_variables(keras_model)
    if config_path is not None:
        root.config_file = tf.saved_model.Asset(config_path)

    if input_reduction != 1 and image_size is None:
        raise ValueError("input_reduction needs a fixed image_size")
    input_side = None if image_size is None else image_size * input_reduction
    image_shape = [batch_size, input_side, input_side, 3]

    def serve(images):
        if with_encoded:  # the SavedModel: TFLite has no assertion op
            with tf.control_dependencies(_images_check(images)):
                images = tf.identity(images)
        maps = keras_model(reduce_input(images, input_reduction), training=False)
        return {BLUR_MAP_OUTPUT: tf.identity(maps, name=BLUR_MAP_OUTPUT)}

    root.serve = tf.function(
        serve,
        input_signature=[tf.TensorSpec(image_shape, tf.float32, name=IMAGES_INPUT)],
    )

    def detect_encoded(encoded):
        count = tf.shape(encoded)[0]
        with tf.control_dependencies(
            [
                tf.debugging.assert_positive(
                    count, message=f"{ENCODED_SIGNATURE}: {ENCODED_INPUT} is empty; send at least one image"
                )
            ]
        ):
            count = tf.identity(count)

        def decode(args):
            data, index = args
            with tf.control_dependencies([_encoded_check(data, index)]):
                height, width = header_size(data)
            with tf.control_dependencies([_pixel_check(height, width, index, max_pixels),
                                          _complete_check(data, index)]):
                image = tf.io.decode_image(data, channels=3, expand_animations=False)
            # Upright, as `detect` turns photos (most phone JPEGs carry the tag).
            image = apply_orientation(image, exif_orientation(data))
            shape = tf.shape(image)[:2]
            return resize_photos(image, size), shape

        photos, shapes = tf.map_fn(
            decode,
            (encoded, tf.range(count)),
            fn_output_signature=(
                tf.TensorSpec([size, size, 3], tf.float32),
                tf.TensorSpec([2], tf.int32),
            ),
        )
        maps = keras_model(photos, training=False)
        heights, widths = shapes[:, 0], shapes[:, 1]
        max_height = tf.reduce_max(tf.concat([heights, [0]], 0))
        max_width = tf.reduce_max(tf.concat([widths, [0]], 0))

        def restore(args):
            blur_map, height, width = args
            resized = resize_maps(blur_map, height, width)
            return tf.pad(
                resized, [[0, max_height - height], [0, max_width - width], [0, 0]]
            )

        padded = tf.map_fn(
            restore,
            (maps, heights, widths),
            fn_output_signature=tf.TensorSpec([None, None, 1], tf.float32),
        )
        padded = tf.reshape(padded, tf.stack([count, max_height, max_width, 1]))
        return {
            BLUR_MAP_OUTPUT: tf.identity(padded, name=BLUR_MAP_OUTPUT),
            "height": tf.identity(heights, name="height"),
            "width": tf.identity(widths, name="width"),
        }

    if with_encoded:
        root.detect_encoded = tf.function(
            detect_encoded,
            input_signature=[tf.TensorSpec([None], tf.string, name=ENCODED_INPUT)],
        )
    return root


def saved_model_dir(base_dir, name=MODEL_NAME, version=1):
    """`<base_dir>/<name>/<version>`, TF Serving's layout (checked arguments)."""
    name = str(name)
    if not name or os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
        raise ValueError(f"model name must be a plain folder name, got {name!r}")
    if isinstance(version, bool) or int(version) != version or int(version) < 1:
        raise ValueError(f"version must be a positive integer (TF Serving's rule), got {version!r}")
    return os.path.join(os.fspath(base_dir), name, str(int(version)))


def export_saved_model(model, base_dir, name=MODEL_NAME, version=1, overwrite=False,
                       max_pixels=DEFAULT_MAX_PIXELS):
    """Writes a SavedModel for TF Serving at `<base_dir>/<name>/<version>/`.

    The export is written to a hidden folder beside the target and renamed
    into place, so TF Serving (which polls `<base_dir>/<name>/` for numeric
    folders) never sees a partial version. It holds TF Serving's warm-up
    file (`assets.extra/tf_serving_warmup_requests`: both signatures at
    batch 1 and 4), so a new version's first request is not slow.

    Args:
        model: a `keras_defusion.DeFusionNet`.
        base_dir: TF Serving's model base path.
        name: the model's name (a folder).
        version: a positive integer.
        overwrite: replace an existing version instead of failing.
        max_pixels: `detect_encoded` refuses images whose header declares more
            pixels (height x width), before decoding them; stored in the
            SavedModel and in its `assets/defusion_config.json`.

    Returns:
        The path of the version folder.

    Raises:
        FileExistsError: the version exists and `overwrite` is False.
        ValueError: `max_pixels` is not a positive whole number.
    """
    import tensorflow as tf

    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive whole number, got {max_pixels!r}")

    target = saved_model_dir(base_dir, name, version)
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"{target} already exists; pick another --version or pass overwrite=True"
        )
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=parent)
    try:
        export_dir = os.path.join(staging, "export")
        asset_dir = os.path.join(staging, "asset")
        os.makedirs(asset_dir)
        config_path = os.path.join(asset_dir, CONFIG_ASSET)
        metadata = model_metadata(
            model,
            format="saved_model",
            signatures={
                SERVING_SIGNATURE: {
                    "inputs": {IMAGES_INPUT: "float32 [N, H, W, 3], RGB 0..255"},
                    "outputs": {BLUR_MAP_OUTPUT: "float32 [N, H, W, 1]"},
                },
                ENCODED_SIGNATURE: {
                    "inputs": {ENCODED_INPUT: "string [N], JPEG/PNG/GIF/BMP/WebP bytes"},
                    "max_pixels": max_pixels,
                    "exif_orientation": "applied: maps follow the upright photo",
                    "outputs": {
                        BLUR_MAP_OUTPUT: "float32 [N, Hmax, Wmax, 1], each map at its "
                        "photo's size, padded with 0",
                        "height": "int32 [N]",
                        "width": "int32 [N]",
                    },
                },
            },
        )
        write_json(config_path, metadata)
        root = _serving_root(model, config_path=config_path, max_pixels=max_pixels)
        signatures = {
            SERVING_SIGNATURE: root.serve.get_concrete_function(),
            ENCODED_SIGNATURE: root.detect_encoded.get_concrete_function(),
        }
        tf.saved_model.save(root, export_dir, signatures=signatures)
        write_warmup_file(export_dir, warmup_requests(
            name, SERVING_SIGNATURE, IMAGES_INPUT, model_inference_size(model),
            ENCODED_SIGNATURE, ENCODED_INPUT))
        if os.path.exists(target):
            old = tempfile.mkdtemp(prefix=f".old-{version}-", dir=parent)
            os.rename(target, os.path.join(old, "version"))
            os.rename(export_dir, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(export_dir, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("SavedModel written to %s", target)
    return target
