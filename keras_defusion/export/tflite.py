"""Exports DeFusionNet for TF Serving (SavedModel) and for phones (TFLite).

Conventions shared with detection (`detect` relies on them):

- Input photos are RGB, float32 values 0..255 (uint8 in a quantised TFLite
  file). The model does VGG16's preprocessing inside; there is no
  normalisation to apply outside.
- A photo goes to the square `inference_size` of the model's config with
  `resize_photos` (bilinear, antialiased, clipped to 0..255, as training
  resizes), and its map comes back to the photo's size with `resize_maps`
  (bilinear).
- Every exported output is named `blur_map`: the blur probability per pixel,
  float32 0..1, 1 = blurred (out of focus).

SavedModel layout (TF Serving's): `<base>/<name>/<version>/` with
`saved_model.pb`, `variables/` and `assets/defusion_config.json`, and two
signatures:

- `serving_default`: `images` float32 [N, H, W, 3] (any N, H, W) ->
  `blur_map` float32 [N, H, W, 1].
- `detect_encoded`: `encoded` string [N] of JPEG/PNG/GIF/BMP/WebP bytes ->
  `blur_map` float32 [N, Hmax, Wmax, 1] (each map at its photo's size, padded
  with 0), `height` and `width` int32 [N].

TFLite files have a fixed input [1, S, S, 3] named `images`, one signature
`serving_default` returning `blur_map`, builtin ops only, a JSON sidecar
`<file>.json`, and (when tflite-support is importable) metadata that the
Android/iOS Task library `ImageSegmenter` reads.
"""

import contextlib
import enum
import hashlib
import json
import logging
import os
import shutil
import tempfile

import numpy as np

from keras_defusion.errors import ExportError
from keras_defusion.io.images import atomic_write
from keras_defusion.io.images import is_image_file
from keras_defusion.io.images import load_rgb
from keras_defusion.version import __version__

logger = logging.getLogger(__name__)

MODEL_NAME = "defusionnet"
SERVING_SIGNATURE = "serving_default"
ENCODED_SIGNATURE = "detect_encoded"
IMAGES_INPUT = "images"
ENCODED_INPUT = "encoded"
BLUR_MAP_OUTPUT = "blur_map"
CONFIG_ASSET = "defusion_config.json"
ENCODED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WebP")
OUTPUT_MEANING = (
    "blur probability per pixel, 0..1, 1 = blurred (out of focus), "
    "0 = sharp (in focus)"
)
NORMALIZATION = (
    "none: RGB values 0..255 (float32, or uint8/int8 through the input's "
    "quantisation); the model does VGG16's preprocessing inside"
)
# Label file of the single output channel, for the Task library.
TFLITE_LABEL = "blurred"


# --- Preprocessing shared with detection ---------------------------------------


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


# --- The model to export -------------------------------------------------------


def load_model_file(path):
    """Loads a DeFusionNet from a `.keras` file (as training writes it).

    A shipped model's name (e.g. "defusionnet-scratch-cuhk") or folder works
    too, so the shipped model can be exported like a trained one.

    Raises:
        ExportError: the file is missing, not a `.keras` archive, does not
            load, or holds another kind of model. The message names the file.
    """
    from keras_defusion.models import pretrained

    path = os.fspath(path)
    if path in pretrained.PRETRAINED_MODELS:
        return pretrained.load_pretrained(path)
    if pretrained.is_pretrained_dir(path):
        return pretrained.load_pretrained_dir(path)
    if not os.path.exists(path):
        raise ExportError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise ExportError(f"{path}: is a folder; expected a .keras file saved from DeFusionNet")
    if not path.endswith(".keras"):
        raise ExportError(f"{path}: expected a .keras file saved from keras_defusion.DeFusionNet")
    import keras

    import keras_defusion  # noqa: F401 (registers the classes for loading)

    try:
        model = keras.saving.load_model(path)
    except Exception as error:
        raise ExportError(
            f"{path}: cannot load this .keras file ({type(error).__name__}: {error})"
        ) from None
    if not hasattr(model, "defusion_config"):
        raise ExportError(
            f"{path}: holds a {type(model).__name__}, not a keras_defusion.DeFusionNet"
        )
    return model


