"""What every export needs: the model to export and the facts it records."""

from keras_defusion.inference.contract import NORMALIZATION
from keras_defusion.inference.contract import OUTPUT_MEANING
from keras_defusion.inference.contract import model_inference_size
from keras_defusion.version import __version__

MODEL_NAME = "defusionnet"


def _exported_config(model):
    """What an export records about the network (a JSON-able dict)."""
    if hasattr(model, "inference_model"):
        if hasattr(model, "defusion_config"):
            return model.defusion_config.to_dict()
        if hasattr(model, "members_config"):  # a DeFusionEnsemble
            return model.members_config()
    raise TypeError(
        "expected a keras_defusion.DeFusionNet or DeFusionEnsemble (with "
        f"`inference_model()`), got {type(model).__name__}"
    )


def serving_model(model):
    """The fused-map model of a DeFusionNet, traceable at any H x W.

    It shares the DeFusionNet's weights (no copy).

    Args:
        model: a `keras_defusion.DeFusionNet` or `DeFusionEnsemble`.

    Returns:
        A `keras.Model`: RGB 0..255 [N, H, W, 3] -> blur probability [N, H, W, 1].
    """
    _exported_config(model)
    return model.inference_model()


def _tf_variables(keras_model):
    """The `tf.Variable`s behind a Keras model's weights (tracked once each)."""
    return [weight.value for weight in keras_model.weights]


def model_metadata(model, **extra):
    """The facts an exported file records about its model (a JSON-able dict)."""
    config = _exported_config(model)
    return {
        "model_name": MODEL_NAME,
        "keras_defusion_version": __version__,
        "preset": getattr(model, "preset", None),
        "inference_size": model_inference_size(model),
        "input": "RGB 0..255; " + NORMALIZATION,
        "output": OUTPUT_MEANING,
        "config": config,
        **extra,
    }
