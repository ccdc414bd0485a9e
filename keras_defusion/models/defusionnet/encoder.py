"""The encoders: VGG16 tapped at the paper's six side layers, and MobileNets."""

import os

import keras

from keras_defusion.errors import BackboneWeightsError
from keras_defusion.models.defusionnet.config import TAP_LAYERS

VGG16_FILTERS = (64, 128, 256, 512, 512)
VGG16_CONVS_PER_BLOCK = (2, 2, 3, 3, 3)
IMAGENET_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
    + IMAGENET_WEIGHTS_FILE
)


def _vgg16_like(width, initializer, batchnorm):
    """A VGG16-shaped encoder: VGG16's layer names, scaled filters.

    With `batchnorm`, each convolution is followed by batch normalisation
    (named `<conv>_bn`) before its ReLU, as in VGG16-BN; the tapped layers are
    then the post-ReLU activations, named like VGG16's convolutions.
    """
    inputs = keras.Input((None, None, 3), name="input_layer")
    x = inputs
    for block, (filters, convs) in enumerate(
        zip(VGG16_FILTERS, VGG16_CONVS_PER_BLOCK), start=1
    ):
        for index in range(1, convs + 1):
            name = f"block{block}_conv{index}"
            x = keras.layers.Conv2D(
                max(1, int(round(filters * width))),
                3,
                padding="same",
                activation=None if batchnorm else "relu",
                use_bias=not batchnorm,
                kernel_initializer=initializer,
                name=f"{name}_conv" if batchnorm else name,
            )(x)
            if batchnorm:
                x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
                x = keras.layers.Activation("relu", name=name)(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="vgg16")


def _keras_vgg16(weights):
    try:
        return keras.applications.VGG16(
            include_top=False, weights=weights, input_shape=(None, None, 3)
        )
    except Exception as error:
        if weights != "imagenet":
            raise BackboneWeightsError(
                f"could not load VGG16 weights from {weights!r}: {error}"
            ) from error
        cache = os.path.join(
            os.path.expanduser("~"), ".keras", "models", IMAGENET_WEIGHTS_FILE
        )
        raise BackboneWeightsError(
            "could not download the ImageNet weights of VGG16 "
            f"({type(error).__name__}: {error}). Offline, download "
            f"{IMAGENET_WEIGHTS_URL} on a connected machine and either pass "
            "its path (backbone_weights='/path/to/"
            f"{IMAGENET_WEIGHTS_FILE}', or --weights PATH on the command "
            f"line) or copy it to {cache}, where Keras looks first."
        ) from error