def _check_defusion_model(model):
    if not (hasattr(model, "defusion_config") and hasattr(model, "inference_model")):
        raise TypeError(
            "expected a keras_defusion.DeFusionNet (with `defusion_config` and "
            f"`inference_model()`), got {type(model).__name__}"
        )
    return model.defusion_config


def serving_model(model):
    """The fused-map model of a DeFusionNet, traceable at any H x W.

    It shares the DeFusionNet's weights (no copy).

    Args:
        model: a `keras_defusion.DeFusionNet`.

    Returns:
        A `keras.Model`: RGB 0..255 [N, H, W, 3] -> blur probability [N, H, W, 1].
    """
    _check_defusion_model(model)
    return model.inference_model()


def _tf_variables(keras_model):
    """The `tf.Variable`s behind a Keras model's weights (tracked once each)."""
    return [weight.value for weight in keras_model.weights]


def model_metadata(model, **extra):
    """The facts an exported file records about its model (a JSON-able dict)."""
    config = _check_defusion_model(model)
    return {
        "model_name": MODEL_NAME,
        "keras_defusion_version": __version__,
        "preset": getattr(model, "preset", None),
        "inference_size": config.inference_size,
        "input": "RGB 0..255; " + NORMALIZATION,
        "output": OUTPUT_MEANING,
        "config": config.to_dict(),
        **extra,
    }


# --- SavedModel for TF Serving -------------------------------------------------


def _encoded_check(encoded, index):
    """An assertion that `encoded` starts like a supported image file."""
    import tensorflow as tf

    # Pad so that every slice exists, even for an empty string.
    head = tf.strings.substr(tf.strings.join([encoded, tf.constant(b"\0" * 12)]), 0, 12)

    def starts(offset, magic):
        return tf.equal(tf.strings.substr(head, offset, len(magic)), magic)

    known = tf.reduce_any(
        tf.stack(
            [
                starts(0, b"\xff\xd8\xff"),  # JPEG
                starts(0, b"\x89PNG\r\n\x1a\n"),
                starts(0, b"GIF87a"),
                starts(0, b"GIF89a"),
                starts(0, b"BM"),
                tf.logical_and(starts(0, b"RIFF"), starts(8, b"WEBP")),
            ]
        )
    )
    template = (
        f"{ENCODED_SIGNATURE}: {ENCODED_INPUT}[{{}}] ({{}} bytes) is not a "
        f"{'/'.join(ENCODED_FORMATS)} file; send each image file's bytes "
        "(base64-encoded under the key b64 in a JSON request)"
    )
    message = tf.strings.format(template, (index, tf.strings.length(encoded)))
    return tf.debugging.Assert(known, [message], name="check_image_format")


def _serving_root(model, image_size=None, batch_size=None, config_path=None, with_encoded=True):
    """The SavedModel's root `tf.Module`: its functions and tracked variables.

    The Keras model lives in the functions' closures only, so the SavedModel
    tracks each variable once (as `tf.Variable`): Keras' own `model.export`
    tracks both the Keras and the TF variable, doubling `variables/`.

    Args:
        model: a DeFusionNet.
        image_size: static H = W of `serve`'s input, or None (any).
        batch_size: static N of `serve`'s input, or None (any).
        config_path: a JSON file to store as an asset.
        with_encoded: also build `detect_encoded`.
    """
    import tensorflow as tf

    config = _check_defusion_model(model)
    keras_model = serving_model(model)
    size = int(config.inference_size)

    root = tf.Module()
    root.model_variables = _tf_variables(keras_model)
    if config_path is not None:
        root.config_file = tf.saved_model.Asset(config_path)

    image_shape = [batch_size, image_size, image_size, 3]

    def serve(images):
        maps = keras_model(images, training=False)
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
                image = tf.io.decode_image(data, channels=3, expand_animations=False)
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


