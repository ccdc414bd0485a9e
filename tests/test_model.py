import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_defusion
from keras_defusion import DeFusionNet
from keras_defusion.models.defusionnet.config import TAP_LAYERS
from tests import harness


@pytest.fixture(scope="module")
def tiny_model():
    return DeFusionNet("paper", **harness.tiny_model_kwargs(num_steps=2))


def test_outputs_named_and_at_input_size_for_odd_sizes(tiny_model):
    images = harness.random_images(batch=3, height=37, width=50)
    outputs = tiny_model(images)
    assert list(outputs) == keras_defusion.output_names(2)
    assert len(outputs) == 6 * 2 + 1
    for name, value in outputs.items():
        assert tuple(value.shape) == (3, 37, 50, 1), name
        assert value.dtype == "float32"
        value = np.asarray(value)
        assert value.min() >= 0 and value.max() <= 1, name


@pytest.mark.parametrize("num_steps", [1, 3, 6])
def test_six_t_plus_one_outputs(num_steps):
    model = DeFusionNet("mobile", **harness.tiny_model_kwargs(num_steps=num_steps))
    assert len(model.outputs) == 6 * num_steps + 1
    assert model.output_names == keras_defusion.output_names(num_steps)


def test_gradients_from_every_output_reach_first_encoder_layer(tiny_model):
    images = tf.constant(harness.random_images(1, 33, 35))
    first = tiny_model.get_layer("encoder").get_layer("block1_conv1")
    for name in tiny_model.output_names:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tiny_model(images)[name])
        grad = tape.gradient(loss, first.kernel)
        assert grad is not None, name
        assert float(tf.reduce_max(tf.abs(grad))) > 0, name


def test_inference_model_returns_fused_map_only(tiny_model):
    images = harness.random_images(2, 40, 31)
    inference = tiny_model.inference_model()
    fused = inference(images)
    np.testing.assert_allclose(
        np.asarray(fused), np.asarray(tiny_model(images)["fused"]), atol=1e-6
    )
    layer_names = {layer.name for layer in inference.layers}
    assert "step1_out1" not in layer_names


@pytest.mark.parametrize("preset", sorted(keras_defusion.MODEL_PRESETS))
@pytest.mark.parametrize("use_ffrm", [True, False])
def test_every_preset_builds_saves_and_reloads(preset, use_ffrm, tmp_path):
    model = DeFusionNet(preset, **harness.tiny_model_kwargs(use_ffrm=use_ffrm, num_steps=1))
    images = harness.random_images(2, 45, 29)
    harness.assert_config_round_trip(model)
    restored = harness.assert_saved_model_identical(model, images, str(tmp_path))
    assert restored.defusion_config == model.defusion_config


def test_config_is_readable_and_overrides_apply():
    model = DeFusionNet("mobile", **harness.tiny_model_kwargs(num_steps=2))
    config = model.defusion_config
    assert config.working_stride == keras_defusion.MODEL_PRESETS["mobile"].working_stride
    assert config.num_steps == 2 and config.side_channels == 4


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="num_steps"):
        DeFusionNet("paper", **harness.tiny_model_kwargs(num_steps=7))
    with pytest.raises(ValueError, match="unknown DeFusionNet config"):
        DeFusionNet("paper", **harness.tiny_model_kwargs(side_chanels=3))
    with pytest.raises(ValueError, match="unknown model preset"):
        DeFusionNet("huge", backbone_weights=None)


def test_noffrm_ablation_fuses_all_layers_in_one_group():
    model = DeFusionNet("paper", **harness.tiny_model_kwargs(use_ffrm=False, num_steps=1))
    step = model.get_layer("ffrm_step1")
    assert not step.use_ffrm
    sublayer_names = {layer.name for layer in step._flatten_layers(include_self=False)}
    assert "fuse_all" in sublayer_names and "fshf" not in sublayer_names


def test_fit_step_on_all_outputs():
    images = harness.random_images(2, 32, 32)
    masks = (np.random.default_rng(1).uniform(size=(2, 32, 32, 1)) > 0.5).astype("float32")
    model = DeFusionNet("mobile", **harness.tiny_model_kwargs(num_steps=1))
    targets = {name: masks for name in model.output_names}
    harness.assert_fit_step(model, images, targets)


