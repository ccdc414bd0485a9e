import json
import math

import pytest

from benchmarks import train_throughput
from keras_defusion.data import synthetic
from tests import harness

TINY = harness.TINY_MODEL_FLAGS


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("throughput_data")
    synthetic.write_synthetic_folder(root, count=4, size=48, seed=3)
    return root


@pytest.mark.slow
def test_reports_positive_consistent_figures(tiny_data, tmp_path):
    out = tmp_path / "throughput.json"
    argv = ["--data", str(tiny_data), "--presets", "mobile", "--image-size", "32",
            "--batch-size", "2", "--steps", "2", "--warmup", "1", "--out", str(out), *TINY]
    assert train_throughput.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["command"].startswith("python -m benchmarks.train_throughput --data")
    assert report["backbone_weights"] is None and report["mixed_precision"] is False
    for key in ("platform", "tensorflow", "keras", "cpu_count", "gpus", "date", "notes"):
        assert key in report, key
    assert set(report["results"]) == {"mobile"}
    result = report["results"]["mobile"]
    assert result["batch_size"] == 2 and result["image_size"] == 32
    assert result["replicas"] >= 1 and result["parameters"] > 0
    assert result["precision_policy"] == "float32"
    medians = result["median_seconds"]
    for kind in ("input", "compute", "full_step"):
        assert math.isfinite(medians[kind]) and medians[kind] > 0, kind
        assert len(result["all_seconds"][kind]) == 2, kind
    assert result["images_per_second"] == pytest.approx(2 / medians["full_step"])
    assert result["input_share"] == pytest.approx(medians["input"] / medians["full_step"])


def test_existing_out_is_kept_without_overwrite(tmp_path, capsys):
    out = tmp_path / "throughput.json"
    out.write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        train_throughput.main(["--out", str(out)])
    assert exit_info.value.code == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "{}"
