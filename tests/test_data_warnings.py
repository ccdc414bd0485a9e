"""Masks and maps that are usable but suspicious: read right where the
intent is clear, and a `DataWarning` naming the file otherwise."""

import warnings

import numpy as np
import pytest
from PIL import Image

from keras_defusion import cli
from keras_defusion.errors import DataWarning
from keras_defusion.evaluation import scoring
from keras_defusion.io import images as image_io


def _shape():
    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 8:25] = 1
    return mask


def _load(path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mask = image_io.load_mask(path, **kwargs)
    return mask, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def test_alpha_mask_is_read_from_its_alpha(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 3] = _shape() * 255  # black everywhere; the shape is in alpha
    Image.fromarray(rgba, "RGBA").save(tmp_path / "m.png")
    mask, messages = _load(tmp_path / "m.png")
    np.testing.assert_array_equal(mask, _shape())
    assert messages == []


def test_label_map_of_low_grey_values_is_read_with_a_warning(tmp_path):
    Image.fromarray(_shape(), "L").save(tmp_path / "labels.png")  # values 0 and 1
    mask, messages = _load(tmp_path / "labels.png")
    np.testing.assert_array_equal(mask, _shape())
    assert len(messages) == 1 and "labels.png: read as a label map" in messages[0]


def test_empty_and_grey_masks_warn_naming_the_file(tmp_path):
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "empty.png")
    mask, messages = _load(tmp_path / "empty.png")
    assert not mask.any() and len(messages) == 1
    assert "empty.png: the mask has no blurred pixel" in messages[0]
    ramp = np.tile(np.linspace(0, 255, 30).astype(np.uint8), (20, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    mask, messages = _load(tmp_path / "ramp.png")
    assert mask.mean() == pytest.approx(0.5, abs=0.05)
    assert any("ramp.png: not a binary mask" in m for m in messages)
    # A clean binary mask draws none; nor does sharp-white with blur present.
    Image.fromarray(_shape() * 255).save(tmp_path / "ok.png")
    assert _load(tmp_path / "ok.png")[1] == []
    assert _load(tmp_path / "ok.png", polarity="sharp-white")[1] == []


def test_evaluate_prints_warnings_for_colour_and_misshapen_maps(tmp_path, capsys):
    gt = _shape() * 255
    (tmp_path / "gt").mkdir()
    for stem in ("a", "b", "c"):
        Image.fromarray(gt).save(tmp_path / "gt" / f"{stem}.png")
    maps = tmp_path / "maps"
    maps.mkdir()
    Image.fromarray(gt).save(maps / "a.png")  # fine
    Image.fromarray(gt.T.copy()).save(maps / "b.png")  # rotated: 30 x 20
    colour = np.stack([gt, 255 - gt, np.full_like(gt, 128)], axis=-1)
    Image.fromarray(colour).save(maps / "c.png")  # a colour picture
    status = cli.main(["evaluate", "--pred", str(maps), "--gt", str(tmp_path / "gt"),
                       "--json", str(tmp_path / "scores.json")])
    err = capsys.readouterr().err
    assert status == 0
    assert f"warning: {maps / 'b.png'}: the map is 30 x 20 but its mask 20 x 30" in err
    assert f"warning: {maps / 'c.png'}: a colour image, not a grey map" in err
    assert "a.png" not in err
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        scoring.load_map(maps / "a.png")  # a grey map: no warning
