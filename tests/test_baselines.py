"""Tests of the classical baselines (LBP sharpness, HiFST-like)."""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from keras_defusion.evaluation import baselines
from keras_defusion.evaluation import metrics
from keras_defusion.evaluation.baselines import hifst
from keras_defusion.evaluation.baselines import lbp


@pytest.fixture(scope="module")
def half_blurred():
    """skimage's camera with its left half Gaussian-blurred; gt 1 = blurred."""
    data = pytest.importorskip("skimage.data")
    camera = data.camera().astype(np.float64) / 255.0
    camera = camera[::2, ::2]  # 256 x 256 keeps the test quick
    blurred = ndimage.gaussian_filter(camera, 3.0)
    image = camera.copy()
    image[:, :128] = blurred[:, :128]
    gt = np.zeros(image.shape, dtype=np.float32)
    gt[:, :128] = 1.0
    rgb = np.repeat(np.round(image * 255).astype(np.uint8)[..., None], 3, axis=-1)
    return rgb, gt


@pytest.mark.parametrize("method", baselines.METHODS)
def test_baseline_beats_chance_on_half_blurred_image(method, half_blurred):
    rgb, gt = half_blurred
    blur_map = baselines.get_baseline(method)(rgb)
    assert blur_map.shape == gt.shape and blur_map.dtype == np.float32
    assert blur_map.min() >= 0.0 and blur_map.max() <= 1.0
    assert blur_map[gt == 1].mean() > blur_map[gt == 0].mean() + 0.2
    scores = metrics.evaluate_maps([(blur_map, gt)])
    # Chance (everything blurred): P 0.5, R 1 -> F = 1.3 * 0.5 / 1.15 = 0.565.
    # LBP reaches ~0.73 here (the flat sky of the sharp half reads as blurred,
    # strong blurred edges as sharp), HiFST ~0.92.
    assert scores["max_f"] > 0.565 + 0.1
    assert scores["mae"] < 0.4


def test_lbp_riu2_codes():
    flat = np.full((5, 5), 0.5)
    assert np.all(lbp.lbp_riu2(flat) == 0)
    spot = flat.copy()
    spot[2, 2] = 0.9  # every neighbour differs by more than T_LBP: code 8
    assert lbp.lbp_riu2(spot)[2, 2] == 8
    small = flat.copy()
    small[2, 2] = 0.51  # differences below T_LBP = 0.016: code 0
    assert lbp.lbp_riu2(small)[2, 2] == 0
    stripes = flat.copy()
    stripes[1, 2] = stripes[3, 2] = 0.9  # two separate runs of set bits: non-uniform
    assert lbp.lbp_riu2(stripes)[2, 2] == 9
    edge = flat.copy()
    edge[:, 3:] = 0.9  # a vertical edge to the right: one run of 3 set bits
    assert lbp.lbp_riu2(edge)[2, 2] == 3


def test_lbp_sharpness_fraction():
    rng = np.random.default_rng(0)
    noisy = rng.random((40, 40))
    flat = np.full((40, 40), 0.3)
    assert lbp.lbp_sharpness(flat, 11).max() == 0.0
    assert lbp.lbp_sharpness(noisy, 11).mean() > 0.5


def test_hifst_dct_matrix_is_orthonormal_dct():
    from scipy.fft import dct

    matrix = hifst.dct_matrix(7)
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(7), atol=1e-12)
    vector = np.arange(7.0)
    np.testing.assert_allclose(matrix @ vector, dct(vector, norm="ortho"), atol=1e-12)


def test_hifst_patch_coefficients_match_direct_dct():
    from scipy.fft import dctn

    rng = np.random.default_rng(1)
    image = rng.random((20, 24)).astype(np.float32)
    size, pad = 7, 3
    padded = np.pad(image, pad, mode="symmetric")
    rows, cols = np.array([0, 5, 19]), np.array([0, 8, 23])
    fast = hifst._high_frequency_coefficients(padded, pad, rows, cols, size)
    u, v = np.indices((size, size))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            patch = padded[r:r + size, c:c + size]
            direct = np.abs(dctn(patch.astype(np.float64), norm="ortho"))[u + v >= size - 1]
            np.testing.assert_allclose(fast[i, j], direct, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", baselines.METHODS)
def test_small_and_grey_inputs(method):
    rng = np.random.default_rng(2)
    grey = rng.integers(0, 256, (21, 30)).astype(np.uint8)
    blur_map = baselines.get_baseline(method)(grey)
    assert blur_map.shape == (21, 30)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    np.testing.assert_allclose(baselines.get_baseline(method)(rgb), blur_map, atol=1e-5)
    flat = baselines.get_baseline(method)(np.zeros((10, 10, 3), np.uint8))
    # No texture anywhere: a finite map that calls every pixel blurred.
    assert flat.shape == (10, 10) and np.isfinite(flat).all()
    np.testing.assert_array_equal(flat, np.ones((10, 10)))


def test_unknown_method_and_backend():
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.get_baseline("svd")
    with pytest.raises(ValueError, match="backend"):
        hifst.hifst_blur_map(np.zeros((16, 16)), backend="matlab")


def test_run_on_folder_reports_bad_files_and_carries_on(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for stem in ("a", "c"):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(photos / f"{stem}.JPG")
    (photos / "b.png").write_bytes(b"garbage")
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "maps"
    status = baselines.main(["--method", "lbp", "--images", str(photos), "--out", str(out), "--quiet"])
    assert status == 1
    captured = capsys.readouterr()
    assert "b.png" in captured.err and "wrote 2 maps" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    with Image.open(out / "a.png") as image:
        assert image.mode == "L" and image.size == (40, 30)
    assert baselines.main(["--method", "lbp", "--images", str(tmp_path / "none"), "--out", str(out)]) == 2


def test_blur_detector_backend_when_installed():
    """The optional `hifst` extra: high = blurred after its polarity flip."""
    pytest.importorskip("blur_detector", reason="optional: pip install -e .[hifst]")
    from skimage import data, filters

    from keras_defusion.evaluation.baselines import get_baseline

    gray = data.camera().astype(float) / 255
    gray[:, :256] = filters.gaussian(gray[:, :256], 3)
    photo = np.stack([np.round(gray * 255).astype(np.uint8)] * 3, axis=-1)
    blur = get_baseline("hifst-blur-detector")(photo)
    assert blur.shape == gray.shape and 0 <= blur.min() and blur.max() <= 1
    assert blur[:, :256].mean() > blur[:, 256:].mean() + 0.1


def test_missing_blur_detector_is_an_error_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "blur_detector", None)  # import fails
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(tmp_path / "a.png")
    status = baselines.main(["--method", "hifst-blur-detector", "--images", str(tmp_path),
                             "--out", str(tmp_path / "maps")])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pip install blur-detector" in err
    assert "Traceback" not in err and not (tmp_path / "maps").exists()
