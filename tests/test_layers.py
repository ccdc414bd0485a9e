import keras
import numpy as np
import pytest

from keras_defusion.models.defusionnet import head as kd_head
from keras_defusion.models.defusionnet import layers as kd_layers
from tests import harness


def test_vgg_preprocess_matches_keras_applications():
    images = harness.random_images(2, 5, 7)
    expected = keras.applications.vgg16.preprocess_input(images.copy())
    actual = kd_layers.VGGPreprocess()(images)
    np.testing.assert_allclose(np.asarray(actual), expected, atol=1e-4)


def test_vgg_preprocess_is_one_convolution_no_flip():
    """A flip would become REVERSE_V2, which int8 TFLite distorts (issue 11)."""
    import tensorflow as tf

    graph = tf.function(kd_layers.VGGPreprocess()).get_concrete_function(
        tf.TensorSpec([1, 8, 8, 3], tf.float32)).graph
    kinds = {op.type for op in graph.get_operations()}
    assert "ReverseV2" not in kinds and "Conv2D" in kinds


@pytest.mark.parametrize("channels,groups", [(32, 8), (8, 8), (12, 4)])
def test_group_norm_matches_keras_group_normalization(channels, groups):
    rng = np.random.default_rng(channels)
    x = rng.normal(3.0, 2.0, (2, 9, 7, channels)).astype("float32")
    reference = keras.layers.GroupNormalization(groups=groups)
    ours = kd_layers.GroupNorm(groups=groups)
    reference.build(x.shape)
    ours.build(x.shape)
    weights = [rng.normal(1, 0.3, channels).astype("float32"),
               rng.normal(0, 0.3, channels).astype("float32")]
    reference.set_weights(weights)
    ours.set_weights(weights)  # the same weights, in the same order
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(reference(x)), atol=2e-5)
    assert [v.name for v in ours.weights] == [v.name for v in reference.weights]
    harness.assert_layer_serializes(ours, x)


def test_group_norm_uses_four_dimensional_tensors_only():
    import tensorflow as tf

    layer = kd_layers.GroupNorm(groups=4)
    graph = tf.function(layer).get_concrete_function(
        tf.TensorSpec([1, 8, 8, 16], tf.float32)).graph
    ranks = {len(out.shape) for op in graph.get_operations() for out in op.outputs
             if out.shape.rank is not None}
    assert max(ranks) <= 4, ranks


@pytest.mark.parametrize("size,padded", [(1, 32), (32, 32), (33, 64), (70, 96)])
def test_pad_to_multiple(size, padded):
    layer = kd_layers.PadToMultiple(32)
    out = np.asarray(layer(np.ones((1, size, size + 1, 2), "float32")))
    assert out.shape[1] == padded and out.shape[2] % 32 == 0
    assert out[:, :size, : size + 1].min() == 1 and out.sum() == size * (size + 1) * 2
    harness.assert_layer_serializes(layer, np.ones((1, size, size, 2), "float32"))


def test_crop_to_match():
    maps = np.arange(64, dtype="float32").reshape(1, 8, 8, 1)
    out = kd_layers.CropToMatch()([maps, np.zeros((1, 5, 3, 3), "float32")])
    np.testing.assert_array_equal(np.asarray(out), maps[:, :5, :3])


def test_bilinear_kernel_upsamples_a_constant_to_a_constant():
    up = keras.layers.Conv2DTranspose(
        2, 8, strides=4, padding="same", use_bias=False,
        kernel_initializer=kd_layers.BilinearKernel(),
    )
    out = np.asarray(up(np.ones((1, 6, 6, 2), "float32")))
    assert out.shape == (1, 24, 24, 2)
    np.testing.assert_allclose(out[:, 4:-4, 4:-4], 1.0, atol=1e-6)


