"""Tests of keras_defusion.inference.detector and keras_defusion.models.pretrained."""

import json
import shutil

import h5py
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_defusion import DeFusionNet
from keras_defusion import export as export_lib
from keras_defusion.inference import contract
from keras_defusion.inference.detector import ModelLoadError
from keras_defusion.inference.detector import find_saved_model_dir
from keras_defusion.inference.detector import load_detector
from keras_defusion.io import images as image_io
from keras_defusion.models import pretrained
import keras_defusion
from tests import harness

SIZE = 48


@pytest.fixture(scope="module")
def model():
    keras_defusion.set_seed(0)  # its maps' spread (std about 0.05) is measured
    return DeFusionNet(
        "mobile", **harness.tiny_model_kwargs(num_steps=1, inference_size=SIZE)
    )


@pytest.fixture(scope="module")
def detector(model):
    return load_detector(model)


@pytest.fixture(scope="module")
def artefacts(model, tmp_path_factory):
    """The model as a .keras file, a SavedModel (TF-Serving layout), a TFLite file."""
    folder = tmp_path_factory.mktemp("artefacts")
    keras_path = folder / "model.keras"
    model.save(keras_path)
    version_dir = export_lib.export_saved_model(model, folder / "serving", version=3)
    # The input at the inference size: the same resize as the others, so
    # the maps agree to float rounding (the default reduction is tested below).
    tflite_path = export_lib.export_tflite(model, folder / "model.tflite", metadata=False,
                                           input_reduction=1)
    return {
        "keras": keras_path,
        "serving_base": folder / "serving",
        "serving_model": folder / "serving" / export_lib.MODEL_NAME,
        "saved_model": version_dir,
        "tflite": tflite_path,
    }


def photo(height, width, seed=0):
    """A smooth RGB uint8 photo, so resizing is not dominated by noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (max(2, height // 8), max(2, width // 8), 3))
    smooth = tf.image.resize(coarse, (height, width), method="bilinear").numpy()
    noise = rng.normal(0, 10, (height, width, 3))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def manual_map(model, rgb, size):
    """The detector's pipeline written out: resize in, fused map, resize back."""
    resized = tf.image.resize(
        rgb.astype("float32"), (size, size), method="bilinear", antialias=True
    )
    fused = model(tf.clip_by_value(resized, 0, 255)[None])["fused"][0]
    back = tf.image.resize(fused, rgb.shape[:2], method="bilinear")
    return np.clip(back.numpy()[..., 0], 0, 1)


# === One interface for every artefact ===


def test_detect_is_resize_run_resize_back(model, detector):
    rgb = photo(45, 70)
    blur_map = detector.detect(rgb)
    assert blur_map.shape == (45, 70) and blur_map.dtype == np.float32
    assert 0 <= blur_map.min() and blur_map.max() <= 1
    assert detector.image_size == SIZE
    np.testing.assert_allclose(blur_map, manual_map(model, rgb, SIZE), atol=1e-5)


def test_image_size_overrides_the_models(model):
    detector = load_detector(model, image_size=64)
    assert detector.image_size == 64
    rgb = photo(45, 70)
    np.testing.assert_allclose(detector.detect(rgb), manual_map(model, rgb, 64), atol=1e-5)


@pytest.mark.parametrize(
    "kind, atol",
    [
        ("keras", 1e-6),
        ("serving_base", 1e-4),
        ("serving_model", 1e-4),
        ("saved_model", 1e-4),
        ("tflite", 1e-4),
    ],
)
def test_every_artefact_gives_the_same_map(detector, artefacts, kind, atol):
    other = load_detector(artefacts[kind])
    assert other.image_size == SIZE
    for rgb in (photo(45, 70), photo(200, 31, seed=1)):
        reference = detector.detect(rgb)
        harness.assert_map_spread(reference)  # a constant map could not pass
        np.testing.assert_allclose(other.detect(rgb), reference, atol=atol)


def test_tflite_that_reduces_its_input(detector, model, tmp_path):
    """A default TFLite file takes twice the inference size: detect resizes
    photos to that and gets its maps at the inference size, close to the
    Keras model's (two resizes are not one)."""
    path = export_lib.export_tflite(model, tmp_path / "reducing.tflite", metadata=False)
    reducing = load_detector(path)
    assert (reducing.inference_size, reducing.input_size) == (SIZE, 2 * SIZE)
    assert (detector.inference_size, detector.input_size) == (SIZE, SIZE)
    for rgb in (photo(45, 70), photo(200, 31, seed=1)):
        reference = detector.detect(rgb)
        harness.assert_map_spread(reference)
        blur_map = reducing.detect(rgb)
        assert blur_map.shape == reference.shape
        assert np.abs(blur_map - reference).mean() < 0.02