def _reinitialize(model, initializer_name):
    """Draws fresh kernels for every Conv2D of `model` (biases stay 0)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            # A new initializer per layer: one instance would repeat its draws.
            initializer = keras.initializers.get(initializer_name)
            layer.kernel.assign(initializer(layer.kernel.shape))


def build_vgg16_encoder(
    weights=None, width=1.0, initializer="glorot_uniform", batchnorm=False
):
    """Builds the VGG16 encoder and returns a model of its six side layers.

    Args:
        weights: `"imagenet"`, `None` (random) or the path of a local
            weights file for `keras.applications.VGG16(include_top=False)`.
        width: multiplier on VGG16's filters. 1.0 uses
            `keras.applications.VGG16`; other values build the same layer
            names with fewer filters and require `weights=None`.
        initializer: kernel initialiser when `weights` is None.
        batchnorm: build VGG16-BN (batch normalisation after every
            convolution) instead; for training from scratch, no weights.

    Returns:
        A `keras.Model` named "encoder" taking preprocessed BGR images and
        returning the outputs of `TAP_LAYERS` as a list.

    Raises:
        BackboneWeightsError: the weights could not be downloaded or read;
            the message says how to pass a local file.
    """
    if weights is not None and weights != "imagenet":
        weights = os.fspath(weights)
        if not os.path.isfile(weights):
            raise BackboneWeightsError(
                f"backbone weights file not found: {weights}"
            )
    if width == 1.0 and not batchnorm:
        vgg = _keras_vgg16(weights)
        if weights is None and initializer != "glorot_uniform":
            _reinitialize(vgg, initializer)
    else:
        if weights is not None:
            raise ValueError(
                f"encoder_width={width}, encoder_batchnorm={batchnorm} builds "
                "a VGG16-shaped encoder that cannot load VGG16's pretrained "
                "weights; pass weights=None"
            )
        vgg = _vgg16_like(width, initializer, batchnorm)
    taps = [vgg.get_layer(name).output for name in TAP_LAYERS]
    return keras.Model(vgg.input, taps, name="encoder")


# The last layer of each stride 2..32 of the MobileNets in keras.applications
# (block outputs, before the next stride); the sixth tap is the model's own
# output, its last 1x1 convolution at stride 32. None: the stem's output.
MOBILENET_TAPS = {
    "mobilenet_v3_small": (
        None,
        "expanded_conv_project_bn",
        "expanded_conv_2_add",
        "expanded_conv_7_add",
        "expanded_conv_10_add",
    ),
    "mobilenet_v3_large": (
        "expanded_conv_add",
        "expanded_conv_2_add",
        "expanded_conv_5_add",
        "expanded_conv_11_add",
        "expanded_conv_14_add",
    ),
    "mobilenet_v2": (
        "expanded_conv_project_BN",
        "block_2_add",
        "block_5_add",
        "block_12_add",
        "block_16_project_BN",
    ),
}


# keras.applications' MobileNets use batch-norm momentum 0.999, made for
# ImageNet's long schedules. Over a few thousand steps from scratch their
# moving statistics lag far behind the weights (measured: after 600 steps the
# inference-mode maps were all "blurred", MAE 0.35, the training-mode ones
# 0.20), so their batch norms take Keras' default instead.
MOBILENET_BATCHNORM_MOMENTUM = 0.99


def _block_output(network, name):
    """The layer `name`; for a residual `*_add` missing at this width (the
    block's input and output channels differ), its projection instead."""
    names = {layer.name for layer in network.layers}
    if name not in names and name.endswith("_add"):
        stem = name[: -len("_add")]
        name = next(f"{stem}_project_{bn}" for bn in ("bn", "BN")
                    if f"{stem}_project_{bn}" in names)
    return network.get_layer(name)


def build_mobilenet_encoder(backbone, weights=None, width=1.0):
    """Builds a MobileNet from `keras.applications`, returning six taps.

    Args:
        backbone: a key of `MOBILENET_TAPS`.
        weights: `"imagenet"`, `None` (random) or a local weights file, as
            `keras.applications` takes them.
        width: the MobileNet's `alpha`.

    Returns:
        A `keras.Model` named "encoder" taking images scaled to [-1, 1] and
        returning its taps at strides 2, 4, 8, 16, 32 and 32.

    Raises:
        BackboneWeightsError: the weights could not be loaded.
    """
    kwargs = {"input_shape": (None, None, 3), "include_top": False,
              "weights": weights, "alpha": width}
    if backbone == "mobilenet_v2":
        constructor = keras.applications.MobileNetV2
    else:
        constructor = (keras.applications.MobileNetV3Small
                       if backbone == "mobilenet_v3_small"
                       else keras.applications.MobileNetV3Large)
        kwargs["include_preprocessing"] = False
    try:
        network = constructor(**kwargs)
    except Exception as error:
        raise BackboneWeightsError(
            f"could not build {backbone} with weights={weights!r} and "
            f"alpha={width} ({type(error).__name__}: {error}). Offline, pass "
            "weights=None, or the path of a weights file downloaded on a "
            "connected machine."
        ) from error
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = MOBILENET_BATCHNORM_MOMENTUM
    taps = []
    for name in MOBILENET_TAPS[backbone]:
        if name is None:  # MobileNetV3Small's first block already strides
            taps.append(network.get_layer("expanded_conv_depthwise_pad").input)
        else:
            taps.append(_block_output(network, name).output)
    taps.append(network.output)
    return keras.Model(network.input, taps, name="encoder")