def export_saved_model(model, base_dir, name=MODEL_NAME, version=1, overwrite=False):
    """Writes a SavedModel for TF Serving at `<base_dir>/<name>/<version>/`.

    The export is written to a hidden folder beside the target and renamed
    into place, so TF Serving (which polls `<base_dir>/<name>/` for numeric
    folders) never sees a partial version.

    Args:
        model: a `keras_defusion.DeFusionNet`.
        base_dir: TF Serving's model base path.
        name: the model's name (a folder).
        version: a positive integer.
        overwrite: replace an existing version instead of failing.

    Returns:
        The path of the version folder.

    Raises:
        FileExistsError: the version exists and `overwrite` is False.
    """
    import tensorflow as tf

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
                    "outputs": {
                        BLUR_MAP_OUTPUT: "float32 [N, Hmax, Wmax, 1], each map at its "
                        "photo's size, padded with 0",
                        "height": "int32 [N]",
                        "width": "int32 [N]",
                    },
                },
            },
        )
        with open(config_path, "w") as f:
            json.dump(metadata, f, indent=2)
        root = _serving_root(model, config_path=config_path)
        signatures = {
            SERVING_SIGNATURE: root.serve.get_concrete_function(),
            ENCODED_SIGNATURE: root.detect_encoded.get_concrete_function(),
        }
        tf.saved_model.save(root, export_dir, signatures=signatures)
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


def load_saved_model_metadata(export_dir):
    """The JSON written beside an export (`assets/defusion_config.json`)."""
    path = os.path.join(os.fspath(export_dir), "assets", CONFIG_ASSET)
    if not os.path.isfile(path):
        raise ExportError(f"{export_dir}: no {CONFIG_ASSET} in assets/; not a keras-defusion export")
    with open(path) as f:
        return json.load(f)


# --- TFLite --------------------------------------------------------------------


class TFLiteMode(str, enum.Enum):
    """The closed set of TFLite export modes."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    DYNAMIC = "dynamic"
    INT8 = "int8"

    @property
    def description(self):
        return TFLITE_MODE_DESCRIPTIONS[self]


TFLITE_MODE_DESCRIPTIONS = {
    TFLiteMode.FLOAT32: "float32 weights and activations; the reference",
    TFLiteMode.FLOAT16: "float16 weights (half the file), float32 compute on CPU",
    TFLiteMode.DYNAMIC: "dynamic-range: int8 weights, activations quantised on the fly",
    TFLiteMode.INT8: "full integer: int8 weights and activations, uint8 or int8 "
    "input and output, calibrated on real photos",
}
TFLITE_MODES = tuple(mode.value for mode in TFLiteMode)
IO_DTYPES = ("uint8", "int8")
DEFAULT_NUM_CALIBRATION = 100


def parse_tflite_mode(mode):
    """A `TFLiteMode` from its name (or itself); ValueError naming the choices."""
    if isinstance(mode, TFLiteMode):
        return mode
    try:
        return TFLiteMode(str(mode))
    except ValueError:
        raise ValueError(
            f"unknown TFLite mode {mode!r}; choose one of {', '.join(TFLITE_MODES)}"
        ) from None


def calibration_photos(source, size, limit=DEFAULT_NUM_CALIBRATION):
    """Lists the calibration batches for full-integer quantisation.

    Each photo goes through `preprocess_photo` (the detection preprocessing).

    Args:
        source: a folder of photos, or an iterable of photo paths or RGB
            arrays [H, W, 3] (0..255).
        size: the square side S.
        limit: at most this many photos (for a folder: spread evenly over its
            sorted files; for an iterable: the first).

    Returns:
        list of float32 arrays [1, S, S, 3].

    Raises:
        ExportError: no usable photo.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"the number of calibration photos must be positive, got {limit}")
    if isinstance(source, (str, os.PathLike)):
        folder = os.fspath(source)
        if not os.path.isdir(folder):
            raise ExportError(f"calibration folder {folder} does not exist")
        items = [
            os.path.join(folder, name)
            for name in sorted(os.listdir(folder))
            if is_image_file(name)
        ]
        if not items:
            raise ExportError(f"calibration folder {folder} holds no image file")
        if limit is not None and len(items) > limit:
            # Spread over the whole folder, not its first files.
            picks = np.linspace(0, len(items) - 1, limit).round().astype(int)
            items = [items[i] for i in picks]
    else:
        items = source
    batches = []
    for item in items:
        if limit is not None and len(batches) >= limit:
            break
        photo = load_rgb(item) if isinstance(item, (str, os.PathLike)) else item
        batches.append(preprocess_photo(photo, size))
    if not batches:
        raise ExportError("no calibration photo was given")
    return batches


def _schema():
    try:
        from tensorflow.lite.python import schema_py_generated as schema
    except ImportError:  # pragma: no cover - depends on the TF build
        from ai_edge_litert import schema_py_generated as schema
    return schema


