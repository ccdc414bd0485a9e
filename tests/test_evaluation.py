"""Tests of keras_defusion.evaluation.scoring: folders, detector path, JSON, plots, errors."""

import json

import numpy as np
import pytest
from PIL import Image

from keras_defusion import cli
from keras_defusion import evaluation
from keras_defusion.cli import evaluate as evaluate_cli
from keras_defusion.evaluation import metrics
from keras_defusion.inference import detector as detector_module
from keras_defusion.models import pretrained


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path, format="PNG")


@pytest.fixture
def dataset(tmp_path):
    """A split folder (gt/, images/) and two methods' map folders."""
    rng = np.random.default_rng(0)
    split = tmp_path / "split"
    masks, maps_a, maps_b = {}, {}, {}
    for index in range(4):
        stem = f"img{index}"
        shape = (24 + 4 * index, 32)
        gt = (rng.random(shape) < 0.6).astype(np.uint8) * 255
        _save(split / "gt" / f"{stem}.png", gt)
        _save(split / "images" / f"{stem}.jpg", rng.integers(0, 256, shape + (3,)))
        a = np.clip(gt * 0.6 + rng.integers(0, 100, shape), 0, 255).astype(np.uint8)
        b = rng.integers(0, 256, shape).astype(np.uint8)
        if index == 1:
            a_file = tmp_path / "method_a" / f"{stem}.PNG"  # upper-case extension
        else:
            a_file = tmp_path / "method_a" / f"{stem}.png"
        if index == 2:  # half size: must be resized, not refused
            a = np.asarray(Image.fromarray(a).resize((16, shape[0] // 2), Image.BILINEAR))
        _save(a_file, a)
        _save(tmp_path / "method_b" / f"{stem}.png", b)
        masks[stem], maps_a[stem], maps_b[stem] = gt, a, b
    _save(tmp_path / "method_a" / "extra_not_in_gt.png", np.zeros((4, 4)))
    return {"root": tmp_path, "split": split, "masks": masks, "a": maps_a, "b": maps_b}


def _library_scores(masks, maps, flip=False):
    accumulator = metrics.ScoreAccumulator()
    for stem in sorted(masks):
        prediction = maps[stem].astype(np.float32) / 255.0
        if flip:
            prediction = 1.0 - prediction
        accumulator.add(prediction, masks[stem] / 255.0, name=stem)
    return accumulator.result()


def _run_cli(argv):
    return evaluate_cli.main([str(a) for a in argv])


def test_cli_json_matches_library(dataset, capsys):
    root = dataset["root"]
    out = root / "out" / "scores.json"
    status = _run_cli([
        "--gt", dataset["split"], "--pred", root / "method_a", "--pred", f"rand={root / 'method_b'}",
        "--json", out, "--plots", root / "plots",
    ])
    assert status == 0
    report = json.loads(out.read_text())
    assert list(report["methods"]) == ["method_a", "rand"]
    for name, maps in (("method_a", dataset["a"]), ("rand", dataset["b"])):
        expected = _library_scores(dataset["masks"], maps)
        entry = report["methods"][name]
        assert entry["images"] == 4
        for key in ("mae", "max_f", "max_f_threshold", "f_at_0.5", "adaptive_f", "iou_at_0.5"):
            assert entry[key] == pytest.approx(expected[key], abs=1e-12), key
        for key in ("thresholds", "precision", "recall", "f_measure"):
            np.testing.assert_allclose(entry["curves"][key], expected[key], atol=1e-12)
        assert entry["protocol"]["beta2"] == 0.3
        assert entry["protocol"]["images"] == 4
        assert "precision 0" in entry["protocol"]["no_predicted_positives"]
        assert set(entry["per_image"]) == set(dataset["masks"])
    assert report["methods"]["method_a"]["max_f"] > report["methods"]["rand"]["max_f"]
    for plot in (evaluation.PR_PLOT_NAME, evaluation.F_PLOT_NAME):
        with Image.open(root / "plots" / plot) as image:
            assert image.format == "PNG" and image.width > 100
    assert "method_a" in capsys.readouterr().out


def test_gt_folder_of_masks_directly_and_pred_polarity(dataset):
    root = dataset["root"]
    flipped = root / "flipped"
    for stem, a in dataset["b"].items():
        _save(flipped / f"{stem}.png", 255 - a)
    direct = evaluation.evaluate_folder(flipped, dataset["split"] / "gt", pred_polarity="sharp-white")
    expected = _library_scores(dataset["masks"], dataset["b"])
    assert direct["max_f"] == pytest.approx(expected["max_f"], abs=1e-12)
    np.testing.assert_allclose(direct["curves"]["precision"], expected["precision"], atol=1e-12)
    assert direct["protocol"]["pred_polarity"] == "sharp-white"


def test_gt_polarity_sharp_white(dataset):
    root = dataset["root"]
    inverted = root / "inverted_gt"
    for stem, gt in dataset["masks"].items():
        _save(inverted / f"{stem}.png", 255 - gt)
    normal = evaluation.evaluate_folder(root / "method_b", dataset["split"])
    flipped = evaluation.evaluate_folder(root / "method_b", inverted, gt_polarity="sharp-white")
    assert flipped["max_f"] == pytest.approx(normal["max_f"])


def test_missing_predictions_are_all_named_before_scoring(dataset, capsys):
    root = dataset["root"]
    (root / "method_b" / "img1.png").unlink()
    (root / "method_b" / "img3.png").unlink()
    out = root / "scores.json"
    status = _run_cli(["--gt", dataset["split"], "--pred", root / "method_b", "--json", out])
    assert status == 2
    error = capsys.readouterr().err
    assert "img1.png" in error and "img3.png" in error and "2 of 4" in error
    assert not out.exists()


def test_unreadable_prediction_is_named(dataset):
    root = dataset["root"]
    bad = root / "method_b" / "img2.png"
    bad.write_bytes(b"not a png at all")
    (root / "method_b" / "img0.png").write_bytes(b"")
    with pytest.raises(evaluation.EvaluationError) as info:
        evaluation.evaluate_folder(root / "method_b", dataset["split"])
    assert "img2.png" in str(info.value) and "img0.png" in str(info.value)


def test_unreadable_mask_is_named(dataset):
    (dataset["split"] / "gt" / "img3.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(evaluation.EvaluationError, match="img3.png"):
        evaluation.evaluate_folder(dataset["root"] / "method_b", dataset["split"])


def test_bad_polarity(dataset, capsys):
    with pytest.raises(ValueError, match="polarity"):
        evaluation.evaluate_folder(dataset["root"] / "method_b", dataset["split"], pred_polarity="white")
    with pytest.raises(SystemExit):
        _run_cli(["--gt", dataset["split"], "--pred", dataset["root"] / "method_b",
                  "--gt-polarity", "white", "--json", dataset["root"] / "x.json"])
    assert "white" in capsys.readouterr().err


def test_usage_errors(dataset, capsys):
    root = dataset["root"]
    assert _run_cli(["--gt", root / "nowhere", "--pred", root / "method_b", "--json", root / "x.json"]) == 2
    assert "nowhere" in capsys.readouterr().err
    status = _run_cli(["--gt", dataset["split"], "--pred", root / "method_b",
                       "--pred", f"method_b={root / 'method_a'}", "--json", root / "x.json"])
    assert status == 2 and "method_b" in capsys.readouterr().err
    status = _run_cli(["--gt", dataset["split"], "--pred", root / "method_b", "--outputs", "all",
                       "--json", root / "x.json"])
    assert status == 2
    assert not (root / "x.json").exists()


def test_duplicate_stems_in_predictions(dataset):
    root = dataset["root"]
    _save(root / "method_b" / "img0.jpg", np.zeros((5, 5)))
    with pytest.raises(evaluation.EvaluationError, match="img0"):
        evaluation.evaluate_folder(root / "method_b", dataset["split"])


class FakeDetector:
    """Returns a map made from the stored masks, looked up by photo size."""

    def __init__(self, masks, fail_on=None):
        self.by_shape = {m.shape: m for m in masks.values()}
        self.calls = []
        self.fail_on = fail_on

    def detect(self, rgb, outputs=None):
        assert rgb.dtype == np.uint8 and rgb.ndim == 3
        self.calls.append(outputs)
        if self.fail_on == rgb.shape[:2]:
            raise RuntimeError("boom")
        perfect = self.by_shape[rgb.shape[:2]].astype(np.float32) / 255.0
        if outputs == "all":
            half = perfect[::2, ::2]  # another size: resized by the evaluator
            return {"fused": perfect, "step1_out1": 0.5 * half + 0.25}
        return perfect


def test_evaluate_detector_single_and_all_outputs(dataset):
    detector = FakeDetector(dataset["masks"])
    images = dataset["split"] / "images"
    single = evaluation.evaluate_detector(detector, images, dataset["split"], name="fake")
    assert list(single) == ["fake"]
    assert single["fake"]["max_f"] == pytest.approx(1.0)
    assert single["fake"]["mae"] == pytest.approx(0.0)

    every = evaluation.evaluate_detector(detector, images, dataset["split"], outputs="all")
    assert list(every) == ["fused", "step1_out1"]
    assert every["fused"]["f_at_0.5"] == pytest.approx(1.0)
    assert every["step1_out1"]["images"] == 4
    assert every["step1_out1"]["max_f"] < 1.0
    assert detector.calls.count("all") == 4


def test_evaluate_detector_errors(dataset):
    images = dataset["split"] / "images"
    (images / "img1.jpg").unlink()
    with pytest.raises(evaluation.EvaluationError, match="img1.png"):
        evaluation.evaluate_detector(FakeDetector(dataset["masks"]), images, dataset["split"])
    _save(images / "img1.jpg", np.zeros((28, 32, 3)))
    failing = FakeDetector(dataset["masks"], fail_on=(32, 32))  # img2
    with pytest.raises(evaluation.EvaluationError, match="img2.jpg.*boom"):
        evaluation.evaluate_detector(failing, images, dataset["split"])


def test_parse_pred_spec(tmp_path):
    folder = tmp_path / "maps"
    folder.mkdir()
    assert evaluate_cli.parse_pred_spec(str(folder)) == ("maps", str(folder))
    assert evaluate_cli.parse_pred_spec(f"mine={folder}") == ("mine", str(folder))
    odd = tmp_path / "a=b"
    odd.mkdir()
    assert evaluate_cli.parse_pred_spec(str(odd)) == ("a=b", str(odd))


def test_json_is_written_atomically(tmp_path):
    target = tmp_path / "r.json"
    evaluation.write_report(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(ValueError):
        evaluation.write_report(target, {"a": float("nan")})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.cuhk
def test_cuhk_ground_truth_against_itself(cuhk_dir):
    result = evaluation.evaluate_folder(cuhk_dir / "test" / "gt", cuhk_dir / "test", name="gt")
    assert result["images"] == 100
    assert result["max_f"] == pytest.approx(1.0)
    assert result["mae"] == pytest.approx(0.0)
    assert result["iou_at_0.5"] == pytest.approx(1.0)


def test_cli_model_path_with_fake_loader(dataset, monkeypatch):
    loaded = []

    def fake_load_detector(path):
        loaded.append(path)
        return FakeDetector(dataset["masks"])

    monkeypatch.setattr(detector_module, "load_detector", fake_load_detector)
    out = dataset["root"] / "model.json"
    # --images defaults to the images/ folder beside gt/.
    status = _run_cli(["--gt", dataset["split"], "--model", "some/model.keras", "--outputs", "all",
                       "--json", out])
    assert status == 0 and loaded == ["some/model.keras"]
    report = json.loads(out.read_text())
    assert list(report["methods"]) == ["fused", "step1_out1"]
    assert report["model"] == "some/model.keras"
    assert report["methods"]["fused"]["max_f"] == pytest.approx(1.0)


def test_keras_defusion_cli_dispatches_evaluate(dataset):
    out = dataset["root"] / "via_cli.json"
    status = cli.main(["evaluate", "--gt", str(dataset["split"]), "--pred",
                       str(dataset["root"] / "method_a"), "--json", str(out)])
    assert status == 0 and json.loads(out.read_text())["methods"]["method_a"]["images"] == 4


@pytest.mark.parametrize("option", ["--json", "--plots"])
def test_unwritable_outputs_are_an_error_not_a_traceback(dataset, capsys, option):
    root = dataset["root"]
    blocker = root / "a_file"
    blocker.write_text("x")  # a file where a folder is needed
    paths = {"--json": root / "scores.json", "--plots": root / "plots"}
    paths[option] = blocker / "inside"
    status = _run_cli([
        "--gt", dataset["split"], "--pred", root / "method_a",
        "--json", paths["--json"], "--plots", paths["--plots"],
    ])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error:") and str(blocker) in err
    assert not (blocker / "inside").exists()


def test_model_method_names(tmp_path):
    version_dir = tmp_path / "serving" / "defusionnet" / "1"
    version_dir.mkdir(parents=True)
    (version_dir / "saved_model.pb").write_bytes(b"")
    shipped = tmp_path / "my-model"
    shipped.mkdir()
    (shipped / pretrained.WEIGHTS_FILE).write_bytes(b"")
    (tmp_path / "run7.keras").write_bytes(b"")
    name = evaluate_cli.model_method_name
    for source in (version_dir, version_dir.parent, tmp_path / "serving"):
        assert name(source) == "defusionnet", source
    assert name(str(version_dir) + "/") == "defusionnet"
    assert name(shipped) == "my-model"
    assert name(shipped / pretrained.WEIGHTS_FILE) == "my-model"
    assert name(tmp_path / "run7.keras") == "run7"
    assert name(pretrained.DEFAULT_MODEL) == pretrained.DEFAULT_MODEL
    assert name("some/model.keras") == "model"


def test_cli_saved_model_version_dir_is_named_after_the_model(dataset, monkeypatch):
    version_dir = dataset["root"] / "serving" / "blur" / "1"
    version_dir.mkdir(parents=True)
    (version_dir / "saved_model.pb").write_bytes(b"")
    monkeypatch.setattr(
        detector_module, "load_detector", lambda path: FakeDetector(dataset["masks"])
    )
    out = dataset["root"] / "model.json"
    status = _run_cli(["--gt", dataset["split"], "--model", version_dir, "--json", out])
    assert status == 0
    assert list(json.loads(out.read_text())["methods"]) == ["blur"]
