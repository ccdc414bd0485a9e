"""Blur detection on photos with any model artefact the project makes.

`load_detector` loads a trained model from any of these and returns a
`Detector` with one interface:

- a `.keras` file saved from `keras_defusion.DeFusionNet`, or a Keras model
  object in memory;
- a folder in the shipped form (`config.json` + `model.weights.h5`, see
  `keras_defusion.models.pretrained`);
- a SavedModel export folder: the version folder itself, or a TF-Serving
  layout `<base>/<name>/<version>/` (the highest version is used);
- a `.tflite` file (float, or full-integer int8/uint8);
- a registered pretrained model name (`keras_defusion.models.pretrained`).

Every photo is resized to one square inference size S x S (bilinear,
antialiased, as training resizes), run through the network, and its map
resized back to the photo's own size (bilinear), so the network costs the
same for a 12-MP photo as for a small one. The resizing is
`resize_photos` / `resize_maps`, shared with the exports (done a strip at
a time for large photos, with the same result).

Example:

```python
detector = load_detector("runs/cuhk/model.keras")
blur_map = detector.detect("photo.jpg")        # float32 [H, W], 1 = blurred
maps = detector.detect_batch([photo_a, photo_b])
```
"""

import os
import pathlib
import warnings

import numpy as np
from PIL import Image

from keras_defusion.errors import DataWarning
from keras_defusion.errors import ModelLoadError
from keras_defusion.inference.contract import DEFAULT_INFERENCE_SIZE
from keras_defusion.inference.contract import FUSED
from keras_defusion.inference.contract import check_inference_size
from keras_defusion.inference.contract import model_inference_size
from keras_defusion.inference.contract import resize_map_array
from keras_defusion.inference.contract import resize_photo_array
from keras_defusion.inference.runners import _KerasRunner
from keras_defusion.inference.runners import _SavedModelRunner
from keras_defusion.inference.runners import _TFLiteRunner
from keras_defusion.inference.runners import _square_size
from keras_defusion.io import images as image_io
from keras_defusion.models import pretrained

DEFAULT_BATCH_SIZE = 8


class Detector:
    """Runs a blur detection model on photos of any size.

    Build one with `load_detector`. Photos may be file paths, PIL images or
    numpy arrays: uint8, uint16 or float with values 0..255, grey [H, W],
    RGB [H, W, 3] or RGBA [H, W, 4] (alpha dropped). Files and PIL images have
    their EXIF orientation applied, so maps follow the upright photo.

    Attributes:
        inference_size: S, the square size the network runs at and its
            maps come out at (`image_size` is its old name).
        input_size: the square size photos are resized to: S, or k * S for
            a TFLite file that reduces its input by k inside.
        kind: `"keras"`, `"saved_model"` or `"tflite"`.
        source: what it was loaded from (a path, name or model description).
        output_names: names of the maps `detect(..., outputs="all")` returns.
    """

    def __init__(self, runner, inference_size, kind, source, input_size=None):
        self._runner = runner
        self.inference_size = inference_size
        self.input_size = input_size or inference_size
        self.kind = kind
        self.source = source

    @property
    def image_size(self):
        return self.inference_size

    @property
    def output_names(self):
        return list(self._runner.output_names)

    def __repr__(self):
        return (
            f"Detector(kind={self.kind!r}, inference_size={self.inference_size}, "
            f"source={str(self.source)!r})"
        )

    def detect(self, image, outputs=None):
        """The blur map of one photo, at the photo's own size.

        Args:
            image: a file path, PIL image or numpy array (see the class).
            outputs: None for the fused map; `"all"` for a dict of every named
                map ("fused", "step{j}_out{i}"; Keras models only); or a list
                of output names for a dict of those.

        Returns:
            float32 [H, W] in [0, 1] (1 = blurred), or a dict name -> map.

        Raises:
            image_io.ImageReadError: a file cannot be read (names it).
            ValueError: an array of unusable shape or values, or unknown
                outputs.
        """
        return self.detect_batch([image], outputs=outputs)[0]

    def detect_batch(self, images, outputs=None, batch_size=DEFAULT_BATCH_SIZE):
        """Blur maps of photos of different sizes, run `batch_size` at a time.

        Each photo is resized to S x S, the resized photos run as one batch,
        and each map is resized back to its photo's size.

        Args:
            images: a list of file paths, PIL images or numpy arrays.
            outputs: as in `detect`.
            batch_size: photos per network call (a TFLite model runs them one
                by one regardless).

        Returns:
            A list with one map (or dict of maps) per photo, in order.
        """
        self._output_selection(outputs)  # unknown outputs fail before any work
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        images = list(images)
        results = []
        for start in range(0, len(images), batch_size):
            # Only resized photos are kept: a 12-MP photo is 144 MB as float.
            prepared = [self.prepare(image) for image in images[start:start + batch_size]]
            small = self.run_prepared(np.stack([p[0] for p in prepared]), outputs)
            results += [self.restore(m, size) for m, (_, size) in zip(small, prepared)]
        return results

    # The three stages of `detect_batch`, for callers that overlap them
    # (`keras-defusion detect` decodes, resizes and writes in threads).

    def prepare(self, image):
        """A photo resized for the network: (float32 [I, I, 3] at `input_size`, its (H, W))."""
        rgb = to_rgb(image)
        return resize_photo_array(rgb, self.input_size), tuple(rgb.shape[:2])

    def run_prepared(self, batch, outputs=None):
        """The network on prepared photos [N, I, I, 3]: a map [S, S] (or a dict) each."""
        names = self._output_selection(outputs)
        predicted = self._runner.predict(np.asarray(batch, np.float32), names)
        maps = [{name: predicted[name][i] for name in names} for i in range(len(batch))]
        return maps if _wants_dict(outputs) else [m[FUSED] for m in maps]

    def restore(self, small, size):
        """A map (or dict of maps) from `run_prepared` at the photo's (H, W)."""
        if isinstance(small, dict):
            return {name: resize_map_array(blur_map, *size) for name, blur_map in small.items()}
        return resize_map_array(small, *size)

    def _output_selection(self, outputs):
        available = self._runner.output_names
        if outputs is None or outputs == FUSED:
            return [FUSED]
        if outputs == "all":
            if self.kind != "keras":
                raise ValueError(
                    f"outputs='all' needs the Keras model (.keras file); a "
                    f"{self.kind} export returns the fused map only"
                )
            names = list(available)
        elif isinstance(outputs, str):
            raise ValueError(
                f"outputs must be None, 'all' or a list of output names, got {outputs!r}"
            )
        else:
            names = list(outputs)
        unknown = [name for name in names if name not in available]
        if unknown:
            if self.kind != "keras":
                raise ValueError(
                    f"outputs {unknown} need the Keras model (.keras file); a "
                    f"{self.kind} export returns the fused map only"
                )
            raise ValueError(f"unknown outputs {unknown}; this model has {available}")
        return names