def test_saved_model_layouts_resolve_to_the_highest_version(artefacts, tmp_path):
    assert str(load_detector(artefacts["serving_base"]).source) == str(artefacts["saved_model"])
    model_dir = tmp_path / "serving" / "blur"
    for version in ("2", "10"):
        shutil.copytree(artefacts["saved_model"], model_dir / version)
    (model_dir / "11").mkdir()  # A version TF Serving is still writing: no saved_model.pb.
    assert find_saved_model_dir(tmp_path / "serving") == model_dir / "10"
    assert find_saved_model_dir(model_dir) == model_dir / "10"
    assert find_saved_model_dir(model_dir / "2") == model_dir / "2"
    shutil.copytree(artefacts["saved_model"], tmp_path / "serving" / "other" / "1")
    with pytest.raises(ModelLoadError, match="several SavedModels"):
        find_saved_model_dir(tmp_path / "serving")


def test_full_integer_tflite_is_dequantised(detector, model, tmp_path):
    path = export_lib.export_tflite(
        model, tmp_path / "int8.tflite", mode="int8", metadata=False,
        calibration_images=[photo(60, 60, seed=s) for s in range(4)],
    )
    quantised = load_detector(path)
    rgb = photo(45, 70)
    blur_map = quantised.detect(rgb)
    assert blur_map.shape == (45, 70) and blur_map.dtype == np.float32
    assert 0 <= blur_map.min() and blur_map.max() <= 1
    reference = detector.detect(rgb)
    harness.assert_map_spread(reference)
    assert np.abs(blur_map - reference).mean() < 0.1
    # Measured: mean error 0.53 x the reference's std, correlation 0.76 (a
    # constant map is off by about 0.8 std and does not correlate).
    harness.assert_quantised_close(blur_map, reference, max_error_ratio=0.75, min_correlation=0.6)


def test_all_outputs_of_a_keras_model(model, detector):
    rgb = photo(45, 70)
    maps = detector.detect(rgb, outputs="all")
    assert list(maps) == model.output_names
    for blur_map in maps.values():
        assert blur_map.shape == (45, 70)
    np.testing.assert_allclose(maps["fused"], detector.detect(rgb), atol=1e-6)
    assert list(detector.detect(rgb, outputs=["step1_out2"])) == ["step1_out2"]
    with pytest.raises(ValueError, match="unknown outputs"):
        detector.detect(rgb, outputs=["step9_out1"])


def test_exports_have_the_fused_map_only(artefacts):
    exported = load_detector(artefacts["saved_model"])
    assert exported.output_names == ["fused"]
    with pytest.raises(ValueError, match="fused map only"):
        exported.detect(photo(40, 40), outputs="all")


def test_fused_only_keras_model(model, detector):
    inference = load_detector(model.inference_model(), image_size=SIZE)
    rgb = photo(45, 70)
    np.testing.assert_allclose(inference.detect(rgb), detector.detect(rgb), atol=1e-6)


def test_batch_of_mixed_sizes_matches_one_by_one(detector):
    photos = [photo(45, 70), photo(33, 33, 1), photo(120, 50, 2), photo(SIZE, SIZE, 3)]
    maps = detector.detect_batch(photos, batch_size=3)
    assert [m.shape for m in maps] == [p.shape[:2] for p in photos]
    for rgb, blur_map in zip(photos, maps):
        np.testing.assert_allclose(blur_map, detector.detect(rgb), atol=1e-5)
    all_maps = detector.detect_batch(photos[:2], outputs="all")
    assert all_maps[1]["step1_out1"].shape == (33, 33)


@pytest.mark.parametrize("shape", [(1, 1), (7, 301), (301, 7), (97, 131), (1200, 1600)])
def test_odd_and_large_sizes(detector, shape):
    blur_map = detector.detect(photo(*shape))
    assert blur_map.shape == shape
    assert np.isfinite(blur_map).all()


@pytest.mark.parametrize("shape", [(90, 61), (20, 300), (300, 20), (2, 700)])
def test_strips_resize_bit_for_bit_as_the_whole_photo(shape):
    # Strips of 400 pixels: columns of 4 to 20 (of 1 for the 700-pixel-high photo).
    rgb = photo(*shape)
    np.testing.assert_array_equal(contract.resize_photo_array(rgb, 48, strip_pixels=400),
                                  contract.resize_photos(rgb, 48).numpy())
    small = np.random.default_rng(0).uniform(-0.2, 1.2, (48, 48)).astype(np.float32)
    whole = np.clip(contract.resize_maps(small[..., None], *shape).numpy()[..., 0], 0, 1)
    np.testing.assert_array_equal(contract.resize_map_array(small, *shape, strip_pixels=400), whole)