@pytest.mark.parametrize("scale", [0.25, 1.0, 4.0])
@pytest.mark.parametrize("normalization", ["none", "group", "batch"])
def test_side_layer_resamples_to_working_resolution(scale, normalization):
    layer = kd_head.SideLayer(4, scale=scale, normalization=normalization)
    features = harness.random_images(2, 16, 8)
    out = layer(features)
    assert tuple(out.shape) == (2, int(16 * scale), int(8 * scale), 4)
    assert layer.compute_output_shape((2, 16, 8, 3)) == tuple(out.shape)
    harness.assert_layer_serializes(layer, features)


@pytest.mark.parametrize("size", [(3, 5), (8, 8)])
def test_side_layer_upsamples_any_size_as_its_transposed_convolution(size):
    """The layer upsamples with a "valid" transposed convolution, cropped (for
    LiteRT's GPU accelerator); the map is the "same" one's, at any size."""
    import tensorflow as tf

    layer = kd_head.SideLayer(4, scale=8.0, normalization="group")
    features = harness.random_images(1, *size, seed=3) / 255
    out = np.asarray(layer(features))
    plain = features
    for block in layer.blocks:
        plain = block(plain)
    plain = np.asarray(layer.upsample(plain))
    harness.assert_map_spread(out[..., 0], minimum=0.01)
    assert out.shape == plain.shape == (1, size[0] * 8, size[1] * 8, 4)
    np.testing.assert_allclose(out, plain, atol=1e-5)
    dynamic = tf.function(layer, input_signature=[tf.TensorSpec((1, None, None, 3))])
    np.testing.assert_allclose(dynamic(features).numpy(), plain, atol=1e-5)


@pytest.mark.parametrize("use_ffrm", [True, False])
def test_ffrm_step_refines_every_layer(use_ffrm):
    layer = kd_head.FFRMStep(num_layers=6, num_shallow=3, filters=4,
                               fusion_filters=3, use_ffrm=use_ffrm)
    features = [harness.random_images(1, 8, 8, seed=i)[..., :2] for i in range(6)]
    out = layer(features)
    assert len(out) == 6
    assert all(tuple(o.shape) == (1, 8, 8, 4) for o in out)
    harness.assert_layer_serializes(layer, features)


def test_ffrm_cross_layer_wiring():
    """Shallow layers see the deep layers only through FSEF, and vice versa."""
    keras.utils.set_random_seed(0)
    layer = kd_head.FFRMStep(num_layers=6, num_shallow=3, filters=8, fusion_filters=8)
    base = [harness.random_images(1, 6, 6, seed=i) / 255 for i in range(6)]
    out_a = [np.asarray(o) for o in layer(base)]
    changed = list(base)
    changed[5] = harness.random_images(1, 6, 6, seed=99) / 255  # a deep layer only
    out_b = [np.asarray(o) for o in layer(changed)]
    # Layer 4 (deep) sees FSHF (shallow-only), so it is unchanged.
    np.testing.assert_allclose(out_a[3], out_b[3])
    # At least one shallow layer sees the change through FSEF.
    assert any(not np.allclose(out_a[i], out_b[i]) for i in range(3))


def test_upsample_bilinear_matches_keras_and_traces_at_unknown_size():
    import tensorflow as tf

    maps = harness.random_images(2, 5, 7)
    expected = keras.layers.UpSampling2D(4, interpolation="bilinear")(maps)
    layer = kd_layers.UpsampleBilinear(4)
    np.testing.assert_allclose(np.asarray(layer(maps)), np.asarray(expected), atol=1e-5)
    traced = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 3])])
    assert tuple(traced(maps).shape) == (2, 20, 28, 3)
    harness.assert_layer_serializes(layer, maps)


@pytest.mark.parametrize("normalization", ["none", "batch", "group"])
def test_conv_block_serializes(normalization):
    layer = kd_head._ConvBlock(4, 3, normalization)
    harness.assert_layer_serializes(layer, harness.random_images(1, 6, 6))
    assert layer.get_config()["normalization"] == normalization
