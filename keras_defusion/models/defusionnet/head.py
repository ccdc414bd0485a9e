"""DeFusionNet's head: the side layers and the FFRM's recurrent refinement step.

Every layer is registered for serialisation under the package name
`keras_defusion`, and its `get_config` returns its constructor arguments.
"""

from keras import layers
from keras import ops

from keras_defusion.models.defusionnet.config import NORMALIZATIONS
from keras_defusion.models.defusionnet.layers import BilinearKernel
from keras_defusion.models.defusionnet.layers import GroupNorm
from keras_defusion.models.defusionnet.layers import register


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
            x = self._upsample(x)
        return x

    def _upsample(self, x):
        """`self.upsample` ("same" padding) as LiteRT's GPU accelerator runs
        it right: a "valid" transposed convolution with the same kernel,
        cropped by (kernel - stride) // 2 at the top left, as "same" crops:
        the same map. The accelerator computes a "same" transposed
        convolution wrongly from a size that is not a multiple of its
        stride (10 x 10 at stride 8: a 320-px model's side 6)."""
        import tensorflow as tf

        stride = self.upsample.strides[0]
        start = (self.upsample.kernel_size[0] - stride) // 2
        kernel = ops.cast(self.upsample.kernel, x.dtype)
        full = ops.conv_transpose(x, kernel, strides=stride, padding="valid")
        height, width = (
            tf.shape(x)[axis] if x.shape[axis] is None else x.shape[axis]
            for axis in (1, 2)
        )
        return full[:, start : start + height * stride, start : start + width * stride, :]

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
