"""Custom layers of DeFusionNet: preprocessing, side layers and the FFRM.

Every layer is registered for serialisation under the package name
`keras_defusion`, and its `get_config` returns its constructor arguments.
"""

import keras
import numpy as np
from keras import layers
from keras import ops

from keras_defusion.models.defusionnet.config import NORMALIZATIONS

register = keras.saving.register_keras_serializable(package="keras_defusion")

# Caffe-style VGG16 preprocessing, as keras.applications.vgg16 does it: BGR
# channel order, ImageNet mean subtracted, no scaling.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


@register
class VGGPreprocess(layers.Layer):
    """RGB values 0..255 to VGG16's input: BGR with the ImageNet mean removed.

    Written as one fixed 1x1 convolution (a channel permutation with the
    negated mean as bias) rather than a flip and a subtraction: a flip becomes
    TFLite's `REVERSE_V2`, whose int8 kernel copies bytes between tensors of
    different quantization and so distorts every pixel.
    """

    def call(self, images):
        dtype = images.dtype
        permutation = np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3)
        kernel = ops.convert_to_tensor(permutation, dtype=dtype)
        mean = ops.convert_to_tensor(IMAGENET_MEAN_BGR, dtype=dtype)
        return ops.conv(images, kernel) - mean

    def compute_output_shape(self, input_shape):
        return input_shape


@register
class PadToMultiple(layers.Layer):
    """Zero-pads H and W at the bottom and right up to a multiple.

    After `VGGPreprocess`, zero is the ImageNet mean colour, so the padding
    is a neutral grey to the encoder.

    Args:
        multiple: H and W are padded up to a multiple of this.
    """

    def __init__(self, multiple=32, **kwargs):
        super().__init__(**kwargs)
        self.multiple = multiple

    def call(self, images):
        shape = ops.shape(images)
        pad_h = (-shape[1]) % self.multiple
        pad_w = (-shape[2]) % self.multiple
        return ops.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])

    def compute_output_shape(self, input_shape):
        def padded(size):
            if size is None:
                return None
            return size + (-size) % self.multiple

        return (
            input_shape[0],
            padded(input_shape[1]),
            padded(input_shape[2]),
            input_shape[3],
        )

    def get_config(self):
        config = super().get_config()
        config.update({"multiple": self.multiple})
        return config


@register
class CropToMatch(layers.Layer):
    """Crops `inputs[0]` to the height and width of `inputs[1]` (top left)."""

    def call(self, inputs):
        maps, reference = inputs
        shape = ops.shape(reference)
        return maps[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shape):
        maps_shape, reference_shape = input_shape
        return (
            maps_shape[0],
            reference_shape[1],
            reference_shape[2],
            maps_shape[3],
        )


@register
class UpsampleBilinear(layers.Layer):
    """Bilinear upsampling by an integer factor, at any input size.

    The same computation as `UpSampling2D(interpolation="bilinear")`, whose
    Keras 3 implementation cannot be traced when H and W are unknown (it
    compares the static size in Python), which a serving signature needs.

    Args:
        factor: the integer scale of H and W.
    """

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, inputs):
        import tensorflow as tf

        size = tf.shape(inputs)[1:3] * self.factor
        return tf.image.resize(inputs, size, method="bilinear")

    def compute_output_shape(self, input_shape):
        def scaled(size):
            return None if size is None else size * self.factor

        return (
            input_shape[0],
            scaled(input_shape[1]),
            scaled(input_shape[2]),
            input_shape[3],
        )

    def get_config(self):
        config = super().get_config()
        config.update({"factor": self.factor})
        return config


@register
class BilinearKernel(keras.initializers.Initializer):
    """Initialises a `Conv2DTranspose` kernel as bilinear upsampling.

    Each output channel starts as the bilinear interpolation of the input
    channel with the same index (FCN's initialisation); the rest start at 0.
    """

    def __call__(self, shape, dtype=None):
        kernel_size, _, out_channels, in_channels = shape
        factor = (kernel_size + 1) // 2
        center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
        grid = np.arange(kernel_size)
        profile = 1 - np.abs(grid - center) / factor
        filt = np.outer(profile, profile)
        kernel = np.zeros(shape, dtype="float32")
        for channel in range(min(out_channels, in_channels)):
            kernel[:, :, channel, channel] = filt
        return ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {}


