"""Loading a trained DeFusionNet (or an ensemble of them) from a `.keras` file
or a shipped model."""

import os

from keras_defusion.errors import ModelLoadError


def load_model_file(path):
    """Loads a DeFusionNet from a `.keras` file (as training writes it), or a
    `DeFusionEnsemble` (as `python -m training.ensemble` writes it).

    A shipped model's name (e.g. "defusionnet-scratch-cuhk") or folder works
    too, so the shipped model can be exported like a trained one.

    Raises:
        ModelLoadError: the file is missing, not a `.keras` archive, does not
            load, or holds another kind of model. The message names the file.
    """
    from keras_defusion.models import pretrained

    path = os.fspath(path)
    if path in pretrained.PRETRAINED_MODELS:
        return pretrained.load_pretrained(path)
    if pretrained.is_pretrained_dir(path):
        return pretrained.load_pretrained_dir(path)
    if not os.path.exists(path):
        raise ModelLoadError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise ModelLoadError(f"{path}: is a folder; expected a .keras file saved from DeFusionNet")
    if not path.endswith(".keras"):
        raise ModelLoadError(f"{path}: expected a .keras file saved from keras_defusion.DeFusionNet")
    import keras

    import keras_defusion  # (also registers the classes for loading)

    try:
        model = keras.saving.load_model(path)
    except Exception as error:
        raise ModelLoadError(
            f"{path}: cannot load this .keras file ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(model, (keras_defusion.DeFusionNet, keras_defusion.DeFusionEnsemble)):
        raise ModelLoadError(
            f"{path}: holds a {type(model).__name__}, not a keras_defusion.DeFusionNet"
        )
    return model
