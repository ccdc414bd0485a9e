"""Typed configuration of the DeFusionNet model (its named presets: `presets.py`).

The paper (section 3) fixes the topology: a VGG16 encoder tapped at six
layers, m = 3 shallow and 3 deep, side layers of two extra convolutions,
FFRM refinement recurrent for t = 3 steps, deep supervision and a fused map.
It is silent on channel widths, kernel sizes and the resolution the FFRM works
at; those are the fields below, and the presets record what we chose.
"""

import dataclasses

# Layers of keras.applications.VGG16 tapped as the paper's six side layers
# (conv1_2, conv2_2, conv3_3, conv4_3, conv5_3, pool5) and their strides.
TAP_LAYERS = (
    "block1_conv2",
    "block2_conv2",
    "block3_conv3",
    "block4_conv3",
    "block5_conv3",
    "block5_pool",
)
TAP_STRIDES = (1, 2, 4, 8, 16, 32)
NORMALIZATIONS = ("none", "batch", "group")
# The name of the final blur map, among the model's outputs and in every export.
FUSED = "fused"
# Encoders from keras.applications: the paper's VGG16 and mobile ones for
# phones (`keras_defusion.models.defusionnet.encoder`). Every one is tapped at six layers.
BACKBONES = ("vgg16", "mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v2")
MOBILE_TAP_STRIDES = (2, 4, 8, 16, 32, 32)


def tap_strides(backbone):
    """The strides of a backbone's six tapped layers."""
    return TAP_STRIDES if backbone == "vgg16" else MOBILE_TAP_STRIDES


@dataclasses.dataclass(frozen=True)
class DeFusionNetConfig:
    """Hyperparameters of the model; every field is serialised with it.

    Attributes:
        side_channels: C, the channels of every side layer and of the refined
            features F_i^j (Eq. 3). The paper does not say.
        side_kernel_size: kernel of the two extra convolutions per side layer.
        fusion_channels: channels of FSHF and FSEF (Eq. 1-2).
        refine_kernel_size: kernel of the refinement convolutions W_i^j.
        working_stride: the FFRM runs at input size / working_stride. 1 is the
            paper (input resolution); must divide 32.
        num_steps: t, the recurrent steps (1 to 6; the paper uses 3).
        num_shallow: m, how many of the six side layers are shallow.
        use_ffrm: False gives Table 3's noFFRM ablation: all six layers are
            fused into one group at each step, which refines every layer.
        normalization: "none" (the paper), "batch" or "group" after each head
            convolution; helps training from scratch.
        separable: the head's k x k convolutions depthwise-separable (a
            depthwise k x k, then a 1x1), for phones.
        backbone: the encoder (`BACKBONES`): "vgg16" (the paper) or a
            `keras.applications` MobileNet, tapped at the end of each stride
            (2 to 32) and at its last convolution.
        encoder_width: multiplier on the encoder's filters. For VGG16, 1.0
            uses `keras.applications.VGG16` and other values build a
            VGG16-shaped encoder with the same layer names (for fast tests);
            for MobileNets it is their `alpha`.
        encoder_batchnorm: batch normalisation after each encoder
            convolution (VGG16-BN, same layer names); only without
            pretrained weights, for training from scratch.
        encoder_init: initialiser of the encoder's kernels when no weights are
            loaded: "glorot_uniform" (Keras' default) or "he_normal".
        pad_multiple: inputs are padded to a multiple of this inside the
            graph and the maps cropped back, so any H x W works.

    The size photos are resized to for inference is not architecture: it
    is the model's `inference_size` attribute, read through
    `keras_defusion.inference.contract.model_inference_size`.
    """

    side_channels: int = 32
    side_kernel_size: int = 3
    fusion_channels: int = 32
    refine_kernel_size: int = 3
    working_stride: int = 1
    num_steps: int = 3
    num_shallow: int = 3
    use_ffrm: bool = True
    normalization: str = "none"
    separable: bool = False
    backbone: str = "vgg16"
    encoder_width: float = 1.0
    encoder_batchnorm: bool = False
    encoder_init: str = "glorot_uniform"
    pad_multiple: int = 32

    def __post_init__(self):
        if not 1 <= self.num_steps <= 6:
            raise ValueError(f"num_steps must be 1..6, got {self.num_steps}")
        if not 1 <= self.num_shallow <= 5:
            raise ValueError(f"num_shallow must be 1..5, got {self.num_shallow}")
        if self.working_stride not in (1, 2, 4, 8, 16, 32):
            raise ValueError(
                f"working_stride must be a power of 2 up to 32, got "
                f"{self.working_stride}"
            )
        if self.pad_multiple % 32:
            raise ValueError(
                f"pad_multiple must be a multiple of 32 (VGG16's total "
                f"stride), got {self.pad_multiple}"
            )
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, got "
                f"{self.normalization!r}"
            )
        if self.backbone not in BACKBONES:
            raise ValueError(
                f"backbone must be one of {BACKBONES}, got {self.backbone!r}"
            )
        if self.backbone != "vgg16" and self.encoder_batchnorm:
            raise ValueError(
                "encoder_batchnorm is for the vgg16 backbone; MobileNets "
                "always have batch normalisation"
            )
        if self.encoder_init not in ("glorot_uniform", "he_normal"):
            raise ValueError(f"unknown encoder_init {self.encoder_init!r}")
        for name in ("side_channels", "fusion_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        for name in ("side_kernel_size", "refine_kernel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.encoder_width <= 0:
            raise ValueError("encoder_width must be positive")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """The config of `values`; ValueError naming any unknown field."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(
                f"unknown DeFusionNet config fields: {sorted(unknown)}; "
                f"known: {sorted(known)}"
            )
        return cls(**values)


def output_names(num_steps):
    """Names of the training model's outputs: the fused map, then side maps."""
    names = [FUSED]
    for step in range(1, num_steps + 1):
        names += [f"step{step}_out{i}" for i in range(1, len(TAP_LAYERS) + 1)]
    return names
