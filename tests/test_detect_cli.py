"""Tests of `keras-defusion detect` (keras_defusion.cli.detect) and visualize."""

import json
import pathlib
import shutil

import numpy as np
import pytest
from PIL import Image

from keras_defusion import DeFusionNet
from keras_defusion import cli
from keras_defusion.inference import batch_detect
from keras_defusion.io import photo_files
from keras_defusion.io import images as image_io
from keras_defusion.evaluation import metrics
from keras_defusion.models import pretrained
from keras_defusion.io import visualize
from keras_defusion.inference.detector import load_detector
from tests import harness


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    model = DeFusionNet("mobile", **harness.tiny_model_kwargs(num_steps=1, inference_size=32))
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def detector(model_path):
    return load_detector(model_path)


def save_photo(path, height, width, seed=0, mode="RGB", **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    image.convert(mode).save(path, **options)
    return path


def run_detect(capsys, *args):
    status = cli.main(["detect", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def image_size(path):
    with Image.open(path) as image:
        return image.size, image.mode


# === End to end ===


def test_folder_with_one_bad_file(model_path, tmp_path, capsys):
    photos = tmp_path / "photos"
    save_photo(photos / "beach.jpg", 45, 70)
    save_photo(photos / "cat.png", 61, 33, seed=1, mode="RGBA")
    (photos / "broken.jpg").write_text("not a photo\n")
    (photos / "readme.txt").write_text("ignored\n")
    out = tmp_path / "out"
    status, stdout, stderr = run_detect(
        capsys, photos, "--out", out, "--model", model_path, "--threshold", "0.5"
    )
    assert status == 1
    assert str(photos / "broken.jpg") in stderr and "not a readable image" in stderr
    assert "2 photo(s) done" in stdout and "1 failed" in stdout
    assert "s per photo" in stdout and "ignored 1 file" in stdout
    for stem, size in (("beach", (70, 45)), ("cat", (33, 61))):
        assert image_size(out / "maps" / f"{stem}.png") == (size, "L")
        assert image_size(out / "masks" / f"{stem}.png") == (size, "L")
        assert image_size(out / "overlays" / f"{stem}.jpg") == (size, "RGB")
        panel_size, _ = image_size(out / "panels" / f"{stem}.jpg")
        assert panel_size == (3 * size[0] + 2 * 8, size[1])
        mask = np.asarray(Image.open(out / "masks" / f"{stem}.png"))
        assert set(np.unique(mask)) <= {0, 255}
    assert not list(out.rglob("broken*"))
    assert not list(out.rglob(".tmp-*"))  # atomic writes leave no temporaries


def test_maps_are_the_detectors_maps(model_path, detector, tmp_path, capsys):
    path = save_photo(tmp_path / "in" / "shot.png", 40, 52)
    status, _, _ = run_detect(capsys, path, "--out", tmp_path / "out", "--model", model_path)
    assert status == 0
    written = image_io.load_gray_float(tmp_path / "out" / "maps" / "shot.png")
    np.testing.assert_allclose(written, detector.detect(path), atol=0.5 / 255 + 1e-6)


def test_maps_feed_evaluate(model_path, detector, tmp_path, capsys):
    gt = tmp_path / "gt"
    gt.mkdir()
    photos, masks = [], []
    for index, (height, width) in enumerate(((30, 40), (25, 33))):
        photos.append(save_photo(tmp_path / "photos" / f"im{index}.jpg", height, width, seed=index))
        mask = np.zeros((height, width), np.uint8)
        mask[:, : width // 2] = 255
        Image.fromarray(mask).save(gt / f"im{index}.png")
        masks.append(mask == 255)
    out = tmp_path / "out"
    assert run_detect(capsys, tmp_path / "photos", "--out", out, "--model", model_path)[0] == 0
    status = cli.main([
        "evaluate", "--pred", str(out / "maps"), "--gt", str(gt),
        "--json", str(tmp_path / "scores.json"),
    ])
    assert status == 0 and (tmp_path / "scores.json").is_file()
    scores = json.loads((tmp_path / "scores.json").read_text())["methods"]["maps"]
    assert scores["images"] == 2
    # Like with like: the written 8-bit maps, scored directly. Each is the
    # detector's map within one 8-bit step: another batching may move a pixel
    # across a rounding step.
    written = metrics.ScoreAccumulator()
    exact = metrics.ScoreAccumulator()
    for index, (photo, mask) in enumerate(zip(photos, masks)):
        saved = image_io.load_gray_float(out / "maps" / f"im{index}.png")
        blur_map = detector.detect(photo)
        assert np.abs(saved - blur_map).max() <= 1 / 255 + 1e-6
        written.add(saved, mask)
        exact.add(blur_map, mask)
    expected = written.result()
    for key in ("mae", "max_f", "f_at_0.5", "adaptive_f", "iou_at_0.5"):
        assert scores[key] == pytest.approx(expected[key], abs=1e-6), key
    assert scores["mae"] == pytest.approx(exact.result()["mae"], abs=1 / 255 + 1e-6)


def test_existing_outputs_are_kept_without_overwrite(model_path, tmp_path, capsys):
    path = save_photo(tmp_path / "in" / "shot.jpg", 40, 52)
    out = tmp_path / "out"
    assert run_detect(capsys, path, "--out", out, "--model", model_path)[0] == 0
    map_path = out / "maps" / "shot.png"
    image_io.save_png(map_path, np.zeros((3, 3), np.uint8))  # a marker

    status, stdout, stderr = run_detect(capsys, path, "--out", out, "--model", model_path)
    assert status == 0
    assert "skipped" in stderr and str(path) in stderr and "1 skipped" in stdout
    assert image_size(map_path)[0] == (3, 3)

    status, _, _ = run_detect(capsys, path, "--out", out, "--model", model_path, "--overwrite")
    assert status == 0 and image_size(map_path)[0] == (52, 40)


def test_outputs_made_otherwise_are_made_again(model_path, tmp_path, capsys):
    """A different photo under a used name, or another threshold or model:
    every output of that name is made again, never mixed with old ones."""
    path = save_photo(tmp_path / "in" / "shot.jpg", 40, 52)
    out = tmp_path / "out"
    assert run_detect(capsys, path, "--out", out, "--model", model_path)[0] == 0
    map_path = out / "maps" / "shot.png"
    image_io.save_png(map_path, np.zeros((3, 3), np.uint8))  # a marker

    # Masks asked for: the overlays depend on the threshold, so all is remade.
    status, stdout, stderr = run_detect(
        capsys, path, "--out", out, "--model", model_path, "--threshold", "0.3")
    assert status == 0 and (out / "masks" / "shot.png").is_file()
    assert "made with a different threshold" in stderr and "1 of them made again" in stdout
    assert image_size(map_path)[0] == (52, 40)

    # Another photo with the same name.
    image_io.save_png(map_path, np.zeros((3, 3), np.uint8))
    save_photo(path, 60, 30, seed=7)
    status, _, stderr = run_detect(
        capsys, path, "--out", out, "--model", model_path, "--threshold", "0.3")
    assert status == 0 and "made with a different sha256" in stderr
    assert image_size(map_path)[0] == (30, 60)
    for kind in ("overlays", "panels"):
        assert image_size(out / kind / "shot.jpg")[0][1] == 60  # (width, height)
    assert image_size(out / "masks" / "shot.png")[0] == (30, 60)

    # Another model file.
    other = tmp_path / "other.keras"
    shutil.copyfile(model_path, other)
    image_io.save_png(map_path, np.zeros((3, 3), np.uint8))
    status, _, stderr = run_detect(
        capsys, path, "--out", out, "--model", other, "--threshold", "0.3")
    assert status == 0 and "made with a different model" in stderr
    assert image_size(map_path)[0] == (30, 60)

    # The same again: skipped.
    status, stdout, _ = run_detect(
        capsys, path, "--out", out, "--model", other, "--threshold", "0.3")
    assert status == 0 and "1 skipped" in stdout


def test_recursive_search_skips_earlier_outputs(model_path, tmp_path, capsys):
    photos = tmp_path / "photos"
    for index in range(3):
        save_photo(photos / f"p{index}.jpg", 40, 36, seed=index)
    first = photos / "results"  # an earlier run's outputs inside the photo folder
    assert run_detect(capsys, photos, "--out", first, "--model", model_path)[0] == 0
    status, stdout, _ = run_detect(
        capsys, photos, "-r", "--out", tmp_path / "again", "--model", model_path)
    assert status == 0 and stdout.startswith("3 input(s): 3 photo(s) done")
    assert sorted(p.name for p in (tmp_path / "again" / "maps").iterdir()) == [
        "p0.png", "p1.png", "p2.png"]
    # Named as input, an output folder is refused with a reason.
    status, _, stderr = run_detect(capsys, first, "--out", tmp_path / "x", "--model", model_path)
    assert status == 1 and "holds the outputs of an earlier" in stderr


def test_every_bad_input_is_named_and_the_rest_processed(model_path, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.png").write_text("not an image\n")
    whole = save_photo(tmp_path / "whole.jpg", 64, 64, quality=90).read_bytes()
    (bad / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    harness.write_png_header(bad / "bomb.png", 20000, 20000)
    good = save_photo(tmp_path / "good" / "fine.jpg", 30, 40)
    cases = {
        bad / "missing.jpg": "no such file",
        bad / "empty.jpg": "empty file",
        bad / "notes.png": "not a readable image",
        bad / "truncated.jpg": "not a readable image",
        bad / "bomb.png": "decompression bomb",
        tmp_path / "nowhere" / "*.jpg": "no file matches",
    }
    out = tmp_path / "out"
    status, stdout, stderr = run_detect(
        capsys, *cases, good, "--out", out, "--model", model_path, "--batch-size", "2"
    )
    assert status == 1
    for path, reason in cases.items():
        lines = [line for line in stderr.splitlines() if str(path) in line]
        assert lines and reason in lines[0], (path, stderr)
    assert "6 failed" in stdout and "1 photo(s) done" in stdout
    assert (out / "maps" / "fine.png").is_file()
    assert sorted(p.name for p in (out / "maps").iterdir()) == ["fine.png"]


def test_same_stem_from_two_folders(model_path, tmp_path, capsys):
    save_photo(tmp_path / "a" / "img.jpg", 30, 40)
    save_photo(tmp_path / "b" / "img.png", 20, 25, seed=1)
    save_photo(tmp_path / "b" / "other.png", 20, 25, seed=2)
    out = tmp_path / "out"
    status, _, _ = run_detect(
        capsys, tmp_path / "a", tmp_path / "b", "--out", out, "--model", model_path,
        "--format", "png",
    )
    assert status == 0
    assert sorted(p.name for p in (out / "maps").iterdir()) == [
        "img__a.png", "img__b.png", "other.png"
    ]
    assert image_size(out / "maps" / "img__a.png")[0] == (40, 30)
    assert image_size(out / "maps" / "img__b.png")[0] == (25, 20)
    assert (out / "overlays" / "img__b.png").is_file()


def test_globs_recursion_and_exif(model_path, tmp_path, capsys):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: displayed rotated 90 degrees.
    save_photo(tmp_path / "shots" / "turned.jpg", 24, 40, exif=exif)
    save_photo(tmp_path / "shots" / "deep" / "nested.png", 20, 20)
    out = tmp_path / "out"
    status, _, _ = run_detect(
        capsys, tmp_path / "shots" / "*.jpg", "--out", out, "--model", model_path
    )
    assert status == 0
    assert image_size(out / "maps" / "turned.png")[0] == (24, 40)  # upright: 24 wide
    assert not (out / "maps" / "nested.png").exists()

    status, _, _ = run_detect(
        capsys, tmp_path / "shots", "-r", "--out", out, "--model", model_path
    )
    assert status == 0 and (out / "maps" / "nested.png").is_file()


def test_folder_without_photos_and_output_folder_excluded(model_path, tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    status, _, stderr = run_detect(
        capsys, tmp_path / "docs", "--out", tmp_path / "out", "--model", model_path
    )
    assert status == 1 and "no photos in folder" in stderr

    save_photo(tmp_path / "root" / "p.png", 20, 20)
    out = tmp_path / "root" / "out"
    for _ in range(2):  # the second run must not read the first run's maps
        status, stdout, _ = run_detect(
            capsys, tmp_path / "root", "-r", "--out", out, "--model", model_path
        )
        assert status == 0
    assert "1 input(s)" in stdout


def test_missing_default_model_stops_with_a_clear_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pretrained, "default_assets_root", lambda: tmp_path / "assets")
    photo = save_photo(tmp_path / "p.jpg", 20, 20)
    status, _, stderr = run_detect(capsys, photo, "--out", tmp_path / "out")
    assert status == 2
    assert "is not installed" in stderr and "--model PATH" in stderr
    assert not (tmp_path / "out").exists()


def test_bad_arguments(model_path, tmp_path, capsys):
    photo = save_photo(tmp_path / "p.jpg", 20, 20)
    out = tmp_path / "out"
    status, _, stderr = run_detect(capsys, photo, "--out", out, "--model", tmp_path / "none.keras")
    assert status == 2 and str(tmp_path / "none.keras") in stderr
    for option, value in (("--threshold", "1.5"), ("--batch-size", "0"), ("--inference-size", "8")):
        status, _, stderr = run_detect(
            capsys, photo, "--out", out, "--model", model_path, option, value
        )
        assert status == 2 and option in stderr


def test_inference_size_option(model_path, tmp_path, capsys):
    photo = save_photo(tmp_path / "p.jpg", 20, 30)
    for option in ("--inference-size", "--image-size"):  # the old name still works
        status, _, stderr = run_detect(
            capsys, photo, "--out", tmp_path / option, "--model", model_path, option, "64"
        )
        assert status == 0 and "64 x 64" in stderr


# === Library pieces ===


def test_output_names_rule():
    photos = [
        pathlib.Path("a/img.jpg"),
        pathlib.Path("b/IMG.png"),
        pathlib.Path("a/img.png"),
        pathlib.Path("c/img__a.jpg"),
        pathlib.Path("c/solo.jpg"),
    ]
    assert photo_files.output_names(photos) == [
        "img__a", "IMG__b", "img__a__2", "img__a__3", "solo"
    ]


def test_detect_paths_returns_a_summary(detector, tmp_path):
    save_photo(tmp_path / "in" / "x.png", 20, 20)
    notes = []
    summary = batch_detect.detect_paths(
        [tmp_path / "in", tmp_path / "gone.jpg"], tmp_path / "out", detector,
        progress=False, report=notes.append,
    )
    assert [name for _, name in summary.written] == ["x"]
    assert [path for path, _ in summary.failures] == [str(tmp_path / "gone.jpg")]
    assert not summary.ok and summary.seconds_per_photo > 0
    assert any("gone.jpg" in note for note in notes)
    assert "1 failed" in summary.format()


# === Pictures ===


def test_visualize_pictures():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    blur_map = np.zeros((30, 40), np.float32)
    blur_map[:, 20:] = 1.0

    tinted = visualize.overlay(photo, blur_map, alpha=0.5)
    np.testing.assert_array_equal(tinted[:, :20], photo[:, :20])
    expected = photo[:, 20:] * 0.5 + np.array([255, 0, 0]) * 0.5
    np.testing.assert_allclose(tinted[:, 20:], expected, atol=1.0)

    mask = visualize.binary_mask(blur_map * 0.6, threshold=0.5)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    assert (mask[:, 20:] == 255).all()

    colours = visualize.colorize(np.linspace(0, 1, 5)[None])
    assert colours.shape == (1, 5, 3)
    np.testing.assert_array_equal(colours[0, 0], [0, 0, 4])
    np.testing.assert_array_equal(colours[0, -1], [252, 255, 164])
    grey = visualize.colorize(blur_map, cmap="gray")
    assert grey[0, 0, 0] == 0 and grey[0, -1, 0] == 255

    panel = visualize.side_by_side(photo, blur_map, gap=4)
    assert panel.shape == (30, 3 * 40 + 8, 3)
    np.testing.assert_array_equal(panel[:, :40], photo)
    big = visualize.side_by_side(
        np.zeros((2000, 1000, 3), np.uint8), np.zeros((2000, 1000)), max_side=500
    )
    assert big.shape == (500, 3 * 250 + 16, 3)

    with pytest.raises(ValueError, match="differs"):
        visualize.overlay(photo, blur_map[:10])
    with pytest.raises(ValueError, match="threshold"):
        visualize.binary_mask(blur_map, 2.0)


def test_ctrl_c_finishes_what_was_started_and_reports(model_path, tmp_path):
    from keras_defusion.inference.detector import load_detector

    class StopsOnSecondBatch:
        def __init__(self, detector):
            self.detector, self.calls = detector, 0

        def __getattr__(self, name):
            return getattr(self.detector, name)

        def run_prepared(self, batch, outputs=None):
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt
            return self.detector.run_prepared(batch, outputs)

    photos = [save_photo(tmp_path / "in" / f"p{i}.jpg", 30, 34, seed=i) for i in range(5)]
    out = tmp_path / "out"
    summary = batch_detect.detect_paths(photos, out, StopsOnSecondBatch(load_detector(model_path)),
                                      batch_size=2, progress=False, report=lambda m: None)
    assert summary.interrupted and [name for _, name in summary.written] == ["p0", "p1"]
    assert "interrupted" in summary.format()
    assert sorted(p.name for p in (out / "maps").iterdir()) == ["p0.png", "p1.png"]
    assert not list(out.rglob(".tmp-*"))
    # Running again finishes the rest and skips what was done.
    again = batch_detect.detect_paths(photos, out, load_detector(model_path), batch_size=2,
                                    progress=False, report=lambda m: None)
    assert len(again.skipped) == 2 and len(again.written) == 3 and not again.interrupted


# === Memory near the pixel limit ===


def test_strips_give_the_same_pictures_as_whole_photos(monkeypatch):
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (70, 45, 3), dtype=np.uint8)
    blur_map = rng.uniform(-0.1, 1.1, (70, 45)).astype(np.float32)
    whole = visualize.overlay(photo, blur_map), visualize.overlay(photo, blur_map, threshold=0.4)
    monkeypatch.setattr(visualize, "STRIP_PIXELS", 300)  # strips of 6 rows
    strips = visualize.overlay(photo, blur_map), visualize.overlay(photo, blur_map, threshold=0.4)
    for a, b in zip(whole, strips):
        np.testing.assert_array_equal(a, b)


LARGE_PHOTO_PROBE = """
import resource, sys
from keras_defusion.inference.batch_detect import detect_paths
from keras_defusion.inference.detector import load_detector
model, small, large, out = sys.argv[1:]
detector = load_detector(model)
detect_paths([small], out, detector, progress=False)  # TensorFlow's own warm-up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
summary = detect_paths([large], out, detector, progress=False)
assert len(summary.written) == 1, summary.format()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_a_large_photo_costs_a_few_bytes_per_pixel(model_path, tmp_path):
    # 20 MP compress to 80 KB. Whole-photo float copies cost 46 bytes per
    # pixel; the photo, its map and its overlay need 8, and the decoder's
    # buffers as much again.
    import subprocess
    import sys

    height, width = 5000, 4000
    stripes = np.zeros((height, width, 3), np.uint8)
    stripes[:, : width // 2] = 180
    stripes[::5] = 30
    Image.fromarray(stripes).save(tmp_path / "large.png", compress_level=9)
    del stripes
    save_photo(tmp_path / "small.png", 40, 50)
    result = subprocess.run(
        [sys.executable, "-c", LARGE_PHOTO_PROBE, str(model_path), str(tmp_path / "small.png"),
         str(tmp_path / "large.png"), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    rise = int(result.stdout.split()[-1])
    assert rise < 24 * height * width, f"{rise / (height * width):.1f} bytes per pixel"


def test_colour_maps_are_matplotlibs_colours():
    import matplotlib

    edges = np.array([0, 1 / 256, 0.00390625, 0.5, 255 / 256, 1 - 1e-7, 1.0], np.float32)
    values = np.concatenate([edges, np.random.default_rng(0).random(5000, np.float32)])[None]
    expected = matplotlib.colormaps["inferno"](values)[..., :3] * 255.0
    np.testing.assert_array_equal(visualize.colorize(values),
                                  np.clip(expected + 0.5, 0, 255).astype(np.uint8))
