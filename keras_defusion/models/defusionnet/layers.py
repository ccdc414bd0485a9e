"""Custom layers of DeFusionNet: preprocessing, padding, upsampling, group norm.

The side layers and the FFRM are in `keras_defusion.models.defusionnet.head`.

Every layer is registered for serialisation under the package name
`keras_defusion`, and its `get_config` returns its constructor arguments.
"""

import keras
import numpy as np
from keras import layers
from keras import ops

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


