"""Named presets of the DeFusionNet config."""

from keras_defusion.models.defusionnet.config import DeFusionNetConfig

MODEL_PRESETS = {
    # FFRM at the input resolution, as the paper. The 18 full-resolution 3x3
    # refinement convolutions cost ~33M x C^2 multiply-adds at 320x320; C = 24
    # keeps the whole model under 2.5x the encoder's time (README "Speed").
    "paper": DeFusionNetConfig(side_channels=24, fusion_channels=24),
    # FFRM at 1/4 of the input; maps upsampled bilinearly at the end.
    # Group norm in the head trains faster from scratch at small batches.
    "mobile": DeFusionNetConfig(
        side_channels=32,
        fusion_channels=32,
        working_stride=4,
        normalization="group",
        encoder_init="he_normal",
    ),
    "scratch": DeFusionNetConfig(
        # For training without ImageNet weights on a CPU: VGG16-BN at half width
        # (a quarter of VGG16's multiply-adds), He initialisation, group norm in
        # the head, FFRM at 1/4 resolution.
        side_channels=32,
        fusion_channels=32,
        working_stride=4,
        normalization="group",
        encoder_width=0.5,
        encoder_batchnorm=True,
        encoder_init="he_normal",
    ),
    # For phones (issue 12): MobileNetV2 from keras.applications, the head
    # depthwise-separable at 16 channels and batch norm (folded into the
    # convolutions on export), the FFRM at 1/8 of the input. Chosen by
    # int8 latency (benchmarks/results/phone_candidates.json).
    "phone": DeFusionNetConfig(
        backbone="mobilenet_v2",
        side_channels=16,
        fusion_channels=16,
        working_stride=8,
        normalization="batch",
        separable=True,
    ),
}


def get_model_config(preset="paper", **overrides):
    """Returns the config of a named preset with fields overridden.

    Args:
        preset: a key of `MODEL_PRESETS`.
        **overrides: `DeFusionNetConfig` fields.
    """
    if preset not in MODEL_PRESETS:
        raise ValueError(
            f"unknown model preset {preset!r}; choose from {sorted(MODEL_PRESETS)}"
        )
    values = MODEL_PRESETS[preset].to_dict()
    values.update(overrides)
    return DeFusionNetConfig.from_dict(values)


# The inference size a model built from a preset records (`DeFusionNet`'s
# `inference_size`) when none is given; training records its crop size.
PRESET_INFERENCE_SIZES = {"phone": 256}
