"""Weight averaging ("model soup"): the mean of the weights, one network only."""

import json

import keras
import numpy as np
import pytest

from keras_defusion.errors import ModelLoadError
from keras_defusion.training.average import average_weights
from tests import harness


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two tiny models of one network with different weights, as .keras files."""
    folder = tmp_path_factory.mktemp("soup")
    paths = []
    for seed in (1, 2):
        model = harness.tiny_model(seed=seed, inference_size=48)
        path = folder / f"model_{seed}.keras"
        model.save(path)
        paths.append(path)
    return paths


def test_weights_are_the_mean_and_the_file_reloads(two_models, tmp_path):
    first, second = (keras.saving.load_model(path) for path in two_models)
    out = tmp_path / "soup.keras"
    average_weights(two_models, out)
    sidecar = json.loads((tmp_path / "soup.keras.json").read_text())
    assert sidecar["sources"] == [str(path) for path in two_models]
    soup = keras.saving.load_model(out)
    assert soup.inference_size == 48 and getattr(soup, "optimizer", None) is None
    pairs = list(zip(first.get_weights(), second.get_weights(), soup.get_weights()))
    assert len(pairs) == len(soup.get_weights()) > 0
    assert any(not np.array_equal(a, b) for a, b, _ in pairs)  # the ingredients differ
    for a, b, mean in pairs:
        assert mean.dtype == a.dtype
        np.testing.assert_allclose(mean, (a.astype(np.float64) + b) / 2, rtol=1e-6, atol=1e-7)
    images = harness.random_images(1, 48, 48)
    harness.assert_map_spread(np.asarray(soup(images)["fused"])[..., 0], minimum=0.001)


def test_another_network_is_refused_naming_the_file_and_the_difference(two_models, tmp_path):
    other = tmp_path / "wide.keras"
    harness.tiny_model(side_channels=8).save(other)
    out = tmp_path / "soup.keras"
    with pytest.raises(ValueError, match=r"wide\.keras is another network .*side_channels"):
        average_weights([two_models[0], other], out)
    assert not out.exists()


def test_bad_arguments_are_named(two_models, tmp_path):
    with pytest.raises(ValueError, match="two or more models, got 1"):
        average_weights(two_models[:1], tmp_path / "soup.keras")
    with pytest.raises(ValueError, match="end the name with .keras"):
        average_weights(two_models, tmp_path / "soup.h5")
    with pytest.raises(ModelLoadError, match="missing.keras: no such model file"):
        average_weights([two_models[0], tmp_path / "missing.keras"], tmp_path / "soup.keras")
    assert list(tmp_path.iterdir()) == []


def test_cli_turns_errors_into_messages(two_models, tmp_path, capsys):
    from training import average

    assert average.main(["--models", str(two_models[0]), "--out", str(tmp_path / "s.keras")]) == 2
    assert "error: averaging needs two or more models" in capsys.readouterr().err
    out = tmp_path / "s.keras"
    assert average.main(["--models", *map(str, two_models), "--out", str(out)]) == 0
    assert out.exists() and "the mean of 2 models' weights" in capsys.readouterr().out