def test_full_keras_applications_vgg16_builds():
    model = DeFusionNet("mobile", backbone_weights=None, num_steps=1)
    encoder = model.get_layer("encoder")
    assert encoder.get_layer("block5_conv3").kernel.shape == (3, 3, 512, 512)
    assert [encoder.get_layer(name).name for name in TAP_LAYERS] == list(TAP_LAYERS)
    fused = model.inference_model()(harness.random_images(1, 33, 47))
    assert tuple(fused.shape) == (1, 33, 47, 1)


def test_local_weights_file_is_loaded(tmp_path):
    source = keras.applications.VGG16(
        include_top=False, weights=None, input_shape=(None, None, 3)
    )
    path = tmp_path / "vgg16_notop.weights.h5"
    source.save_weights(path)
    model = DeFusionNet("mobile", backbone_weights=str(path), num_steps=1)
    loaded = model.get_layer("encoder").get_layer("block3_conv1").kernel
    np.testing.assert_array_equal(
        np.asarray(loaded), np.asarray(source.get_layer("block3_conv1").kernel)
    )


def test_missing_weights_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.h5"
    with pytest.raises(keras_defusion.BackboneWeightsError, match="nope.h5"):
        DeFusionNet("mobile", backbone_weights=str(missing))


def test_offline_imagenet_download_error_says_how_to_pass_a_file(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    with pytest.raises(keras_defusion.BackboneWeightsError) as error:
        DeFusionNet("mobile", backbone_weights="imagenet")
    message = str(error.value)
    assert "backbone_weights=" in message and "--weights PATH" in message
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message


def test_imagenet_model_reloads_without_downloading(monkeypatch, tmp_path):
    """A model first built with "imagenet" reloads from its file offline."""
    real_vgg16 = keras.applications.VGG16
    # Stand in for a successful download: build with random weights.
    monkeypatch.setattr(
        keras.applications,
        "VGG16",
        lambda weights=None, **kw: real_vgg16(weights=None, **kw),
    )
    model = DeFusionNet("mobile", backbone_weights="imagenet", num_steps=1)
    assert model.get_config()["backbone_weights"] is None

    def offline(*args, weights=None, **kwargs):
        if weights is not None:
            raise AssertionError("reloading tried to fetch weights")
        return real_vgg16(weights=None, **kwargs)

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    harness.assert_saved_model_identical(model, harness.random_images(1, 32, 32), str(tmp_path))


def test_same_seed_gives_same_weights():
    def build():
        keras_defusion.set_seed(7)
        return DeFusionNet("mobile", **harness.tiny_model_kwargs(num_steps=1))

    for a, b in zip(build().get_weights(), build().get_weights()):
        np.testing.assert_array_equal(a, b)


def test_he_init_draws_different_kernels_per_layer():
    model = DeFusionNet("mobile", backbone_weights=None, num_steps=1)
    encoder = model.get_layer("encoder")
    a = np.asarray(encoder.get_layer("block4_conv2").kernel)
    b = np.asarray(encoder.get_layer("block4_conv3").kernel)
    assert not np.allclose(a, b)
    assert np.std(a) == pytest.approx(np.sqrt(2 / (9 * 512)), rel=0.1)


@pytest.mark.parametrize("backbone", ["mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v2"])
def test_mobile_backbones_tap_six_layers_at_their_strides(backbone):
    from keras_defusion.models.defusionnet.config import tap_strides
    from keras_defusion.models.defusionnet.encoder import MOBILENET_BATCHNORM_MOMENTUM
    from keras_defusion.models.defusionnet.encoder import build_mobilenet_encoder

    encoder = build_mobilenet_encoder(backbone, None, width=0.35)
    taps = encoder(np.zeros((1, 64, 96, 3), "float32"))
    assert [(64 // t.shape[1], 96 // t.shape[2]) for t in taps] == [
        (s, s) for s in tap_strides(backbone)]
    norms = [layer for layer in encoder.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and {n.momentum for n in norms} == {MOBILENET_BATCHNORM_MOMENTUM}


def test_phone_preset_is_mobilenet_v2_with_a_separable_head():
    model = DeFusionNet("phone", backbone_weights=None, encoder_width=0.35, num_steps=1)
    assert model.defusion_config.backbone == "mobilenet_v2"
    kinds = {type(layer.conv).__name__ for layer in model._flatten_layers()
             if hasattr(layer, "conv") and layer.kernel_size > 1}
    assert kinds == {"SeparableConv2D"}
    maps = model(harness.random_images(1, 45, 70))
    assert maps["fused"].shape == (1, 45, 70, 1)
