"""Output ensembles: the weighted mean of DeFusionNets' fused logits, as one model."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_defusion
from keras_defusion import export as export_lib
from keras_defusion.errors import ModelLoadError
from keras_defusion.models import pretrained
from keras_defusion.models.loading import load_model_file
from keras_defusion.training.average import average_weights
from keras_defusion.training.ensemble import ensemble_models
from tests import harness

SIZE = 64


def logit(p):
    p = np.asarray(p, np.float64)
    return np.log(p / (1 - p))


@pytest.fixture(scope="module")
def members():
    """A tiny VGG16 and a tiny MobileNetV2 DeFusionNet, as the shipped pair is."""
    return [harness.tiny_model("scratch", seed=1, inference_size=SIZE),
            harness.tiny_model("phone", seed=2, inference_size=SIZE)]


@pytest.fixture(scope="module")
def ensemble(members):
    return keras_defusion.DeFusionEnsemble.from_members(members, [2, 1])


@pytest.fixture(scope="module")
def member_files(members, tmp_path_factory):
    folder = tmp_path_factory.mktemp("members")
    paths = [folder / "vgg.keras", folder / "mobile.keras"]
    for model, path in zip(members, paths):
        model.save(path)
    return paths


def test_map_is_the_sigmoid_of_the_weighted_mean_of_the_members_logits(members, ensemble):
    images = harness.random_images(2, SIZE, 80)
    first, second = (np.asarray(model(images)["fused"]) for model in members)
    assert np.abs(first - second).mean() > 0.01  # the members differ
    expected = 1 / (1 + np.exp(-(2 / 3 * logit(first) + 1 / 3 * logit(second))))
    actual = np.asarray(ensemble(images)["fused"])
    assert actual.shape == (2, SIZE, 80, 1)
    harness.assert_map_spread(actual, minimum=0.005)
    np.testing.assert_allclose(actual, expected, atol=2e-5)
    assert ensemble.member_weights == pytest.approx([2 / 3, 1 / 3])
    assert ensemble.inference_size == SIZE and ensemble.preset == "ensemble"


def test_config_round_trip_and_keras_file(ensemble, tmp_path):
    harness.assert_config_round_trip(ensemble)
    harness.assert_saved_model_identical(ensemble, harness.random_images(1, SIZE, SIZE), tmp_path)
    path = tmp_path / "model.keras"
    assert isinstance(load_model_file(path), keras_defusion.DeFusionEnsemble)
    members = ensemble.members_config()["members"]
    assert [member["backbone"] for member in members] == ["vgg16", "mobilenet_v2"]
    assert "name" not in members[0] and "inference_size" not in members[0]


def test_shipped_form_round_trip(ensemble, tmp_path):
    folder = pretrained.save_pretrained(ensemble, tmp_path / "ensemble")
    assert "members" in json.loads((folder / pretrained.CONFIG_FILE).read_text())
    loaded = pretrained.load_pretrained_dir(folder)
    assert isinstance(loaded, keras_defusion.DeFusionEnsemble)
    images = harness.random_images(1, SIZE, SIZE)
    # Weights ship as float16.
    np.testing.assert_allclose(np.asarray(loaded(images)["fused"]),
                               np.asarray(ensemble(images)["fused"]), atol=2e-3)


@pytest.mark.parametrize("members_count,weights,message", [
    (1, None, "two or more members, got 1"),
    (2, [1, 2, 3], "3 weights for 2 members"),
    (2, [1, 0], "must be positive"),
])
def test_bad_arguments_are_named(members, members_count, weights, message):
    with pytest.raises(ValueError, match=message):
        keras_defusion.DeFusionEnsemble.from_members(members[:members_count], weights)


def test_members_must_be_defusionnets(members, ensemble):
    with pytest.raises(TypeError, match="must be DeFusionNets, got DeFusionEnsemble"):
        keras_defusion.DeFusionEnsemble.from_members([members[0], ensemble])


def test_ensemble_models_writes_the_file_and_its_sources(member_files, members, tmp_path):
    out = tmp_path / "ensemble.keras"
    ensemble_models(member_files, out, [3, 1])
    sidecar = json.loads((tmp_path / "ensemble.keras.json").read_text())
    assert sidecar["sources"] == [str(path) for path in member_files]
    assert sidecar["member_weights"] == pytest.approx([0.75, 0.25])
    loaded = load_model_file(out)
    images = harness.random_images(1, SIZE, SIZE)
    expected = keras_defusion.DeFusionEnsemble.from_members(members, [3, 1])(images)["fused"]
    np.testing.assert_allclose(np.asarray(loaded(images)["fused"]), np.asarray(expected),
                               atol=1e-6)


def test_what_cannot_be_ensembled_averaged_or_trained_is_refused(member_files, tmp_path):
    from keras_defusion.training.build import build_model
    from keras_defusion.training.config import get_training_config

    out = tmp_path / "ensemble.keras"
    ensemble_models(member_files, out)
    with pytest.raises(ValueError, match=r"ensemble\.keras is an ensemble already"):
        ensemble_models([out, member_files[0]], tmp_path / "again.keras")
    with pytest.raises(ValueError, match="end the name with .keras"):
        ensemble_models(member_files, tmp_path / "ensemble.h5")
    with pytest.raises(ValueError, match=r"ensemble\.keras: a DeFusionEnsemble does not average"):
        average_weights([out, out], tmp_path / "soup.keras")
    tiny = {key: value for key, value in harness.tiny_model_kwargs().items()
            if key != "backbone_weights"}
    config = get_training_config("scratch", init_model=str(out), model_overrides=tiny)
    with pytest.raises(ModelLoadError, match="cannot start a training run"):
        build_model(config)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "ensemble.keras", "ensemble.keras.json"]


def test_cli_turns_errors_into_messages(member_files, tmp_path, capsys):
    from training import ensemble as ensemble_cli

    out = tmp_path / "e.keras"
    assert ensemble_cli.main(["--models", *map(str, member_files), "--weights", "1",
                              "--out", str(out)]) == 2
    assert "error: member_weights: 1 weights for 2 members" in capsys.readouterr().err
    assert ensemble_cli.main(["--models", *map(str, member_files), "--out", str(out)]) == 0
    assert "weights 0.500, 0.500" in capsys.readouterr().out


def test_detect_runs_the_ensemble(ensemble, tmp_path):
    path = tmp_path / "ensemble.keras"
    ensemble.save(path)
    photo = harness.random_images(1, 90, 70)[0]
    detector = keras_defusion.load_detector(str(path))
    blur = detector.detect(photo)
    assert blur.shape == (90, 70) and detector.inference_size == SIZE
    expected = keras_defusion.load_detector(ensemble).detect(photo)
    np.testing.assert_allclose(blur, expected, atol=1e-6)


def test_tflite_float32_matches_keras(ensemble, tmp_path):
    path = export_lib.export_tflite(ensemble, tmp_path / "ensemble.tflite", "float32",
                                    input_reduction=1)
    photos = np.concatenate([export_lib.preprocess_photo(p, SIZE)
                             for p in harness.calibration_set(2)])
    expected = ensemble.inference_model()(photos).numpy()
    harness.assert_map_spread(expected, minimum=0.005)
    actual = export_lib.run_tflite(export_lib.load_tflite(path), photos)
    np.testing.assert_allclose(actual, expected, atol=1e-4)
    sidecar = json.loads(open(export_lib.tflite_sidecar_path(path)).read())
    assert sidecar["preset"] == "ensemble"
    assert len(sidecar["config"]["members"]) == 2


@pytest.mark.slow
def test_saved_model_cli_runs_the_serving_graph(ensemble, tmp_path):
    """The graph-only load path TF Serving takes, in its own process."""
    export_dir = export_lib.export_saved_model(ensemble, tmp_path, name="ensemble", version=1)
    images = harness.random_images(2, 48, 40)
    np.save(tmp_path / "images.npy", images)
    done = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "run",
         "--dir", export_dir, "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"images={tmp_path / 'images.npy'}", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-2000:]
    actual = np.load(tmp_path / "out" / "blur_map.npy")
    expected = ensemble.inference_model()(images).numpy()
    harness.assert_map_spread(expected, minimum=0.005)
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    metadata = export_lib.load_saved_model_metadata(export_dir)
    assert metadata["preset"] == "ensemble" and len(metadata["config"]["members"]) == 2
