"""DeFusionNet (Tang et al., CVPR 2019) as a Keras functional model."""

import keras
from keras import layers

from keras_defusion.models.defusionnet.config import FUSED
from keras_defusion.models.defusionnet.config import TAP_LAYERS
from keras_defusion.models.defusionnet.config import tap_strides
from keras_defusion.models.defusionnet.encoder import build_mobilenet_encoder
from keras_defusion.models.defusionnet.encoder import build_vgg16_encoder
from keras_defusion.models.defusionnet.head import FFRMStep
from keras_defusion.models.defusionnet.head import SideLayer
from keras_defusion.models.defusionnet.layers import CropToMatch
from keras_defusion.models.defusionnet.layers import PadToMultiple
from keras_defusion.models.defusionnet.layers import UpsampleBilinear
from keras_defusion.models.defusionnet.layers import VGGPreprocess
from keras_defusion.models.defusionnet.presets import PRESET_INFERENCE_SIZES
from keras_defusion.models.defusionnet.presets import get_model_config


def saved_metadata(model):
    """The config entries a keras-defusion model saves besides its network:
    its inference size and `keras.Model`'s name, dtype policy and trainable."""
    return {
        "inference_size": model.inference_size,
        "name": model.name,
        "dtype": keras.dtype_policies.serialize(model.dtype_policy),
        "trainable": model.trainable,
    }


# Config entries that leave the network unchanged (see `network_config`).
_NOT_THE_NETWORK = ("inference_size", "name", "dtype", "trainable", "backbone_weights")


def network_config(config):
    """A DeFusionNet config without what leaves the network unchanged: the
    entries of `saved_metadata` and `backbone_weights` (how the encoder
    started). Two models with equal network configs run the same ops."""
    return {key: value for key, value in config.items() if key not in _NOT_THE_NETWORK}


@keras.saving.register_keras_serializable(package="keras_defusion")
class DeFusionNet(keras.Model):
    """DeFusionNet for defocus blur detection: the training model.

    The model takes RGB images with values 0..255 (float32, any H x W) and
    does its encoder's preprocessing inside its graph (VGG16's BGR mean
    subtraction, or a MobileNet's scaling to [-1, 1]). It returns a dict of blur
    **probability** maps (sigmoid applied, float32, 1 = blurred), each
    [N, H, W, 1] at the input's own size:

    - `"fused"`: the final map of Eq. 4 (a 1x1 convolution over the last
      step's six side logits, then the sigmoid);
    - `"step{j}_out{i}"`: the deeply supervised map of side layer i at
      recurrent step j (j = 1..t, i = 1..6).

    Use `inference_model()` for a model returning the fused map only.

    Args:
        preset: a model preset, `"paper"`, `"mobile"` or `"scratch"`
            (`keras_defusion.MODEL_PRESETS`).
        backbone_weights: the VGG16 encoder's initial weights: `"imagenet"`,
            `None` or the path of a local weights file. Only used when the
            model is first built; a saved model reloads its own weights.
        inference_size: the square size photos are resized to for this
            model (`detect`, the SavedModel's encoded-image signature, TFLite
            export): metadata saved with the model, not architecture, so
            setting `model.inference_size` changes no weight. None: the
            preset's (`PRESET_INFERENCE_SIZES`), else the contract's default
            (`keras_defusion.inference.contract.model_inference_size`).
        **kwargs: `DeFusionNetConfig` fields overriding the preset, and
            `keras.Model` arguments (`name`, `dtype`, `trainable`).

    Example:

    ```python
    model = keras_defusion.DeFusionNet("mobile", backbone_weights=None)
    maps = model(np.zeros((1, 200, 300, 3), "float32"))
    maps["fused"].shape  # (1, 200, 300, 1)
    ```
    """

    def __init__(self, preset="paper", backbone_weights="imagenet", inference_size=None,
                 **kwargs):
        model_kwargs = {
            key: kwargs.pop(key)
            for key in ("name", "dtype", "trainable")
            if key in kwargs
        }
        model_kwargs.setdefault("name", "defusionnet")
        config = get_model_config(preset, **kwargs)

        # === Functional graph ===
        images = keras.Input((None, None, 3), name="image")
        if config.backbone == "vgg16":
            x = VGGPreprocess(name="preprocess")(images)
            encoder = build_vgg16_encoder(
                backbone_weights,
                config.encoder_width,
                config.encoder_init,
                config.encoder_batchnorm,
            )
        else:  # MobileNets take [-1, 1]
            x = layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(images)
            encoder = build_mobilenet_encoder(
                config.backbone, backbone_weights, config.encoder_width
            )
        x = PadToMultiple(config.pad_multiple, name="pad")(x)
        taps = encoder(x)

        features = [
            SideLayer(
                config.side_channels,
                config.side_kernel_size,
                scale=stride / config.working_stride,
                normalization=config.normalization,
                separable=config.separable,
                name=f"side{i}",
            )(tap)
            for i, (tap, stride) in enumerate(
                zip(taps, tap_strides(config.backbone)), start=1
            )
        ]

        def to_map(logits, name):
            """Working-resolution logits -> probabilities at the input size."""
            if config.working_stride > 1:
                logits = UpsampleBilinear(
                    config.working_stride, name=f"{name}_upsample"
                )(logits)
            logits = CropToMatch(name=f"{name}_crop")([logits, images])
            return layers.Activation("sigmoid", dtype="float32", name=name)(logits)

        outputs = {}
        for step in range(1, config.num_steps + 1):
            features = FFRMStep(
                num_layers=len(TAP_LAYERS),
                num_shallow=config.num_shallow,
                filters=config.side_channels,
                fusion_filters=config.fusion_channels,
                kernel_size=config.refine_kernel_size,
                use_ffrm=config.use_ffrm,
                normalization=config.normalization,
                separable=config.separable,
                name=f"ffrm_step{step}",
            )(features)
            side_logits = [
                layers.Conv2D(1, 1, name=f"step{step}_score{i}")(feature)
                for i, feature in enumerate(features, start=1)
            ]
            for i, logits in enumerate(side_logits, start=1):
                outputs[f"step{step}_out{i}"] = to_map(logits, f"step{step}_out{i}")

        # Eq. 4 without its ReLU, which could not feed a probability: a 1x1
        # convolution over the last step's logits, started as their mean.
        fused_logits = layers.Conv2D(
            1,
            1,
            kernel_initializer=keras.initializers.Constant(1 / len(TAP_LAYERS)),
            name="fusion",
        )(layers.Concatenate(name="fusion_concat")(side_logits))
        outputs = {FUSED: to_map(fused_logits, FUSED), **outputs}

        super().__init__(inputs=images, outputs=outputs, **model_kwargs)

        # === Config ===
        self.preset = preset
        self.defusion_config = config
        if inference_size is None:
            inference_size = PRESET_INFERENCE_SIZES.get(preset)
        self.inference_size = None if inference_size is None else int(inference_size)

    def get_config(self):
        # Weights come back from the saved file, never from the network.
        return {
            "preset": self.preset,
            "backbone_weights": None,
            **self.defusion_config.to_dict(),
            **saved_metadata(self),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def inference_model(self):
        """A model sharing these weights that returns only the fused map.

        It takes the same input (RGB 0..255, any H x W) and returns the blur
        probability map [N, H, W, 1]; the earlier steps' side maps are not
        computed.
        """
        return keras.Model(
            self.input,
            self.get_layer(FUSED).output,
            name=f"{self.name}_inference",
        )
