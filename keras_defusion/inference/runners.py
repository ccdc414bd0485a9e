"""Runtimes for the artefacts the project makes: Keras, SavedModel and TFLite."""

import json
import os

import numpy as np

from keras_defusion.errors import ModelLoadError
from keras_defusion.inference.contract import BLUR_MAP_OUTPUT
from keras_defusion.inference.contract import CONFIG_ASSET
from keras_defusion.inference.contract import FUSED
from keras_defusion.inference.contract import IMAGES_INPUT
from keras_defusion.inference.contract import SERVING_SIGNATURE


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
        images: float array [N, H, W, 3], RGB 0..255 at the file's input
            size (k * S for a file with input reduction k).

    Returns:
        float32 array [N, S, S, 1] of blur probabilities, at the file's
        output size S.
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


def load_saved_model_metadata(export_dir):
    """The JSON written beside an export (`assets/defusion_config.json`)."""
    path = os.path.join(os.fspath(export_dir), "assets", CONFIG_ASSET)
    if not os.path.isfile(path):
        raise ModelLoadError(
            f"{export_dir}: no {CONFIG_ASSET} in assets/; not a SavedModel that "
            "keras-defusion exported (export one with `keras-defusion export`)"
        )
    with open(path) as f:
        return json.load(f)


class _KerasRunner:
    """A Keras model: a DeFusionNet (dict of maps) or a single-map model."""

    def __init__(self, model):
        import tensorflow as tf

        try:
            structure = model.output
        except (AttributeError, ValueError) as e:
            raise ModelLoadError(
                f"{model.name}: not a built functional Keras model ({e})"
            ) from e
        if isinstance(structure, dict):
            self.output_names = list(structure)
        elif isinstance(structure, (list, tuple)) and len(structure) > 1:
            self.output_names = list(model.output_names)
        else:
            self.output_names = [FUSED]
        if FUSED not in self.output_names:
            raise ModelLoadError(
                f"{model.name}: a Keras model with outputs {self.output_names} "
                f"has no {FUSED!r} map"
            )
        # The fused map alone skips the earlier steps' side maps.
        fused_model = None
        if hasattr(model, "inference_model"):
            fused_model = model.inference_model()
        elif len(self.output_names) == 1 and not isinstance(structure, dict):
            fused_model = model
        self._call_all = tf.function(
            lambda x: model(x, training=False), reduce_retracing=True
        )
        self._call_fused = None
        if fused_model is not None:
            self._call_fused = tf.function(
                lambda x: fused_model(x, training=False), reduce_retracing=True
            )

    def predict(self, batch, names):
        if names == [FUSED] and self._call_fused is not None:
            result = {FUSED: self._call_fused(batch)}
        else:
            result = self._call_all(batch)
            if not isinstance(result, dict):
                result = dict(zip(self.output_names, result))
        return {name: _squeeze_maps(result[name]) for name in names}


def _squeeze_maps(maps):
    """[N, S, S, 1] or [N, S, S] tensor -> float32 numpy [N, S, S]."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 4:
        maps = maps[..., 0]
    return maps


class _SavedModelRunner:
    """A SavedModel's `serving_default`: images [N, H, W, 3] -> blur_map."""

    output_names = (FUSED,)

    def __init__(self, path):
        import tensorflow as tf

        self.path = path
        try:
            self.loaded = tf.saved_model.load(str(path))
        except Exception as e:
            raise ModelLoadError(f"{path}: not a loadable SavedModel ({e})") from e
        signatures = getattr(self.loaded, "signatures", {})
        if SERVING_SIGNATURE not in signatures:
            raise ModelLoadError(
                f"{path}: SavedModel has no {SERVING_SIGNATURE!r} signature "
                f"(has {sorted(signatures)})"
            )
        self.signature = signatures[SERVING_SIGNATURE]
        _, input_specs = self.signature.structured_input_signature
        if IMAGES_INPUT not in input_specs:
            raise ModelLoadError(
                f"{path}: signature {SERVING_SIGNATURE!r} takes "
                f"{sorted(input_specs)}, not {IMAGES_INPUT!r}"
            )
        if BLUR_MAP_OUTPUT not in self.signature.structured_outputs:
            raise ModelLoadError(
                f"{path}: signature {SERVING_SIGNATURE!r} returns "
                f"{sorted(self.signature.structured_outputs)}, not "
                f"{BLUR_MAP_OUTPUT!r}"
            )
        self.input_shape = tuple(input_specs[IMAGES_INPUT].shape.as_list())

    def fixed_size(self):
        """The square size the signature requires, or None for any size."""
        return _square_size(self.input_shape)

    def recorded_size(self):
        """The `inference_size` in the export's `assets/defusion_config.json`, or None."""
        try:
            size = load_saved_model_metadata(self.path).get("inference_size")
        except (ValueError, OSError):
            return None
        return int(size) if size else None

    def predict(self, batch, names):
        import tensorflow as tf

        result = self.signature(**{IMAGES_INPUT: tf.constant(batch, tf.float32)})
        return {FUSED: _squeeze_maps(result[BLUR_MAP_OUTPUT])}


class _TFLiteRunner:
    """A TFLite model with a fixed input [1, S, S, 3], float or integer."""

    output_names = (FUSED,)

    def __init__(self, path):
        try:
            self.interpreter = load_tflite(path, num_threads=os.cpu_count())
        except Exception as e:
            raise ModelLoadError(f"{path}: not a loadable TFLite model ({e})") from e
        signatures = self.interpreter.get_signature_list()
        signature = signatures.get(SERVING_SIGNATURE, {})
        if IMAGES_INPUT not in signature.get("inputs", ()) or BLUR_MAP_OUTPUT not in signature.get(
            "outputs", ()
        ):
            raise ModelLoadError(
                f"{path}: TFLite model needs a signature {SERVING_SIGNATURE!r} mapping "
                f"{IMAGES_INPUT!r} to {BLUR_MAP_OUTPUT!r} (as keras-defusion exports); "
                f"it has {signatures}"
            )
        input_detail, output_detail = tflite_io_details(self.interpreter)
        shape = tuple(int(d) for d in input_detail["shape"])
        self.size = _square_size(shape)
        if shape[0] != 1 or shape[-1] != 3 or self.size is None:
            raise ModelLoadError(
                f"{path}: TFLite input must be [1, S, S, 3], got {list(shape)}"
            )
        out_shape = tuple(int(d) for d in output_detail["shape"])
        # The map's side: the input's, or smaller when the file reduces its input.
        self.output_size = _square_size(out_shape[:3] + (3,))
        if self.output_size is None or self.size % self.output_size:
            raise ModelLoadError(
                f"{path}: TFLite output must be a square map [1, S, S, 1] with S "
                f"dividing the input's {self.size}, got {list(out_shape)}"
            )

    def predict(self, batch, names):
        return {FUSED: _squeeze_maps(run_tflite(self.interpreter, batch))}


def _square_size(shape):
    """S of a [N, S, S, 3] shape, None when dynamic or not square."""
    if len(shape) != 4:
        return None
    height, width = shape[1], shape[2]
    if height is None or width is None or height < 1 or height != width:
        return None
    return int(height)
