"""Every benchmark script keeps committed results unless told to replace them."""

import argparse

import pytest

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results
from tests.conftest import REPO_ROOT

# quoted_numbers rewrites the docs from results; it writes no result itself.
SCRIPTS = sorted(path for path in (REPO_ROOT / "benchmarks").glob("*.py")
                 if path.stem not in ("__init__", "quoted_numbers"))


def _parser():
    parser = argparse.ArgumentParser()
    add_out_arguments(parser)
    return parser


def test_an_existing_out_is_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "result.json"
    out.write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        parse_args_keeping_results(_parser(), ["--out", str(out)])
    assert exit_info.value.code == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "{}"
    assert parse_args_keeping_results(_parser(), ["--out", str(out), "--overwrite"]).overwrite
    assert parse_args_keeping_results(_parser(), ["--out", str(tmp_path / "new.json")])


def test_out_is_required(capsys):
    with pytest.raises(SystemExit):
        parse_args_keeping_results(_parser(), [])
    assert "--out" in capsys.readouterr().err


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.stem)
def test_every_script_parses_with_the_shared_out_arguments(script):
    """No default --out into benchmarks/results/: a reproduction writes where
    it is told, and replaces a file only with --overwrite."""
    source = script.read_text()
    assert "add_out_arguments(" in source and "parse_args_keeping_results(" in source
    assert '"--json"' not in source and "results/" not in source.split('"""')[-1]


