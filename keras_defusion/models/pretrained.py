"""Trained DeFusionNet models shipped with the package, by name.

A shipped model is a folder `keras_defusion/assets/<name>/` holding:

- `config.json`: the `DeFusionNet` constructor config (`model.get_config()`);
- `model.weights.h5`: the weights stored as float16 (half the size), cast
  back to float32 when loaded;
- optionally `model_int8.tflite`: a full-integer TFLite export.

`save_pretrained(model, folder)` writes that form; `load_pretrained(name)`
reads it. A registered name whose files are absent (an install without the
package data, say) raises `PretrainedModelMissing` with what to do instead.
"""

import dataclasses
import json
import os
import pathlib
import tempfile

import numpy as np

from keras_defusion.errors import PretrainedModelMissing

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
INT8_TFLITE_FILE = "model_int8.tflite"


@dataclasses.dataclass(frozen=True)
class PretrainedModel:
    """A registered model name and what it is."""

    name: str
    description: str


PRETRAINED_MODELS = {
    model.name: model
    for model in (
        PretrainedModel(
            "defusionnet-cuhk-ensemble",
            "an output ensemble of defusionnet-scratch-cuhk-soup's network (VGG16-BN) "
            "and a MobileNetV2 DeFusionNet, both trained on CUHK, runs at 320 px",
        ),
        PretrainedModel(
            "defusionnet-scratch-cuhk-soup",
            "DeFusionNet, scratch preset (VGG16-BN, no ImageNet): the weight average "
            "of defusionnet-scratch-cuhk-320 and two fine-tunes of it, runs at 320 px",
        ),
        PretrainedModel(
            "defusionnet-scratch-cuhk-320",
            "DeFusionNet, scratch preset (VGG16-BN, no ImageNet), trained longer "
            "on CUHK, runs at 320 px",
        ),
        PretrainedModel(
            "defusionnet-scratch-cuhk",
            "DeFusionNet, scratch preset (VGG16-BN, no ImageNet), trained on CUHK",
        ),
        PretrainedModel(
            "defusionnet-phone-cuhk",
            "DeFusionNet head on MobileNetV2 for phones (no ImageNet), trained on CUHK",
        ),
    )
}
DEFAULT_MODEL = "defusionnet-cuhk-ensemble"


def default_assets_root():
    """The folder shipped models live in: `keras_defusion/assets/`."""
    return pathlib.Path(__file__).resolve().parent.parent / "assets"


def pretrained_dir(name, assets_root=None):
    """The folder of a registered model, whether or not its files exist.

    Raises:
        ValueError: `name` is not registered.
    """
    if name not in PRETRAINED_MODELS:
        raise ValueError(
            f"unknown pretrained model {name!r}; registered: "
            f"{', '.join(sorted(PRETRAINED_MODELS))}"
        )
    return pathlib.Path(assets_root or default_assets_root()) / name


def is_pretrained_dir(path):
    """Whether `path` is a folder in the shipped form (config + weights)."""
    path = pathlib.Path(path)
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def available_models(assets_root=None):
    """Registered names whose files are present, sorted."""
    return sorted(
        name
        for name in PRETRAINED_MODELS
        if is_pretrained_dir(pretrained_dir(name, assets_root))
    )


def save_pretrained(model, directory):
    """Writes `model` in the shipped form: config.json + float16 weights.

    Args:
        model: a `keras_defusion.DeFusionNet` or `DeFusionEnsemble`.
        directory: the folder to write (created if needed); existing files of
            the form are replaced atomically.

    Returns:
        The folder, as a `pathlib.Path`.
    """
    import h5py

    if not isinstance(model, _model_classes()):
        raise TypeError(
            f"save_pretrained needs a keras_defusion.DeFusionNet or DeFusionEnsemble, "
            f"got {type(model).__name__}"
        )
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        float32_path = os.path.join(tmp, "float32.weights.h5")
        float16_path = os.path.join(tmp, WEIGHTS_FILE)
        model.save_weights(float32_path)
        with h5py.File(float32_path, "r") as src, h5py.File(float16_path, "w") as dst:
            _copy_h5_as_float16(src, dst)
        config_path = os.path.join(tmp, CONFIG_FILE)
        with open(config_path, "w") as f:
            json.dump(model.get_config(), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(float16_path, directory / WEIGHTS_FILE)
        os.replace(config_path, directory / CONFIG_FILE)
    return directory


def _copy_h5_as_float16(src, dst):
    """Copies an h5 group tree, float32 datasets stored as float16."""
    import h5py

    for key, value in src.attrs.items():
        dst.attrs[key] = value
    for key, item in src.items():
        if isinstance(item, h5py.Dataset):
            data = item[()]
            if isinstance(data, np.ndarray) and data.dtype == np.float32:
                data = data.astype(np.float16)
            dst.create_dataset(key, data=data)
            for attr, attr_value in item.attrs.items():
                dst[key].attrs[attr] = attr_value
        else:
            _copy_h5_as_float16(item, dst.create_group(key))


def _model_classes():
    from keras_defusion.models.defusionnet.model import DeFusionNet
    from keras_defusion.models.ensemble import DeFusionEnsemble

    return DeFusionNet, DeFusionEnsemble


def load_pretrained_dir(directory):
    """Builds a `DeFusionNet` (or a `DeFusionEnsemble`, whose config lists
    `members`) from a folder in the shipped form.

    Raises:
        PretrainedModelMissing: a file of the form is missing.
        ValueError: the config describes neither.
    """
    network, ensemble = _model_classes()
    directory = pathlib.Path(directory)
    for file_name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / file_name).is_file():
            raise PretrainedModelMissing(f"{directory / file_name}: no such file")
    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
        model = (ensemble if "members" in config else network).from_config(config)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{directory / CONFIG_FILE}: not a DeFusionNet or "
                         f"DeFusionEnsemble config ({e})") from e
    # Keras casts the float16 values to the float32 variables on assignment.
    model.load_weights(str(directory / WEIGHTS_FILE))
    return model


def load_pretrained(name=DEFAULT_MODEL, assets_root=None):
    """Loads a shipped model by name (float32 weights).

    Returns:
        A `DeFusionNet`, or a `DeFusionEnsemble` for an ensemble such as the
        default.

    Args:
        name: a key of `PRETRAINED_MODELS`.
        assets_root: where model folders live (default: the package's
            `assets/`; tests pass a temporary folder).

    Raises:
        ValueError: `name` is not registered.
        PretrainedModelMissing: its files are not there.
    """
    directory = pretrained_dir(name, assets_root)
    if not is_pretrained_dir(directory):
        raise PretrainedModelMissing(missing_model_message(name, directory))
    return load_pretrained_dir(directory)


def missing_model_message(name, directory):
    """What to tell a user whose pretrained model has no files."""
    return (
        f"the pretrained model {name!r} is not installed ({directory} holds no "
        f"{CONFIG_FILE} + {WEIGHTS_FILE}); reinstall keras-defusion with its "
        f"package data, or pass --model PATH (Python: load_detector(PATH)) "
        f"with a .keras file from `python -m training.train`, a SavedModel "
        f"export folder or a .tflite file."
    )