@register
class GroupNorm(layers.Layer):
    """Group normalisation written with 4-D tensors only.

    Computes what `keras.layers.GroupNormalization` computes (statistics over
    H, W and the channels of each group; two-pass variance; float32
    statistics under mixed precision), and has the same weights (`gamma`,
    `beta`), so models saved with it load unchanged. Keras reshapes to
    [N, H, W, groups, C / groups]; 5-D tensors are refused by LiteRT's GPU
    accelerator. Here per-channel means over H and W are averaged within each
    group by a fixed 1x1 convolution, which every TFLite runtime runs and
    int8 quantizes well.

    Args:
        groups: the channel groups; must divide the channels.
        epsilon: added to the variance.
    """

    def __init__(self, groups, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.groups = groups
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % self.groups:
            raise ValueError(
                f"GroupNorm: {self.groups} groups must divide the channels, "
                f"got {channels}"
            )
        self.gamma = self.add_weight(
            shape=(channels,), name="gamma", initializer="ones", autocast=False
        )
        self.beta = self.add_weight(
            shape=(channels,), name="beta", initializer="zeros", autocast=False
        )
        size = channels // self.groups
        group_of = np.arange(channels) // size
        averaging = (group_of[:, None] == group_of[None, :]) / size
        self._averaging = averaging.astype("float32").reshape(1, 1, channels, channels)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        kernel = ops.convert_to_tensor(self._averaging)

        def group_mean(values):
            per_channel = ops.mean(values, axis=(1, 2), keepdims=True)
            return ops.conv(per_channel, kernel)

        centred = x - group_mean(x)
        scale = ops.rsqrt(group_mean(ops.square(centred)) + self.epsilon)
        outputs = centred * (scale * self.gamma) + self.beta
        return ops.cast(outputs, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"groups": self.groups, "epsilon": self.epsilon})
        return config


def _normalization(kind, channels, name):
    if kind == "batch":
        return layers.BatchNormalization(name=name)
    if kind == "group":
        return GroupNorm(groups=min(8, channels), name=name)
    return None


@register
class _ConvBlock(layers.Layer):
    """Conv (+ optional normalisation) + ReLU; the head's building block.

    Internal to `SideLayer` and `FFRMStep` (the class name is part of the
    weight paths of saved models, hence kept as is).

    Args:
        filters: output channels.
        kernel_size: square kernel side.
        normalization: "none" (conv with bias), "batch" or "group".
        separable: a depthwise-separable convolution (kernel sizes > 1).
    """

    def __init__(
        self, filters, kernel_size, normalization="none", separable=False, **kwargs
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.normalization = normalization
        self.separable = separable
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}")
        if separable and kernel_size > 1:
            self.conv = layers.SeparableConv2D(
                filters,
                kernel_size,
                padding="same",
                use_bias=normalization == "none",
                depthwise_initializer="he_normal",
                pointwise_initializer="he_normal",
                name="conv",
            )
        else:
            self.conv = layers.Conv2D(
                filters,
                kernel_size,
                padding="same",
                use_bias=normalization == "none",
                kernel_initializer="he_normal",
                name="conv",
            )
        self.norm = _normalization(normalization, filters, "norm")

    def build(self, input_shape):
        self.conv.build(input_shape)
        output_shape = self.conv.compute_output_shape(input_shape)
        if self.norm is not None:
            self.norm.build(output_shape)

    def call(self, inputs, training=None):
        x = self.conv(inputs)
        if self.norm is not None:
            x = self.norm(x, training=training)
        return ops.relu(x)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "normalization": self.normalization,
                "separable": self.separable,
            }
        )
        return config