def _builtin_op_names():
    """{builtin op code: name} of the TFLite schema."""
    operators = _schema().BuiltinOperator
    return {value: name for name, value in vars(operators).items() if not name.startswith("_")}


def _model_bytes(path_or_bytes):
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return bytes(path_or_bytes)
    with open(path_or_bytes, "rb") as f:
        return f.read()


def tflite_op_names(path_or_bytes):
    """The sorted operator names of a TFLite file (or its bytes).

    Builtin ops by their schema name (`CONV_2D`, ...); custom ops by their
    custom code (Select-TF ops appear as `Flex...`).
    """
    schema = _schema()
    model = schema.Model.GetRootAsModel(_model_bytes(path_or_bytes), 0)
    builtin_names = _builtin_op_names()
    names = set()
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.add(code.CustomCode().decode())
        else:
            names.add(builtin_names.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(names)


def check_builtin_ops(path_or_bytes):
    """Raises ExportError when a TFLite model holds a Flex or custom op."""
    ops = tflite_op_names(path_or_bytes)
    builtin = set(_builtin_op_names().values()) - {"CUSTOM"}
    foreign = [name for name in ops if name not in builtin]
    if foreign:
        raise ExportError(
            f"the TFLite model needs non-builtin ops {foreign}; only builtin ops are allowed"
        )
    return ops


def tflite_float_ops(path_or_bytes):
    """Ops of a TFLite file that compute in float32 (besides (DE)QUANTIZE).

    In a full-integer file these are float islands the converter kept: ops
    without an int8 kernel, wrapped in DEQUANTIZE/QUANTIZE.

    Returns:
        sorted list of (op name, count) pairs.
    """
    schema = _schema()
    model = schema.Model.GetRootAsModel(_model_bytes(path_or_bytes), 0)
    builtin_names = _builtin_op_names()
    counts = {}
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = builtin_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            if name in ("QUANTIZE", "DEQUANTIZE"):
                continue
            outputs = [op.Outputs(k) for k in range(op.OutputsLength())]
            if any(graph.Tensors(t).Type() == schema.TensorType.FLOAT32 for t in outputs if t >= 0):
                counts[name] = counts.get(name, 0) + 1
    return sorted(counts.items())


# Ops that only move or select values: their int8 kernels copy bytes, so an
# output quantised differently from its input silently changes every value.
DATA_MOVEMENT_OPS = (
    "REVERSE_V2", "RESHAPE", "STRIDED_SLICE", "SLICE", "CONCATENATION",
    "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "GATHER", "SPLIT", "SPLIT_V", "PACK",
    "UNPACK", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "TILE", "MAX_POOL_2D",
)


def requantizing_data_ops(path_or_bytes):
    """Data-movement ops of a quantized TFLite file whose input and output
    quantization differ (see `DATA_MOVEMENT_OPS`).

    Returns:
        list of dicts (op, index, input and output (scales, zero points));
        empty for a sound file.
    """
    schema = _schema()
    model = schema.Model.GetRootAsModel(_model_bytes(path_or_bytes), 0)
    builtin_names = _builtin_op_names()
    graph = model.Subgraphs(0)

    def quantization(tensor_index):
        params = graph.Tensors(tensor_index).Quantization()
        if params is None or params.ScaleLength() == 0:
            return None
        return (tuple(float(v) for v in params.ScaleAsNumpy()),
                tuple(int(v) for v in params.ZeroPointAsNumpy()))

    problems = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = builtin_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        if name not in DATA_MOVEMENT_OPS:
            continue
        output = quantization(op.Outputs(0))
        inputs = [op.Inputs(k) for k in range(op.InputsLength())]
        if name != "CONCATENATION":  # the rest move their first input only
            inputs = inputs[:1]
        for tensor in inputs:
            if tensor >= 0 and quantization(tensor) != output:
                problems.append({"op": name, "index": i, "input": quantization(tensor),
                                 "output": output})
    return problems


def _tensor_quantization(details):
    scale, zero_point = details["quantization"]
    if not scale:
        return None
    return {"scale": float(scale), "zero_point": int(zero_point)}


def load_tflite(path_or_bytes, num_threads=None):
    """A LiteRT interpreter for a TFLite file (or its bytes), tensors allocated."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - tf.lite's copy is deprecated
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    if isinstance(path_or_bytes, (bytes, bytearray)):
        interpreter = Interpreter(model_content=bytes(path_or_bytes), num_threads=num_threads)
    else:
        interpreter = Interpreter(model_path=os.fspath(path_or_bytes), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


def tflite_io_details(interpreter):
    """(input details, output details) of the `serving_default` signature."""
    runner = interpreter.get_signature_runner(SERVING_SIGNATURE)
    return (
        runner.get_input_details()[IMAGES_INPUT],
        runner.get_output_details()[BLUR_MAP_OUTPUT],
    )


def run_tflite(interpreter, images):
    """Blur maps from a TFLite model, quantising its input and output as needed.

    Args:
        interpreter: from `load_tflite`.
        images: float array [N, S, S, 3], RGB 0..255 at the file's size.

    Returns:
        float32 array [N, S, S, 1] of blur probabilities.
    """
    runner = interpreter.get_signature_runner(SERVING_SIGNATURE)
    input_details, output_details = tflite_io_details(interpreter)
    images = np.asarray(images, dtype=np.float32)
    expected = tuple(input_details["shape"][1:])
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(f"images must be [N, {expected[0]}, {expected[1]}, 3], got {images.shape}")
    in_dtype = np.dtype(input_details["dtype"])
    in_quant = _tensor_quantization(input_details)
    out_quant = _tensor_quantization(output_details)
    maps = []
    for image in images:
        batch = image[None]
        if in_quant is not None and in_dtype.kind in "iu":
            info = np.iinfo(in_dtype)
            batch = np.round(batch / in_quant["scale"] + in_quant["zero_point"])
            batch = np.clip(batch, info.min, info.max)
        blur_map = runner(**{IMAGES_INPUT: batch.astype(in_dtype)})[BLUR_MAP_OUTPUT]
        if out_quant is not None and blur_map.dtype.kind in "iu":
            blur_map = (blur_map.astype(np.float32) - out_quant["zero_point"]) * out_quant["scale"]
        maps.append(blur_map.astype(np.float32)[0])
    return np.stack(maps)


def _import_metadata_writer():
    """tflite-support's image segmenter metadata writer, or None.

    tflite-support 0.4.4 cannot be installed beside TensorFlow 2.21 with its
    dependencies (it pins protobuf < 4) and its top-level import is broken;
    `pip install --no-deps tflite-support==0.4.4` (and Debian's libusb-1.0-0)
    makes this module importable on its own.
    """
    try:
        from tensorflow_lite_support.metadata import metadata_schema_py_generated as metadata_fb
        from tensorflow_lite_support.metadata.python.metadata_writers import image_segmenter
        from tensorflow_lite_support.metadata.python.metadata_writers import metadata_info
    except Exception as error:  # ImportError, or OSError for libusb
        return None, f"{type(error).__name__}: {error}"
    return (image_segmenter, metadata_info, metadata_fb), None


def tflite_metadata_available():
    """Whether TFLite metadata (for the Task library) can be embedded here."""
    modules, _ = _import_metadata_writer()
    return modules is not None


def _embed_task_metadata(model_bytes, image_size, input_dtype):
    """The model with Task library `ImageSegmenter` metadata, or None.

    The single output channel is a confidence mask: read MediaPipe's
    ImageSegmenter `confidence_masks[0]`. Its category mask over one channel
    is 0 where the confidence is above 0.5 (blurred) and 255 elsewhere.
    """
    modules, reason = _import_metadata_writer()
    if modules is None:
        logger.info("TFLite metadata not embedded: tflite-support not importable (%s)", reason)
        return None, f"tflite-support not importable ({reason})"
    image_segmenter, metadata_info, metadata_fb = modules
    schema = _schema()
    tensor_type = {
        "float32": schema.TensorType.FLOAT32,
        "uint8": schema.TensorType.UINT8,
        "int8": schema.TensorType.INT8,
    }[input_dtype]
    with tempfile.TemporaryDirectory() as folder:
        label_path = os.path.join(folder, "blur_labels.txt")
        with open(label_path, "w") as f:
            f.write(TFLITE_LABEL + "\n")
        writer = image_segmenter.MetadataWriter.create_from_metadata_info(
            model_buffer=bytearray(model_bytes),
            general_md=metadata_info.GeneralMd(
                name=MODEL_NAME,
                version=__version__,
                description=(
                    f"DeFusionNet defocus blur detection (keras-defusion {__version__}). "
                    f"Input: RGB {image_size}x{image_size}, values 0..255, no "
                    f"normalisation. Output: {OUTPUT_MEANING}; read it as a "
                    "confidence mask."
                ),
                author="keras-defusion",
                licenses="Apache-2.0",
            ),
            input_md=metadata_info.InputImageTensorMd(
                name=IMAGES_INPUT,
                description=f"RGB photo resized to {image_size}x{image_size}, values 0..255",
                norm_mean=[0.0, 0.0, 0.0],
                norm_std=[1.0, 1.0, 1.0],
                color_space_type=metadata_fb.ColorSpaceType.RGB,
                tensor_type=tensor_type,
            ),
            output_md=metadata_info.TensorMd(
                name=BLUR_MAP_OUTPUT,
                description=OUTPUT_MEANING,
                associated_files=[metadata_info.LabelFileMd(file_path=label_path)],
            ),
        )
        return bytes(writer.populate()), None


def read_tflite_metadata_json(path):
    """The embedded TFLite metadata as JSON text, or None when absent/unreadable."""
    try:
        from tensorflow_lite_support.metadata.python import metadata as metadata_lib
    except Exception:
        return None
    try:
        return metadata_lib.MetadataDisplayer.with_model_file(os.fspath(path)).get_metadata_json()
    except ValueError:
        return None


def tflite_sidecar_path(out_path):
    """The JSON sidecar of a TFLite file: `<out_path>.json`."""
    return os.fspath(out_path) + ".json"


def _pin_input_range(batches):
    """The calibration batches with one black and one white pixel in the first.

    The input's quantisation comes from the calibration's min and max; pinning
    them to 0 and 255 makes a uint8 input exactly the pixel value (scale 1,
    zero point 0), whatever the photos' own range. Two pixels of one photo
    barely move the other tensors' ranges.
    """
    batches = list(batches)
    first = np.array(batches[0], dtype=np.float32, copy=True)
    first[0, 0, 0, :] = 0.0
    first[0, 0, -1, :] = 255.0
    return [first] + batches[1:]


@contextlib.contextmanager
def tflite_converter(model, mode, image_size, calibration=None, io_dtype="uint8"):
    """A configured `tf.lite.TFLiteConverter` for the fixed-size serving graph.

    A context manager: the converter reads a temporary SavedModel, removed on
    exit. `calibration` (for int8) is a list of float batches [1, S, S, 3].
    """
    import tensorflow as tf

    mode = parse_tflite_mode(mode)
    with tempfile.TemporaryDirectory() as folder:
        root = _serving_root(model, image_size=image_size, batch_size=1, with_encoded=False)
        tf.saved_model.save(
            root, folder, signatures={SERVING_SIGNATURE: root.serve.get_concrete_function()}
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=[SERVING_SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.allow_custom_ops = False
        if mode is TFLiteMode.FLOAT16:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif mode is TFLiteMode.DYNAMIC:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif mode is TFLiteMode.INT8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            calibration = _pin_input_range(calibration)
            converter.representative_dataset = lambda: ([batch] for batch in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.as_dtype(io_dtype)
            converter.inference_output_type = tf.as_dtype(io_dtype)
        yield converter


def _convert(model, mode, image_size, calibration, io_dtype):
    with tflite_converter(model, mode, image_size, calibration, io_dtype) as converter:
        try:
            return converter.convert()
        except Exception as error:
            raise ExportError(
                f"TFLite conversion ({mode.value}) failed with builtin ops only: {error}"
            ) from error


def export_tflite(
    model,
    out_path,
    mode=TFLiteMode.FLOAT32,
    image_size=None,
    calibration_images=None,
    io_dtype="uint8",
    num_calibration=DEFAULT_NUM_CALIBRATION,
    metadata=True,
):
    """Writes a TFLite file with a fixed input [1, S, S, 3] and its JSON sidecar.

    Args:
        model: a `keras_defusion.DeFusionNet`.
        out_path: the `.tflite` file; the sidecar is `<out_path>.json`.
        mode: a `TFLiteMode` or its name: "float32", "float16", "dynamic",
            "int8".
        image_size: the square side S; default the config's `inference_size`.
        calibration_images: for "int8" (required): a folder of real photos or
            an iterable of paths / RGB arrays; they go through the detection
            preprocessing (`preprocess_photo`).
        io_dtype: "uint8" (default; what the Task library reads) or "int8",
            the input and output type of "int8" files.
        num_calibration: at most this many calibration photos.
        metadata: embed Task library metadata when tflite-support is
            importable (a logged note when it is not).

    Returns:
        `out_path`.

    Raises:
        ValueError: an unknown mode or io_dtype, or int8 without photos.
        ExportError: conversion needs a non-builtin op, or no usable photo.
    """
    mode = parse_tflite_mode(mode)
    config = _check_defusion_model(model)
    size = int(image_size or config.inference_size)
    if size < 32:
        raise ValueError(f"image_size must be at least 32, got {size}")
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"io_dtype must be one of {IO_DTYPES}, got {io_dtype!r}")
    calibration = None
    if mode is TFLiteMode.INT8:
        if calibration_images is None:
            raise ValueError(
                "int8 mode needs calibration_images: a folder of real photos (or an iterable)"
            )
        calibration = calibration_photos(calibration_images, size, num_calibration)

    model_bytes = _convert(model, mode, size, calibration, io_dtype)
    ops = check_builtin_ops(model_bytes)
    requantizing = requantizing_data_ops(model_bytes)
    if requantizing:
        raise ExportError(
            "the int8 model has data-movement ops whose output quantization differs "
            f"from their input's, which distorts their values: {requantizing}"
        )

    interpreter = load_tflite(model_bytes)
    input_details, output_details = tflite_io_details(interpreter)
    input_dtype = np.dtype(input_details["dtype"]).name
    output_dtype = np.dtype(output_details["dtype"]).name

    metadata_note = "not requested"
    embedded = False
    if metadata:
        with_metadata, metadata_note = _embed_task_metadata(model_bytes, size, input_dtype)
        if with_metadata is not None:
            model_bytes, embedded = with_metadata, True
            metadata_note = "ImageSegmenter metadata (tflite-support); read as CONFIDENCE_MASK"
            if input_dtype == "int8":
                metadata_note += "; the Task library reads uint8 or float32 inputs only"

    out_path = os.fspath(out_path)

    def write_model(tmp):
        with open(tmp, "wb") as f:
            f.write(model_bytes)

    atomic_write(out_path, write_model)

    sidecar = model_metadata(
        model,
        format="tflite",
        mode=mode.value,
        mode_description=mode.description,
        file=os.path.basename(out_path),
        file_bytes=len(model_bytes),
        sha256=hashlib.sha256(model_bytes).hexdigest(),
        signature=SERVING_SIGNATURE,
        input={
            "name": IMAGES_INPUT,
            "shape": [1, size, size, 3],
            "dtype": input_dtype,
            "color": "RGB",
            "range": "0..255",
            "normalization": NORMALIZATION,
            "resize": "to a square (aspect ratio not kept); detect uses antialiased "
                      "bilinear, and models trained with every resize method (the "
                      "shipped ones) give nearly the same map for plain bilinear, "
                      "area, nearest or bicubic",
            "quantization": _tensor_quantization(input_details),
        },
        output={
            "name": BLUR_MAP_OUTPUT,
            "shape": [1, size, size, 1],
            "dtype": output_dtype,
            "meaning": OUTPUT_MEANING,
            "quantization": _tensor_quantization(output_details),
            "dequantize": "probability = scale * (value - zero_point)"
            if output_dtype != "float32"
            else None,
        },
        calibration_photos=len(calibration) if calibration is not None else None,
        ops=ops,
        float_compute_ops=dict(tflite_float_ops(model_bytes)) if mode is TFLiteMode.INT8 else None,
        tflite_metadata={"embedded": embedded, "note": metadata_note},
    )
    sidecar_text = json.dumps(sidecar, indent=2) + "\n"

    def write_sidecar(tmp):
        with open(tmp, "w") as f:
            f.write(sidecar_text)

    atomic_write(tflite_sidecar_path(out_path), write_sidecar)
    logger.info("TFLite (%s) written to %s (%d bytes)", mode.value, out_path, len(model_bytes))
    return out_path
