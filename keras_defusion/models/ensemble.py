"""An output ensemble of DeFusionNets: one map from the weighted mean of their logits.

Networks of different architectures (a VGG16 and a MobileNetV2 DeFusionNet,
say) err in different places, so the mean of their maps ranks pixels better
than either. Weight averaging (`keras_defusion.training.average`) cannot mix
them: it needs one network. The mean is taken over the fused logits, not the
probabilities, so a less confident member softens the map less.
"""

import keras
from keras import layers

from keras_defusion.models.defusionnet.config import FUSED
from keras_defusion.models.defusionnet.model import DeFusionNet
from keras_defusion.models.defusionnet.model import network_config, saved_metadata

# The fused map's logits at the input size: the layer before its sigmoid.
_FUSED_LOGITS_LAYER = f"{FUSED}_crop"


@keras.saving.register_keras_serializable(package="keras_defusion")
class WeightedSum(layers.Layer):
    """The sum of its inputs, each times a fixed weight (no trainable weights).

    Args:
        member_weights: one float per input.
    """

    def __init__(self, member_weights, **kwargs):
        super().__init__(**kwargs)
        self.member_weights = [float(weight) for weight in member_weights]

    def call(self, inputs):
        if len(inputs) != len(self.member_weights):
            raise ValueError(f"{self.name}: {len(inputs)} inputs for "
                             f"{len(self.member_weights)} weights")
        return sum(weight * x for weight, x in zip(self.member_weights, inputs))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "member_weights": self.member_weights}


def check_member_weights(member_weights, count):
    """The weights as floats that sum to 1; raises ValueError naming the problem."""
    if member_weights is None:
        return [1.0 / count] * count
    weights = [float(weight) for weight in member_weights]
    if len(weights) != count:
        raise ValueError(f"member_weights: {len(weights)} weights for {count} members; "
                         "give one weight per member")
    if any(weight <= 0 for weight in weights):
        raise ValueError(f"member_weights must be positive, got {weights}")
    total = sum(weights)
    return [weight / total for weight in weights]


@keras.saving.register_keras_serializable(package="keras_defusion")
class DeFusionEnsemble(keras.Model):
    """Several DeFusionNets run on one photo, their fused logits averaged.

    It takes what a `DeFusionNet` takes (RGB 0..255, float32, any H x W) and
    returns `{"fused": map}`, the sigmoid of the weighted mean of the members'
    fused logits, [N, H, W, 1]. Each member does its own preprocessing. The
    members' side maps are not computed: the ensemble is for inference (detect,
    SavedModel and TFLite exports), not for training.

    Args:
        members: the members' `DeFusionNet` configs (`model.get_config()`);
            their weights come from the saved ensemble or `from_members`.
        member_weights: one positive weight per member, normalised to sum to
            1 (default: equal).
        inference_size: the square size photos are resized to (metadata, as
            for `DeFusionNet`); None: the first member's.
        **kwargs: `keras.Model` arguments (`name`, `dtype`, `trainable`).

    Example:

    ```python
    ensemble = DeFusionEnsemble.from_members([vgg_model, mobile_model], [2, 1])
    ensemble(photos)["fused"]
    ```
    """

    def __init__(self, members, member_weights=None, inference_size=None, **kwargs):
        if len(members) < 2:
            raise ValueError(f"an ensemble needs two or more members, got {len(members)}")
        member_weights = check_member_weights(member_weights, len(members))
        kwargs.setdefault("name", "defusion_ensemble")
        members = [dict(member) for member in members]
        networks = [  # built for their layers; only the logits paths are kept
            DeFusionNet.from_config({**member, "backbone_weights": None,
                                     "name": f"member{index}"})
            for index, member in enumerate(members, start=1)
        ]
        images = keras.Input((None, None, 3), name="image")
        logits = [
            keras.Model(network.input, network.get_layer(_FUSED_LOGITS_LAYER).output,
                        name=f"{network.name}_logits")(images)
            for network in networks
        ]
        mean = WeightedSum(member_weights, name="logit_mean")(logits)
        fused = layers.Activation("sigmoid", dtype="float32", name=FUSED)(mean)
        super().__init__(inputs=images, outputs={FUSED: fused}, **kwargs)

        self.members = members
        self.member_weights = member_weights
        if inference_size is None:
            inference_size = networks[0].inference_size
        self.inference_size = None if inference_size is None else int(inference_size)

    @property
    def preset(self):
        """"ensemble" (what exports record where a DeFusionNet records its preset)."""
        return "ensemble"

    def members_config(self):
        """What exports record about the network: the members and their weights."""
        return {"members": [network_config(member) for member in self.members],
                "member_weights": self.member_weights}

    def get_config(self):
        return {
            "members": self.members,
            "member_weights": self.member_weights,
            **saved_metadata(self),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def from_members(cls, models, member_weights=None, inference_size=None):
        """An ensemble holding copies of trained `DeFusionNet`s' weights.

        Raises:
            TypeError: a model is not a `DeFusionNet`.
        """
        for model in models:
            if not isinstance(model, DeFusionNet):
                raise TypeError(f"ensemble members must be DeFusionNets, got "
                                f"{type(model).__name__} ({model.name})")
        ensemble = cls([model.get_config() for model in models], member_weights,
                       inference_size=inference_size)
        for index, model in enumerate(models, start=1):
            # The member's layers on the path to its fused logits; the other
            # steps' side-map convolutions are not part of the ensemble.
            for layer in ensemble.get_layer(f"member{index}_logits").layers:
                if layer.weights:
                    layer.set_weights(model.get_layer(layer.name).get_weights())
        return ensemble

    def inference_model(self):
        """This model: it returns the fused map only already."""
        return keras.Model(self.input, self.output[FUSED], name=f"{self.name}_inference")