def _wants_dict(outputs):
    return not (outputs is None or outputs == FUSED)


# === Photos in, maps out ===


def to_rgb(image):
    """A photo as an RGB array [H, W, 3] with values 0..255 (uint8 or float32).

    Args:
        image: a file path (EXIF orientation applied), a PIL image of any
            mode, or a numpy array: uint8, uint16 (scaled by 255 / 65535) or
            float 0..255, grey [H, W] or [H, W, 1], RGB or RGBA.

    Raises:
        image_io.ImageReadError: an unreadable file (the message names it).
        ValueError: an array of unusable shape or values.
    """
    if isinstance(image, (str, os.PathLike)):
        return image_io.load_rgb(image)
    if isinstance(image, Image.Image):
        return image_io.to_rgb_array(image)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(
            f"an image array must be [H, W], [H, W, 1], [H, W, 3] or "
            f"[H, W, 4], got shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"an image array has no pixels (shape {array.shape})")
    array = array[..., :3]
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        if array.size and int(array.max()) <= 255:
            warnings.warn(
                "a uint16 array whose values are all 0..255: read as 16-bit (0..65535), "
                "so the photo is nearly black; convert it with array.astype('uint8')",
                DataWarning, stacklevel=2)
        return array.astype(np.float32) * np.float32(255.0 / 65535.0)
    is_float = np.issubdtype(array.dtype, np.floating)
    if array.dtype == np.bool_ or not (is_float or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"an image array must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError("an image array holds NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 255:
        raise ValueError(f"image values must be 0..255, got {low:g}..{high:g}")
    if is_float and 0 < high <= 1.0:
        warnings.warn(
            "a float image with values in 0..1: the detector expects 0..255 "
            "(multiply by 255)",
            stacklevel=2,
        )
    return array


# === Loading ===


def find_saved_model_dir(path):
    """The SavedModel folder at or under `path`, or None.

    Accepts the version folder itself (holding `saved_model.pb`), a model
    folder of numbered versions (`<name>/<version>/`, highest wins) or a
    TF-Serving base folder holding one such model folder.

    Raises:
        ModelLoadError: the base folder holds several models.
    """
    path = pathlib.Path(path)

    def is_saved_model(folder):
        return (folder / "saved_model.pb").is_file() or (
            folder / "saved_model.pbtxt"
        ).is_file()

    def latest_version(folder):
        versions = [
            child for child in folder.iterdir()
            if child.is_dir() and child.name.isdigit() and is_saved_model(child)
        ]
        return max(versions, key=lambda child: int(child.name)) if versions else None

    if is_saved_model(path):
        return path
    if not path.is_dir():
        return None
    version = latest_version(path)
    if version is not None:
        return version
    models = {
        child.name: latest_version(child)
        for child in sorted(path.iterdir())
        if child.is_dir()
    }
    models = {name: version for name, version in models.items() if version is not None}
    if len(models) > 1:
        raise ModelLoadError(
            f"{path}: holds several SavedModels ({', '.join(models)}); pass one "
            f"model's folder"
        )
    return next(iter(models.values()), None)


def load_detector(source=None, inference_size=None, *, image_size=None):
    """Loads a model from any artefact the project makes, as a `Detector`.

    Args:
        source: a `.keras` file, a Keras model object, a shipped-form folder
            (`config.json` + `model.weights.h5`), a SavedModel folder (or
            TF-Serving layout), a `.tflite` file, or a registered pretrained
            name. None: `pretrained.DEFAULT_MODEL`.
        inference_size: the square size S photos are resized to. Default:
            the size the model was saved with (Keras: its `inference_size`,
            `keras_defusion.inference.contract.model_inference_size`), the size the
            export recorded (SavedModel), or the input size (TFLite, which
            cannot change it).

    Loading runs no code from a `.keras` file (Keras' safe mode: no
    lambdas, only registered layers), but a SavedModel's graph is a program:
    load SavedModel folders only from sources you trust.

    Returns:
        A `Detector`.

    Raises:
        pretrained.PretrainedModelMissing: a registered name whose files
            are not installed.
        ModelLoadError: a missing, unsupported or unloadable source (the
            message names it).
    """
    import keras

    if image_size is not None:  # the old name
        inference_size = image_size
    image_size = None if inference_size is None else check_inference_size(inference_size)
    if source is None:
        source = pretrained.DEFAULT_MODEL
    if isinstance(source, keras.Model):
        return _keras_detector(source, image_size, source.name)
    if not isinstance(source, (str, os.PathLike)):
        raise ModelLoadError(
            f"cannot load a detector from a {type(source).__name__}; pass a "
            f"path, a registered name or a keras.Model"
        )
    path = pathlib.Path(source).expanduser()
    if not path.exists():
        if str(source) in pretrained.PRETRAINED_MODELS:
            return _keras_detector(pretrained.load_pretrained(str(source)), image_size, source)
        raise ModelLoadError(
            f"{source}: no such file or folder, and not a registered pretrained "
            f"model (registered: {', '.join(sorted(pretrained.PRETRAINED_MODELS))})"
        )
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".keras"):
            return _keras_detector(_load_keras_file(path), image_size, path)
        if name.endswith(".tflite"):
            return _tflite_detector(path, image_size)
        if name.endswith(".weights.h5"):
            if pretrained.is_pretrained_dir(path.parent):
                return _keras_detector(
                    pretrained.load_pretrained_dir(path.parent), image_size, path.parent
                )
            raise ModelLoadError(
                f"{path}: weights alone do not say which model they fit; put the "
                f"model's {pretrained.CONFIG_FILE} beside them or pass a .keras file"
            )
        raise ModelLoadError(
            f"{path}: unsupported model file; pass a .keras file, a .tflite file, "
            f"a SavedModel folder or a folder with {pretrained.CONFIG_FILE} + "
            f"{pretrained.WEIGHTS_FILE}"
        )
    if pretrained.is_pretrained_dir(path):
        return _keras_detector(pretrained.load_pretrained_dir(path), image_size, path)
    saved_model_dir = find_saved_model_dir(path)
    if saved_model_dir is None:
        raise ModelLoadError(
            f"{path}: folder holds no SavedModel (saved_model.pb, directly or in "
            f"<name>/<version>/) and no {pretrained.CONFIG_FILE} + "
            f"{pretrained.WEIGHTS_FILE}"
        )
    return _saved_model_detector(saved_model_dir, image_size)


def _load_keras_file(path):
    import keras

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:
        raise ModelLoadError(f"{path}: not a loadable .keras model ({e})") from e


def _keras_detector(model, image_size, source):
    runner = _KerasRunner(model)
    fixed = _square_size(tuple(model.input_shape)) if len(model.inputs) == 1 else None
    size = image_size or fixed or model_inference_size(model)
    if fixed is not None and size != fixed:
        raise ValueError(f"{source}: the model takes {fixed} x {fixed} only, not {size}")
    return Detector(runner, size, "keras", source)


def _saved_model_detector(path, image_size):
    runner = _SavedModelRunner(path)
    fixed = runner.fixed_size()
    size = image_size or fixed or runner.recorded_size() or DEFAULT_INFERENCE_SIZE
    if fixed is not None and size != fixed:
        raise ValueError(f"{path}: the SavedModel takes {fixed} x {fixed} only, not {size}")
    return Detector(runner, size, "saved_model", path)


def _tflite_detector(path, image_size):
    runner = _TFLiteRunner(path)
    if image_size is not None and image_size != runner.output_size:
        raise ValueError(
            f"{path}: the TFLite model runs at {runner.output_size} x {runner.output_size} "
            f"only, not {image_size}"
        )
    return Detector(runner, runner.output_size, "tflite", path, input_size=runner.size)
