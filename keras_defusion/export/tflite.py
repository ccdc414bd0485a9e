"""TFLite export for phones.

TFLite files have a fixed input [1, k * S, k * S, 3] named `images` (k the
`input_reduction`, reduced to S inside), one signature `serving_default`
returning `blur_map` [1, S, S, 1] (the conventions of
`keras_defusion.inference.contract`), builtin ops only, a JSON sidecar
`<file>.json`, and (when tflite-support is importable) metadata that the
Android/iOS Task library `ImageSegmenter` reads.
"""

import contextlib
import enum
import hashlib
import logging
import os
import tempfile
import warnings

import numpy as np

from keras_defusion.errors import DataWarning
from keras_defusion.errors import ExportError
from keras_defusion.errors import ImageReadError
from keras_defusion.export.common import _exported_config
from keras_defusion.export.common import model_metadata
from keras_defusion.export.flatbuffer import check_builtin_ops
from keras_defusion.export.flatbuffer import requantizing_data_ops
from keras_defusion.export.flatbuffer import tflite_float_ops
from keras_defusion.export.metadata import _embed_task_metadata
from keras_defusion.export.saved_model import _serving_root
from keras_defusion.inference.contract import BLUR_MAP_OUTPUT
from keras_defusion.inference.contract import IMAGES_INPUT
from keras_defusion.inference.contract import NORMALIZATION
from keras_defusion.inference.contract import OUTPUT_MEANING
from keras_defusion.inference.contract import DEFAULT_INPUT_REDUCTION
from keras_defusion.inference.contract import SERVING_SIGNATURE
from keras_defusion.inference.contract import check_inference_size
from keras_defusion.inference.contract import check_input_reduction
from keras_defusion.inference.contract import model_inference_size
from keras_defusion.inference.contract import preprocess_photo
from keras_defusion.inference.runners import _tensor_quantization
from keras_defusion.inference.runners import load_tflite
from keras_defusion.inference.runners import tflite_io_details
from keras_defusion.io.files import atomic_write
from keras_defusion.io.files import write_json
from keras_defusion.io.images import list_images
from keras_defusion.io.images import load_rgb

logger = logging.getLogger(__name__)


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
        items = [os.fspath(path) for path in list_images(folder)]
        if not items:
            raise ExportError(f"calibration folder {folder} holds no image file")
        if limit is not None and len(items) > limit:
            # Spread over the whole folder, not its first files.
            picks = np.linspace(0, len(items) - 1, limit).round().astype(int)
            items = [items[i] for i in picks]
    else:
        items = source
    batches, unreadable = [], []
    for item in items:
        if limit is not None and len(batches) >= limit:
            break
        try:
            photo = load_rgb(item) if isinstance(item, (str, os.PathLike)) else item
        except ImageReadError as e:  # skipped, as detect skips bad photos
            warnings.warn(f"{e}; skipped from the calibration photos", DataWarning,
                          stacklevel=2)
            unreadable.append(str(e))
            continue
        batches.append(preprocess_photo(photo, size))
    if not batches:
        detail = f": {'; '.join(unreadable)}" if unreadable else ""
        raise ExportError(f"no usable calibration photo{detail}")
    return batches


_RESIZE_NOTES = {
    False: "to a square (aspect ratio not kept); detect uses antialiased bilinear",
    True: "to a square (aspect ratio not kept), any method: the file reduces it "
          "to the inference size with the antialiased resize's kernel inside, so "
          "plain bilinear (MediaPipe), area, nearest or bicubic give nearly the "
          "map of detect's antialiased resize",
}


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
def tflite_converter(model, mode, image_size, calibration=None, io_dtype="uint8",
                     input_reduction=1):
    """A configured `tf.lite.TFLiteConverter` for the fixed-size serving graph.

    A context manager: the converter reads a temporary SavedModel, removed on
    exit. `image_size` is the inference size S; the graph's input is
    `input_reduction` times it. `calibration` (for int8) is a list of float
    batches at the input's size.
    """
    import tensorflow as tf

    mode = parse_tflite_mode(mode)
    with tempfile.TemporaryDirectory() as folder:
        root = _serving_root(model, image_size=image_size, batch_size=1, with_encoded=False,
                             input_reduction=input_reduction)
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


def _convert(model, mode, image_size, calibration, io_dtype, input_reduction):
    with tflite_converter(model, mode, image_size, calibration, io_dtype,
                          input_reduction) as converter:
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
    inference_size=None,
    calibration_images=None,
    io_dtype="uint8",
    num_calibration=DEFAULT_NUM_CALIBRATION,
    metadata=True,
    image_size=None,
    input_reduction=DEFAULT_INPUT_REDUCTION,
):
    """Writes a TFLite file with a fixed input [1, k * S, k * S, 3] and its sidecar.

    Args:
        model: a `keras_defusion.DeFusionNet`.
        out_path: the `.tflite` file; the sidecar is `<out_path>.json`.
        mode: a `TFLiteMode` or its name: "float32", "float16", "dynamic",
            "int8".
        inference_size: the square side S; default the size the model was
            saved with (`model_inference_size`).
        calibration_images: for "int8" (required): a folder of real photos or
            an iterable of paths / RGB arrays; they go through the detection
            preprocessing (`preprocess_photo`).
        io_dtype: "uint8" (default; what the Task library reads) or "int8",
            the input and output type of "int8" files.
        num_calibration: at most this many calibration photos.
        metadata: embed Task library metadata when tflite-support is
            importable (a logged note when it is not).
        image_size: the old name of `inference_size`.
        input_reduction: k, one of `INPUT_REDUCTIONS`. With 2 (the default)
            the input is twice the inference size and the file reduces it
            with the antialiased resize's kernel inside, so callers that
            resize without antialiasing (MediaPipe, `tf.image.resize`,
            OpenCV) get the map `detect` gives; 1 takes S x S as is.

    Returns:
        `out_path`.

    Raises:
        ValueError: an unknown mode or io_dtype, or int8 without photos.
        ExportError: conversion needs a non-builtin op, or no usable photo.
    """
    mode = parse_tflite_mode(mode)
    _exported_config(model)  # raises TypeError for other models
    inference_size = inference_size or image_size
    size = check_inference_size(inference_size) if inference_size else model_inference_size(model)
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"io_dtype must be one of {IO_DTYPES}, got {io_dtype!r}")
    input_reduction = check_input_reduction(input_reduction)
    input_side = size * input_reduction
    calibration = None
    if mode is TFLiteMode.INT8:
        if calibration_images is None:
            raise ValueError(
                "int8 mode needs calibration_images: a folder of real photos (or an iterable)"
            )
        calibration = calibration_photos(calibration_images, input_side, num_calibration)

    model_bytes = _convert(model, mode, size, calibration, io_dtype, input_reduction)
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
        with_metadata, metadata_note = _embed_task_metadata(model_bytes, input_side, input_dtype)
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
        input_reduction=input_reduction,
        input={
            "name": IMAGES_INPUT,
            "shape": [1, input_side, input_side, 3],
            "dtype": input_dtype,
            "color": "RGB",
            "range": "0..255",
            "normalization": NORMALIZATION,
            "resize": _RESIZE_NOTES[input_reduction > 1],
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
    write_json(tflite_sidecar_path(out_path), sidecar)
    logger.info("TFLite (%s) written to %s (%d bytes)", mode.value, out_path, len(model_bytes))
    return out_path