def test_detect_speed_reports_medians_of_back_to_back_runs(tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from benchmarks import detect_speed
    from tests import harness

    model_path = tmp_path / "tiny.keras"
    harness.tiny_model(inference_size=32).save(model_path)
    rng = np.random.default_rng(0)
    for index in range(3):
        photo = rng.integers(0, 256, (40 + index, 50, 3), dtype=np.uint8)
        Image.fromarray(photo).save(tmp_path / f"p{index}.jpg")
    out = tmp_path / "speed.json"
    assert detect_speed.main(["--model", str(model_path), "--images", str(tmp_path),
                              "--batch-size", "2", "--repeats", "3", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["photos"] == 3 and len(report["ratios"]) == 3
    assert report["model_seconds_per_photo"] > 0 and report["detect_seconds_per_photo"] > 0
    # Both are rounded to 3 decimals: the median lies among the runs' ratios.
    assert min(report["ratios"]) - 0.001 <= report["ratio"] <= max(report["ratios"]) + 0.001
    assert "baseline" not in report


def test_detect_speed_measures_a_baseline_in_the_same_run(tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from benchmarks import detect_speed
    from tests import harness

    harness.tiny_model(inference_size=64).save(tmp_path / "large.keras")
    harness.tiny_model(inference_size=32).save(tmp_path / "small.keras")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(
            photos / f"p{index}.png")
    out = tmp_path / "speed.json"
    assert detect_speed.main(["--model", str(tmp_path / "large.keras"), "--baseline",
                              str(tmp_path / "small.keras"), "--images", str(photos),
                              "--batch-size", "2", "--repeats", "3", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["inference_size"] == 64 and report["baseline"]["inference_size"] == 32
    assert report["baseline"]["model"].endswith("small.keras")
    assert len(report["detect_times_vs_baseline"]) == 3
    versus = report["detect_times_vs_baseline"]
    assert min(versus) - 0.001 <= report["detect_time_vs_baseline"] <= max(versus) + 0.001


def _synthetic_run(tmp_path):
    """A run folder whose config.json splits 10 synthetic pairs (3 for validation)."""
    import json

    from keras_defusion.data import synthetic

    synthetic.write_synthetic_folder(tmp_path / "train", count=10, size=72, seed=0)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({
        "data": {"train": str(tmp_path / "train")},
        "training": {"val_fraction": 0.3, "seed": 0, "polarity": "blur-white"}}))
    return run


def test_val_levers_scores_each_lever_on_the_runs_validation_split(tmp_path):
    import json

    from benchmarks import val_levers
    from tests import harness

    run = _synthetic_run(tmp_path)
    model_path = tmp_path / "tiny.keras"
    harness.tiny_model(inference_size=32).save(model_path)
    out = tmp_path / "levers.json"
    val_levers.main(["--run", str(run), "--model", str(model_path), "--sizes", "48", "64",
                     "--out", str(out)])
    report = json.loads(out.read_text())
    levers = report["levers"]
    assert report["validation_pairs"] == 3
    assert {"plain", "flip", "size 48", "guided r=4 eps=0.001", "sharpen k=2"} <= set(levers)
    assert levers["plain"]["delta_mae"] == 0 and levers["plain"]["images"] == 3
    assert levers["flip"]["network_runs"] == 2 and levers["size 48"]["network_runs"] == 2.25
    assert levers["flip"]["mae"] != levers["plain"]["mae"]
    # A multi-scale mean costs the runs of its sizes; MAE is convex, so the
    # mean map's MAE is at most the mean of its maps' MAEs.
    assert levers["sizes 32+48"]["network_runs"] == 3.25
    assert levers["sizes all"]["network_runs"] == 7.25
    assert levers["sizes 32+48"]["mae"] <= (levers["plain"]["mae"] + levers["size 48"]["mae"]) / 2 + 1e-6
    assert levers["sizes 32+48"]["mae"] not in (levers["plain"]["mae"], levers["size 48"]["mae"])
    # Sharpening keeps each pixel on its side of 0.5, and moves MAE.
    assert levers["sharpen k=2"]["f_at_0.5"] == levers["plain"]["f_at_0.5"]
    assert levers["sharpen k=2"]["mae"] != levers["plain"]["mae"]
    assert levers["sharpen k=2"]["log_loss"] != levers["plain"]["log_loss"] > 0
    assert levers["shift b=-1"]["network_runs"] == 1
    assert levers["shift b=-1"]["mae"] != levers["plain"]["mae"]


def test_sharpen_and_guided_filter_keep_maps_in_range():
    import numpy as np

    from benchmarks import val_levers

    rng = np.random.default_rng(0)
    blur_map = rng.uniform(0, 1, (20, 30)).astype(np.float32)
    sharper = val_levers.sharpen(blur_map, 3.0)
    assert np.array_equal(sharper > 0.5, blur_map > 0.5)
    assert np.all(np.abs(sharper - 0.5) >= np.abs(blur_map - 0.5) - 1e-6)
    guide = rng.uniform(0, 1, (20, 30)).astype(np.float32)
    filtered = val_levers.guided_filter(guide, blur_map, 2, 1e-3)
    assert filtered.shape == blur_map.shape and 0 <= filtered.min() and filtered.max() <= 1
    # A map equal to its guide passes through a guided filter with small eps.
    np.testing.assert_allclose(val_levers.guided_filter(guide, guide, 2, 1e-8), guide, atol=1e-3)
    # The log loss: near 0 for the mask itself, ln 2 for a map of 0.5 everywhere.
    mask = (blur_map > 0.5).astype(np.float32)
    assert val_levers.log_loss(mask, mask) < 1e-5
    assert abs(val_levers.log_loss(np.full((10, 15), 0.5, np.float32), mask) - np.log(2)) < 1e-9
    assert val_levers.log_loss(sharper, mask) < val_levers.log_loss(blur_map, mask)


def test_shift_moves_the_threshold_and_keeps_the_order():
    import numpy as np

    from benchmarks import val_levers

    blur_map = np.random.default_rng(1).uniform(0, 1, (40, 50)).astype(np.float32)
    shifted = val_levers.shift(blur_map, -1.0)
    # A bias of -1 moves the 0.5 threshold to sigmoid(1) on the old map.
    threshold = 1 / (1 + np.exp(-1.0))
    clear = np.abs(blur_map - threshold) > 1e-4
    assert np.array_equal((shifted > 0.5)[clear], (blur_map > threshold)[clear])
    order = np.argsort(blur_map, axis=None)
    assert np.all(np.diff(shifted.ravel()[order]) >= 0)
    np.testing.assert_allclose(val_levers.shift(blur_map, 0.0), blur_map, atol=1e-6)


def test_val_compare_gives_paired_differences_with_intervals(tmp_path):
    import json

    from benchmarks import val_compare
    from benchmarks import val_inference_size
    from tests import harness

    run = _synthetic_run(tmp_path)
    first, second = tmp_path / "first.keras", tmp_path / "second.keras"
    harness.tiny_model(inference_size=32, seed=0).save(first)
    harness.tiny_model(inference_size=32, seed=1).save(second)
    out = tmp_path / "compare.json"
    val_compare.main(["--run", str(run), "--models", str(first), str(second), "--size", "32",
                      "--resamples", "200", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["validation_pairs"] == 3 and report["size"] == 32
    pairs, polarity = val_inference_size.validation_pairs(run)
    # The whole-split scores are the ones val_inference_size reports.
    for name, model in (("first", first), ("second", second)):
        expected = val_inference_size.score_sizes(model, pairs, polarity, [32])[32]
        for key in ("max_f", "f_at_0.5", "mae"):
            assert abs(report["metrics"][key][name] - expected[key]) < 1e-9
    # (Untrained, both models' best F is at the lowest threshold: max-F ties.)
    assert report["metrics"]["f_at_0.5"]["difference"] != 0 != report["metrics"]["mae"]["difference"]
    for key, entry in report["metrics"].items():
        assert entry["difference"] == entry["second"] - entry["first"]
        low, high = entry["interval"]
        assert low <= high and low < entry["difference"] + 1e-12 and entry["difference"] < high + 1e-12
    assert 0 <= report["metrics"]["mae"]["photos_better"] <= 3
    # A model against itself: no difference in any resample.
    scores = val_compare.per_image_scores(first, pairs, polarity, 32)
    same = val_compare.compare(scores, scores, resamples=50)
    assert all(entry["difference"] == 0 and entry["interval"] == [0.0, 0.0]
               for entry in same.values())