# === Image modes and array kinds ===


def test_file_modes(detector, tmp_path):
    rgb = photo(37, 53)
    grey = rgb[..., 0]
    cases = {
        "grey.png": (Image.fromarray(grey, "L"), np.repeat(grey[..., None], 3, -1)),
        "rgba.png": (Image.fromarray(np.dstack([rgb, grey]), "RGBA"), rgb),
        "rgb.bmp": (Image.fromarray(rgb), rgb),
    }
    palette = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=32)
    cases["palette.png"] = (palette, np.asarray(palette.convert("RGB")))
    for name, (image, expected_rgb) in cases.items():
        image.save(tmp_path / name)
        expected = detector.detect(expected_rgb)
        np.testing.assert_allclose(detector.detect(tmp_path / name), expected, atol=1e-6)
        np.testing.assert_allclose(detector.detect(str(tmp_path / name)), expected, atol=1e-6)
        np.testing.assert_allclose(detector.detect(image), expected, atol=1e-6)


def test_sixteen_bit_grey(detector, tmp_path):
    grey16 = (photo(37, 53)[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    expected = detector.detect(np.repeat((grey16 // 257).astype(np.uint8)[..., None], 3, -1))
    np.testing.assert_allclose(detector.detect(tmp_path / "deep.png"), expected, atol=1e-5)
    np.testing.assert_allclose(detector.detect(grey16), expected, atol=1e-5)


def test_dark_sixteen_bit_grey_is_not_brightened(detector, tmp_path):
    """A 16-bit image with all values <= 255 is dark: scaled by 255 / 65535."""
    dark16 = photo(37, 53)[..., 0].astype(np.uint16)  # 0..255 on a 0..65535 scale
    assert dark16.max() <= 255 and dark16.max() > 128
    Image.fromarray(dark16).save(tmp_path / "dark.png")
    with Image.open(tmp_path / "dark.png") as image:
        assert image.mode.startswith("I")
        rgb = image_io.to_rgb_array(image)
    assert rgb.max() <= 1  # not stretched to 0..255
    from_file = detector.detect(tmp_path / "dark.png")
    from_pil = detector.detect(Image.open(tmp_path / "dark.png"))
    from_array = detector.detect(dark16)
    np.testing.assert_allclose(from_file, detector.detect(rgb), atol=1e-6)
    np.testing.assert_allclose(from_pil, from_file, atol=1e-6)
    # The array keeps fractions of a level (0..0.99) that the file path rounds
    # to 0 or 1; half a level moves this map by at most 0.0023 (measured).
    np.testing.assert_allclose(from_array, from_file, atol=5e-3)
    # The bug this guards against: stretching by 257 gives a different map.
    stretched = detector.detect(np.repeat(dark16.astype(np.uint8)[..., None], 3, -1))
    assert np.abs(stretched - from_file).max() > 5e-2  # measured: 0.19


def test_exif_rotation_gives_the_upright_size(detector, tmp_path):
    stored = photo(24, 40)  # 40 wide, 24 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display.
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    blur_map = detector.detect(tmp_path / "rotated.jpg")
    assert blur_map.shape == (40, 24)
    upright = np.asarray(Image.open(tmp_path / "rotated.jpg").transpose(Image.ROTATE_270))
    np.testing.assert_allclose(blur_map, detector.detect(upright), atol=1e-6)
    assert detector.detect(Image.open(tmp_path / "rotated.jpg")).shape == (40, 24)


def test_array_kinds(detector):
    rgb = photo(30, 41)
    expected = detector.detect(rgb)
    grey = rgb[..., 1]
    grey_expected = detector.detect(np.repeat(grey[..., None], 3, -1))
    np.testing.assert_allclose(detector.detect(rgb.astype(np.float32)), expected, atol=1e-6)
    np.testing.assert_allclose(detector.detect(rgb.astype(np.float64)), expected, atol=1e-6)
    np.testing.assert_allclose(detector.detect(np.dstack([rgb, grey])), expected, atol=1e-6)
    np.testing.assert_allclose(detector.detect(grey), grey_expected, atol=1e-6)
    np.testing.assert_allclose(detector.detect(grey[..., None]), grey_expected, atol=1e-6)
    np.testing.assert_allclose(
        detector.detect(rgb.astype(np.uint16) * 257), expected, atol=1e-5
    )


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((10, 10, 2), np.uint8), "must be"),
        (np.zeros((0, 5, 3), np.uint8), "no pixels"),
        (np.full((10, 10, 3), np.nan, np.float32), "NaN"),
        (np.full((10, 10, 3), 300.0, np.float32), "0..255"),
        (np.full((10, 10, 3), -1, np.int32), "0..255"),
        (np.ones((10, 10, 3), bool), "numeric"),
        (np.zeros((2, 10, 10, 3), np.uint8), "must be"),
    ],
)
def test_unusable_arrays(detector, array, message):
    with pytest.raises(ValueError, match=message):
        detector.detect(array)


def test_float_array_in_unit_range_warns(detector):
    with pytest.warns(UserWarning, match="0..255"):
        detector.detect(photo(20, 20).astype(np.float32) / 255.0)


# === Bad files ===


def write_bad_files(folder):
    """dict case -> a file (or missing path) that no detector can read."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not an image\n")
    Image.fromarray(photo(64, 64)).save(folder / "whole.jpg", quality=90)
    data = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "whole.jpg").unlink()
    harness.write_png_header(folder / "bomb.png", 20000, 20000)
    return {
        "missing": (folder / "missing.jpg", "no such file"),
        "empty": (folder / "empty.jpg", "empty file"),
        "not an image": (folder / "notes.jpg", "not a readable image"),
        "truncated": (folder / "truncated.jpg", "not a readable image"),
        "decompression bomb": (folder / "bomb.png", "decompression bomb"),
    }


def test_bad_files_raise_an_error_naming_them(detector, tmp_path):
    for case, (path, reason) in write_bad_files(tmp_path).items():
        with pytest.raises(image_io.ImageReadError) as raised:
            detector.detect(path)
        assert str(path) in str(raised.value), case
        assert reason in str(raised.value), case


# === Loading errors ===


def test_unloadable_sources(tmp_path, artefacts):
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "model.txt").write_text("x")
    (tmp_path / "broken.keras").write_text("x")
    (tmp_path / "broken.tflite").write_bytes(b"\0" * 64)
    (tmp_path / "alone").mkdir()
    (tmp_path / "alone" / "model.weights.h5").write_bytes(b"")
    cases = {
        tmp_path / "nothing.keras": "no such file or folder",
        tmp_path / "empty_dir": "holds no SavedModel",
        tmp_path / "model.txt": "unsupported model file",
        tmp_path / "broken.keras": "not a loadable .keras",
        tmp_path / "broken.tflite": "not a loadable TFLite",
        tmp_path / "alone" / "model.weights.h5": "weights alone",
    }
    for source, message in cases.items():
        with pytest.raises(ModelLoadError, match=message) as raised:
            load_detector(source)
        assert str(source) in str(raised.value)
    with pytest.raises(ValueError, match="runs at 48 x 48 only"):
        load_detector(artefacts["tflite"], image_size=64)
    with pytest.raises(ValueError, match="at least 32"):
        load_detector(artefacts["keras"], image_size=16)


# === Pretrained models ===


def test_save_pretrained_writes_float16_weights_and_config(model, detector, tmp_path):
    folder = pretrained.save_pretrained(model, tmp_path / pretrained.DEFAULT_MODEL)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.weights.h5"]
    assert json.loads((folder / "config.json").read_text()) == model.get_config()
    datasets = []
    with h5py.File(folder / "model.weights.h5", "r") as f:
        f.visititems(
            lambda _, item: datasets.append(item.dtype)
            if isinstance(item, h5py.Dataset) else None
        )
    assert datasets and set(datasets) == {np.dtype("float16")}

    restored = pretrained.load_pretrained(pretrained.DEFAULT_MODEL, assets_root=tmp_path)
    assert isinstance(restored, DeFusionNet)
    assert {w.dtype for w in restored.weights} == {"float32"}
    assert restored.defusion_config == model.defusion_config
    rgb = photo(45, 70)
    for source in (restored, folder, folder / "model.weights.h5"):
        other = load_detector(source)
        assert other.image_size == SIZE
        np.testing.assert_allclose(other.detect(rgb), detector.detect(rgb), atol=5e-3)
    assert pretrained.available_models(tmp_path) == [pretrained.DEFAULT_MODEL]


def test_missing_pretrained_model_says_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(pretrained.PretrainedModelMissing) as raised:
        pretrained.load_pretrained(pretrained.DEFAULT_MODEL, assets_root=tmp_path)
    message = str(raised.value)
    assert "reinstall keras-defusion" in message and "--model PATH" in message
    monkeypatch.setattr(pretrained, "default_assets_root", lambda: tmp_path)
    for source in (None, pretrained.DEFAULT_MODEL):
        with pytest.raises(pretrained.PretrainedModelMissing, match="--model PATH"):
            load_detector(source)
    with pytest.raises(ValueError, match="unknown pretrained model"):
        pretrained.load_pretrained("no-such-model")
    assert pretrained.available_models(tmp_path) == []