@register
class SideLayer(layers.Layer):
    """A side layer: two extra convolutions, then resampling to the FFRM.

    Section 3.3 appends two convolutional layers to each tapped VGG16 layer.
    The result is brought to the FFRM's working resolution: layers coarser
    than it are upsampled by a `Conv2DTranspose` initialised as bilinear
    upsampling (section 3.1's deconvolution); layers finer than it (only with
    a working stride > 1) are average-pooled first, so their convolutions run
    at the lower resolution.

    Args:
        filters: output channels C.
        kernel_size: kernel of the two convolutions.
        scale: feature stride / working stride. > 1 upsamples by that
            factor, < 1 average-pools by its inverse, 1 keeps the size.
        num_convs: the extra convolutions (2 in the paper).
        normalization: "none", "batch" or "group" after each convolution.
        separable: depthwise-separable convolutions.
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        scale=1.0,
        num_convs=2,
        normalization="none",
        separable=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.scale = float(scale)
        self.num_convs = num_convs
        self.normalization = normalization
        self.separable = separable
        self.pool = None
        self.upsample = None
        if self.scale < 1:
            factor = int(round(1 / self.scale))
            self.pool = layers.AveragePooling2D(factor, name="pool")
        self.blocks = [
            _ConvBlock(
                filters, kernel_size, normalization, separable, name=f"block{k + 1}"
            )
            for k in range(num_convs)
        ]
        if self.scale > 1:
            factor = int(round(self.scale))
            self.upsample = layers.Conv2DTranspose(
                filters,
                kernel_size=2 * factor,
                strides=factor,
                padding="same",
                use_bias=False,
                kernel_initializer=BilinearKernel(),
                name="upsample",
            )

    def build(self, input_shape):
        shape = input_shape
        if self.pool is not None:
            shape = self.pool.compute_output_shape(shape)
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        if self.upsample is not None:
            self.upsample.build(shape)

    def call(self, features, training=None):
        x = features
        if self.pool is not None:
            x = self.pool(x)
        for block in self.blocks:
            x = block(x, training=training)
        if self.upsample is not None:
            x = self.upsample(x)
        return x

    def compute_output_shape(self, input_shape):
        def resized(size):
            return None if size is None else int(size * self.scale)

        return (
            input_shape[0],
            resized(input_shape[1]),
            resized(input_shape[2]),
            self.filters,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "scale": self.scale,
                "num_convs": self.num_convs,
                "normalization": self.normalization,
                "separable": self.separable,
            }
        )
        return config


@register
class FFRMStep(layers.Layer):
    """One recurrent step of the feature fusing and refining module (FFRM).

    Given the features F_1^{j-1} .. F_n^{j-1} of the n side layers, it fuses
    the first `num_shallow` into FSHF (Eq. 1) and the rest into FSEF
    (Eq. 2), each a 1x1 convolution + ReLU over the concatenation, then
    refines every layer with its own convolution (Eq. 3): deep layers from
    Cat(F_i, FSHF), shallow layers from Cat(F_i, FSEF). Each step has its own
    weights W_i^j, so the recurrence is unrolled with one `FFRMStep` per step.

    With `use_ffrm=False` (Table 3's noFFRM ablation) all n layers are fused
    into one group, which refines every layer.

    Eq. 1-2 print the bias outside the ReLU; we read them as the usual
    conv + bias + ReLU, as Eq. 3 writes it.

    Args:
        num_layers: n, the side layers.
        num_shallow: m, the shallow ones among them.
        filters: channels of the refined features (C).
        fusion_filters: channels of FSHF and FSEF.
        kernel_size: kernel of the refinement convolutions.
        use_ffrm: cross-layer FFRM (True) or the noFFRM ablation (False).
        normalization: "none", "batch" or "group" after each convolution.
        separable: depthwise-separable refinement convolutions.
    """

    def __init__(
        self,
        num_layers=6,
        num_shallow=3,
        filters=32,
        fusion_filters=32,
        kernel_size=3,
        use_ffrm=True,
        normalization="none",
        separable=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_layers = num_layers
        self.num_shallow = num_shallow
        self.filters = filters
        self.fusion_filters = fusion_filters
        self.kernel_size = kernel_size
        self.use_ffrm = use_ffrm
        self.normalization = normalization
        self.separable = separable
        if use_ffrm:
            self.fuse_shallow = _ConvBlock(
                fusion_filters, 1, normalization, name="fshf"
            )
            self.fuse_deep = _ConvBlock(fusion_filters, 1, normalization, name="fsef")
        else:
            self.fuse_all = _ConvBlock(fusion_filters, 1, normalization, name="fuse_all")
        self.refiners = [
            _ConvBlock(
                filters, kernel_size, normalization, separable, name=f"refine{i + 1}"
            )
            for i in range(num_layers)
        ]

    def build(self, input_shape):
        def concat_shape(shapes):
            return tuple(shapes[0][:-1]) + (sum(s[-1] for s in shapes),)

        shapes = list(input_shape)
        m = self.num_shallow
        if self.use_ffrm:
            self.fuse_shallow.build(concat_shape(shapes[:m]))
            self.fuse_deep.build(concat_shape(shapes[m:]))
        else:
            self.fuse_all.build(concat_shape(shapes))
        for refiner, shape in zip(self.refiners, shapes):
            refiner.build(tuple(shape[:-1]) + (shape[-1] + self.fusion_filters,))

    def call(self, features, training=None):
        features = list(features)
        m = self.num_shallow
        if self.use_ffrm:
            fshf = self.fuse_shallow(ops.concatenate(features[:m], axis=-1), training=training)
            fsef = self.fuse_deep(ops.concatenate(features[m:], axis=-1), training=training)
            guides = [fsef] * m + [fshf] * (self.num_layers - m)
        else:
            fused = self.fuse_all(ops.concatenate(features, axis=-1), training=training)
            guides = [fused] * self.num_layers
        return [
            refiner(ops.concatenate([feature, guide], axis=-1), training=training)
            for refiner, feature, guide in zip(self.refiners, features, guides)
        ]

    def compute_output_shape(self, input_shape):
        return [tuple(shape[:-1]) + (self.filters,) for shape in input_shape]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_layers": self.num_layers,
                "num_shallow": self.num_shallow,
                "filters": self.filters,
                "fusion_filters": self.fusion_filters,
                "kernel_size": self.kernel_size,
                "use_ffrm": self.use_ffrm,
                "normalization": self.normalization,
                "separable": self.separable,
            }
        )
        return config
