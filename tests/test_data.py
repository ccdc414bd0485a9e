"""Pair discovery, bad-data checks and the tf.data pipeline."""

import os
import time

import numpy as np
import pytest
from PIL import Image

from keras_defusion import data
from keras_defusion.data import synthetic


def _photo(height, width, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _blob_mask(height, width, seed=0):
    """An asymmetric {0, 1} mask: a disc off-centre plus a bar at the top."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:height, :width]
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.2, 0.5) * width
    disc = (ys - cy) ** 2 + (xs - cx) ** 2 < (0.25 * min(height, width)) ** 2
    bar = ys < height // 5
    return (disc | bar).astype(np.uint8)


def _save(path, array, mode=None, fmt=None, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    image.save(path, format=fmt, **kwargs)
    return str(path)


def _cuhk_folder(root, count=3, height=30, width=40):
    """A CUHK-layout folder of lossless PNG pairs; returns the masks by stem."""
    masks = {}
    for i in range(count):
        stem = f"img{i}"
        masks[stem] = _blob_mask(height, width, seed=i)
        _save(root / "images" / f"{stem}.png", _photo(height, width, seed=i))
        _save(root / "gt" / f"{stem}.png", masks[stem] * 255)
    return masks


# --------------------------------------------------------------------------
# Discovery


def test_cuhk_layout_pairs_every_mode_and_extension_case(tmp_path):
    height, width = 12, 16
    mask = _blob_mask(height, width)
    images, gt = tmp_path / "images", tmp_path / "gt"
    _save(images / "a.jpg", _photo(height, width))
    _save(images / "b.JPG", _photo(height, width), fmt="JPEG")
    _save(images / "c.png", _photo(height, width), mode="RGBA")
    _save(images / "d.jpeg", _photo(height, width), mode="L")
    _save(gt / "a.png", mask * 255)  # L
    _save(gt / "b.png", mask * 255, mode="RGBA")
    _save(gt / "c.bmp", mask * 255, mode="1")
    _save(gt / "d.PNG", mask * 255, mode="RGB")
    (images / "notes.txt").write_text("not an image")
    _save(images / "._a.jpg", _photo(4, 4))  # macOS resource fork: ignored

    pairs = data.find_pairs(tmp_path)

    assert [p.stem for p in pairs] == ["a", "b", "c", "d"]
    assert all(p.complete for p in pairs)
    assert pairs[1].image_path.endswith("b.JPG")
    assert data.find_pairs(tmp_path, layout="cuhk") == pairs
    assert data.validate_pairs(pairs) is pairs
    loaded_images, loaded_masks = data.load_pairs(pairs)
    for image, loaded in zip(loaded_images, loaded_masks):
        assert image.shape == (height, width, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(loaded[..., 0], mask)


@pytest.mark.parametrize(
    "image_folder, mask_folder", [("source", "gt"), ("dut500-source", "dut500-gt")]
)
def test_dut_layout_pairs_jpg_with_bmp(tmp_path, image_folder, mask_folder):
    written = synthetic.write_synthetic_folder(
        tmp_path, 3, 16, seed=1, layout="dut"
    )
    if image_folder != "source":
        os.rename(tmp_path / "source", tmp_path / image_folder)
        os.rename(tmp_path / "gt", tmp_path / mask_folder)

    pairs = data.find_pairs(tmp_path)

    assert [p.stem for p in pairs] == [p.stem for p in written] == ["0", "1", "2"]
    assert all(p.image_path.endswith(".jpg") for p in pairs)
    assert all(p.mask_path.endswith(".bmp") for p in pairs)
    assert data.find_pairs(tmp_path, layout="dut") == pairs
    explicit = data.find_pairs(
        images_dir=tmp_path / image_folder, masks_dir=tmp_path / mask_folder
    )
    assert explicit == pairs


def test_dut_polarity_flips_to_blur_white(tmp_path):
    synthetic.write_synthetic_folder(tmp_path / "cuhk", 2, 16, seed=3)
    synthetic.write_synthetic_folder(tmp_path / "dut", 2, 16, seed=3, layout="dut")
    kwargs = dict(image_size=16, batch_size=2, training=False)

    def first_masks(pairs, **more):
        return next(iter(data.make_dataset(pairs, **kwargs, **more)))[1]

    cuhk_masks = first_masks(data.find_pairs(tmp_path / "cuhk"))
    dut_pairs = data.find_pairs(tmp_path / "dut")
    dut_masks = first_masks(dut_pairs, polarity="sharp-white")
    raw_masks = first_masks(dut_pairs)

    np.testing.assert_array_equal(dut_masks.numpy(), cuhk_masks.numpy())
    np.testing.assert_array_equal(raw_masks.numpy(), 1.0 - cuhk_masks.numpy())
    with pytest.raises(ValueError, match="polarity"):
        data.make_dataset(dut_pairs, polarity="white", **kwargs)


def test_unknown_layout_and_ambiguous_stems_raise(tmp_path):
    os.makedirs(tmp_path / "photos")
    os.makedirs(tmp_path / "labels")
    with pytest.raises(data.DataError, match="cannot tell"):
        data.find_pairs(tmp_path)
    with pytest.raises(data.DataError, match="images/ and gt/"):
        data.find_pairs(tmp_path, layout="cuhk")

    _save(tmp_path / "images" / "a.jpg", _photo(8, 8))
    _save(tmp_path / "images" / "a.png", _photo(8, 8))
    _save(tmp_path / "gt" / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(data.DataError, match="share a stem") as error:
        data.find_pairs(tmp_path)
    assert "a.jpg" in str(error.value) and "a.png" in str(error.value)


def test_split_pairs_is_deterministic_and_disjoint():
    pairs = [data.Pair(f"{i}.jpg", f"{i}.png", f"s{i:02d}") for i in range(20)]
    train, val = data.split_pairs(pairs, 0.25, seed=4)

    assert len(val) == 5 and len(train) == 15
    assert sorted(train + val, key=lambda p: p.stem) == pairs
    assert data.split_pairs(pairs[::-1], 0.25, seed=4) == (train, val)
    assert data.split_pairs(pairs, 0.25, seed=5) != (train, val)
    assert data.split_pairs(pairs[:3], 0.01, seed=0)[1]  # at least one
    assert data.split_pairs(pairs, 0.0) == (pairs, [])


# --------------------------------------------------------------------------
# Bad data


def _missing_mask(root):
    _save(root / "images" / "lonely.jpg", _photo(16, 16))
    return "lonely.jpg", "without a mask"


def _missing_image(root):
    _save(root / "gt" / "orphan.png", np.zeros((16, 16), np.uint8))
    return "orphan.png", "without a photo"


def _size_mismatch(root):
    _save(root / "images" / "wide.jpg", _photo(16, 20))
    _save(root / "gt" / "wide.png", np.zeros((16, 16), np.uint8))
    return "wide.jpg", "20x16"


def _unreadable(root):
    _save(root / "gt" / "garbage.png", np.zeros((16, 16), np.uint8))
    os.makedirs(root / "images", exist_ok=True)
    (root / "images" / "garbage.jpg").write_bytes(b"this is not a JPEG file at all")
    return "garbage.jpg", "not a readable image"


def _zero_bytes(root):
    _save(root / "images" / "empty.jpg", _photo(16, 16))
    os.makedirs(root / "gt", exist_ok=True)
    (root / "gt" / "empty.png").write_bytes(b"")
    return "empty.png", "empty file"


BAD_CASES = [
    _missing_mask, _missing_image, _size_mismatch, _unreadable, _zero_bytes
]


@pytest.mark.parametrize("decode", [True, False])
@pytest.mark.parametrize("make_bad", BAD_CASES, ids=lambda f: f.__name__.strip("_"))
def test_each_bad_case_names_the_file(tmp_path, make_bad, decode):
    _cuhk_folder(tmp_path, count=2)
    name, problem = make_bad(tmp_path)
    pairs = data.find_pairs(tmp_path)

    with pytest.raises(data.DataError) as error:
        data.validate_pairs(pairs, decode=decode)

    message = str(error.value)
    assert name in message and problem in message
    assert "img0" not in message  # good pairs are not blamed
    with pytest.raises(data.DataError, match=name):
        data.make_dataset(pairs, 16, 1, training=False, cache=decode)


def test_all_problems_come_in_one_error(tmp_path):
    _cuhk_folder(tmp_path, count=2)
    expected = [make_bad(tmp_path) for make_bad in BAD_CASES]

    with pytest.raises(data.DataError) as error:
        data.validate_pairs(data.find_pairs(tmp_path))

    message = str(error.value)
    assert message.startswith("5 problem(s) in 5 of 7")
    for name, problem in expected:
        assert name in message and problem in message


def test_truncated_jpeg_is_caught_by_the_full_decode(tmp_path):
    _cuhk_folder(tmp_path, count=1)
    path = _save(tmp_path / "images" / "cut.jpg", _photo(64, 64), quality=95)
    _save(tmp_path / "gt" / "cut.png", np.zeros((64, 64), np.uint8))
    with open(path, "rb") as f:
        head = f.read()
    with open(path, "wb") as f:
        f.write(head[: len(head) // 2])
    pairs = data.find_pairs(tmp_path)

    data.validate_pairs(pairs, decode=False)  # the header is intact
    with pytest.raises(data.DataError, match="cut.jpg"):
        data.validate_pairs(pairs)


def test_exif_rotated_photo_is_compared_as_loaded(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display: 20x10 shows as 10x20
    path = tmp_path / "images" / "turned.jpg"
    os.makedirs(path.parent)
    Image.fromarray(_photo(10, 20)).save(path, exif=exif)
    _save(tmp_path / "gt" / "turned.png", np.zeros((10, 20), np.uint8))
    pairs = data.find_pairs(tmp_path)

    for decode in (True, False):
        with pytest.raises(data.DataError, match="turned.jpg: photo is 10x20"):
            data.validate_pairs(pairs, decode=decode)


# --------------------------------------------------------------------------
# tf.data


def test_evaluation_dataset_shapes_ranges_and_order(tmp_path):
    masks = _cuhk_folder(tmp_path, count=3, height=30, width=40)
    pairs = data.find_pairs(tmp_path)

    batches = list(data.make_dataset(pairs, 20, 2, training=False))

    shapes = [tuple(images.shape) for images, _ in batches]
    assert shapes == [(2, 20, 20, 3), (1, 20, 20, 3)]
    images = np.concatenate([b[0].numpy() for b in batches])
    resized = np.concatenate([b[1].numpy() for b in batches])
    assert images.dtype == np.float32 and resized.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 255.0 and images.max() > 200
    assert set(np.unique(resized)) <= {0.0, 1.0}
    for index, stem in enumerate(sorted(masks)):  # order kept
        expected = Image.fromarray(masks[stem] * 255).resize(
            (20, 20), Image.Resampling.BILINEAR
        )
        expected = np.asarray(expected) >= 128
        assert np.mean(resized[index, ..., 0] == expected) > 0.95


def test_uncached_dataset_matches_cached(tmp_path):
    _cuhk_folder(tmp_path, count=3)
    pairs = data.find_pairs(tmp_path)
    for training in (False, True):
        cached = data.make_dataset(pairs, 16, 3, training=training, seed=2)
        uncached = data.make_dataset(
            pairs, 16, 3, training=training, seed=2, cache=False
        )
        for a, b in zip(next(iter(cached)), next(iter(uncached))):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def _mask_photos(count=6, height=36, width=48):
    """Photos whose every channel equals their mask * 255, and the masks."""
    masks = [_blob_mask(height, width, seed=i) for i in range(count)]
    photos = [
        np.repeat(m[..., None] * 255, 3, axis=-1).astype(np.uint8) for m in masks
    ]
    return photos, masks


@pytest.mark.parametrize("border, methods", [
    *((border, ("antialiased",)) for border in data.ROTATION_BORDERS),
    ("crop", data.RESIZE_METHODS),
    ("crop", ("corner_bilinear",)),
])
def test_augmentation_moves_photo_and_mask_together(border, methods):
    photos, masks = _mask_photos()
    dataset = data.dataset_from_arrays(
        photos, masks, 24, 6, training=True, seed=0,
        max_rotation=15, scale_range=(0.8, 1.3), rotation_border=border,
        resize_methods=methods,
    )
    iterator = iter(dataset)
    for _ in range(3):
        images, augmented = next(iterator)
        assert images.shape == (6, 24, 24, 3) and augmented.shape == (6, 24, 24, 1)
        images, augmented = images.numpy(), augmented.numpy()
        assert set(np.unique(augmented)) <= {0.0, 1.0}
        assert 0.0 <= images.min() and images.max() <= 255.0
        agree = (images[..., :1] >= 127.5) == (augmented >= 0.5)
        assert agree.mean() > 0.99


def test_corner_bilinear_samples_at_pixel_corners_as_mediapipe_does():
    """Target pixel x reads source x * in / out (no half-pixel offset): the
    geometry of MediaPipe's ImageSegmenter (an OpenCV warp by the scale)."""
    from keras_defusion.data import augmentation

    photo = np.random.default_rng(0).uniform(0, 255, (30, 45, 3)).astype(np.float32)
    side = 20

    def weights(in_size):  # [side, in_size] bilinear weights at x * in / out
        source = np.arange(side) * in_size / side
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, in_size - 1)
        table = np.zeros((side, in_size))
        table[np.arange(side), low] += 1 - (source - low)
        table[np.arange(side), high] += source - low
        return table

    expected = np.einsum("yi,xj,ijc->yxc", weights(30), weights(45), photo)
    actual = augmentation.resize_photo(photo, side, "corner_bilinear").numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-3)
    centred = augmentation.resize_photo(photo, side, "bilinear").numpy()
    assert np.abs(centred - expected).mean() > 1.0  # the two geometries differ


def test_augmentation_without_rotation_or_zoom_is_exact_or_mirrored():
    _, masks = _mask_photos(count=4)
    photos = [_photo(36, 48, seed=i) for i in range(4)]
    plain = data.dataset_from_arrays(photos, masks, 24, 4, training=False)
    plain_images, plain_masks = (t.numpy() for t in next(iter(plain)))
    augmented = data.dataset_from_arrays(
        photos, masks, 24, 4, training=True, seed=1,
        max_rotation=0, scale_range=(1, 1),
    )
    mirrored = 0
    for images, out_masks in augmented.take(3):
        for image, mask in zip(images.numpy(), out_masks.numpy()):
            source = int(np.argmin([
                min(np.abs(image - p).max(), np.abs(image - p[:, ::-1]).max())
                for p in plain_images
            ]))
            want_image, want_mask = plain_images[source], plain_masks[source]
            if not np.array_equal(image, want_image):
                want_image, want_mask = want_image[:, ::-1], want_mask[:, ::-1]
                mirrored += 1
            np.testing.assert_allclose(image, want_image, atol=1e-3)
            np.testing.assert_array_equal(mask, want_mask)
    assert 0 < mirrored < 12


def test_rotation_and_zoom_change_the_image():
    """With rotation and a zoom of at least 1.1, augmentation is not a no-op."""
    _, masks = _mask_photos(count=4)
    photos = [_photo(36, 48, seed=i) for i in range(4)]
    plain = data.dataset_from_arrays(photos, masks, 24, 4, training=False)
    plain_images = next(iter(plain))[0].numpy()
    candidates = [p for image in plain_images for p in (image, image[:, ::-1])]
    augmented = data.dataset_from_arrays(
        photos, masks, 24, 4, training=True, seed=1,
        max_rotation=15, scale_range=(1.1, 1.3),
    )
    distances = [
        min(np.abs(image - p).max() for p in candidates)
        for images, _ in augmented.take(3)
        for image in images.numpy()
    ]
    # Random photos: a different view differs by many levels somewhere
    # (measured: over 100 for every image). Stricter than "at least one".
    assert all(d > 10 for d in distances), distances


def test_training_is_reproducible_from_the_seed():
    photos, masks = _mask_photos(count=5)

    def first_batches(seed, **kwargs):
        dataset = data.dataset_from_arrays(
            photos, masks, 16, 2, training=True, seed=seed, **kwargs
        )
        return [t.numpy() for batch in dataset.take(3) for t in batch]

    same = zip(first_batches(7), first_batches(7))
    assert all(np.array_equal(a, b) for a, b in same)
    other = zip(first_batches(7), first_batches(8))
    assert not all(np.array_equal(a, b) for a, b in other)

    once = data.dataset_from_arrays(
        photos, masks, 16, 2, training=True, seed=7, repeat=False
    )
    first_pass = [t.numpy() for batch in once for t in batch]
    second_pass = [t.numpy() for batch in once for t in batch]
    assert len(first_pass) == 4  # 5 pairs, batch 2, remainder dropped
    assert not all(np.array_equal(a, b) for a, b in zip(first_pass, second_pass))


@pytest.mark.parametrize("photometric", [
    data.Photometric(color_jitter=0.3),
    data.Photometric(noise_stddev=8.0),
    data.Photometric(jpeg_quality=30),
])
def test_photometric_changes_the_photo_only(photometric):
    """Each photometric change alters the crops, keeps their masks (the
    geometry draws are its own), and repeats from the seed."""
    photos, masks = _mask_photos(count=4)

    def batches(**kwargs):
        dataset = data.dataset_from_arrays(
            photos, masks, 24, 4, training=True, seed=3, max_rotation=10, **kwargs)
        return [[t.numpy() for t in batch] for batch in dataset.take(2)]

    plain, changed, again = batches(), batches(photometric=photometric), batches(
        photometric=photometric)
    for (images, out_masks), (new_images, new_masks), (same_images, _) in zip(
            plain, changed, again):
        np.testing.assert_array_equal(new_masks, out_masks)
        np.testing.assert_array_equal(new_images, same_images)
        assert 0.0 <= new_images.min() and new_images.max() <= 255.0
        differences = np.abs(new_images - images).mean(axis=(1, 2, 3))
        assert (differences > 0.5).sum() >= 3, differences  # not one crop by chance


def test_photometric_is_off_by_default_and_checks_its_values():
    assert not data.Photometric().enabled
    for bad, flag in ((dict(color_jitter=1.0), "--color-jitter"),
                      (dict(noise_stddev=-1.0), "--noise-stddev"),
                      (dict(jpeg_quality=0), "--jpeg-quality"),
                      (dict(jpeg_quality=80.5), "--jpeg-quality")):
        with pytest.raises(ValueError, match=flag):
            data.Photometric(**bad)


def test_synthetic_defocus_blurs_a_region_and_adds_it_to_the_mask():
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(4)]
    masks = [np.zeros((40, 40)) for _ in photos]  # all sharp

    def batch(synthetic_defocus=None):
        dataset = data.dataset_from_arrays(
            photos, masks, 32, 4, training=True, seed=3, synthetic_defocus=synthetic_defocus)
        return [t.numpy() for t in next(iter(dataset))]

    always = data.SyntheticDefocus(1.0, radius_range=(0.1, 0.15))
    (images, plain_masks), (painted, grown), (again, grown_again) = (
        batch(), batch(always), batch(always))
    np.testing.assert_array_equal(painted, again)
    np.testing.assert_array_equal(grown, grown_again)
    for image, new_image, mask in zip(images, painted, grown[..., 0]):
        assert 0 < mask.mean() < 1
        both = (mask[:, 1:] == 1) & (mask[:, :-1] == 1)  # neighbours inside the region
        detail_before = np.abs(np.diff(image, axis=1)).mean(-1)[both].mean()
        detail_after = np.abs(np.diff(new_image, axis=1)).mean(-1)[both].mean()
        assert detail_after < 0.5 * detail_before
        change = np.abs(new_image - image).mean(-1)
        assert change[mask == 0].mean() < change[mask == 1].mean()
    assert not plain_masks.any()
    # Off (p = 0) leaves every crop as it was: its draws are its own.
    for a, b in zip(batch(data.SyntheticDefocus(0.0)), (images, plain_masks)):
        np.testing.assert_array_equal(a, b)


def test_synthetic_defocus_is_off_by_default_and_checks_its_values():
    assert not data.SyntheticDefocus().enabled
    with pytest.raises(ValueError, match="--synthetic-defocus"):
        data.SyntheticDefocus(1.5)
    with pytest.raises(ValueError, match="radius_range"):
        data.SyntheticDefocus(0.5, radius_range=(0.1, 0.05))


def test_training_batches_have_a_static_shape():
    photos, masks = _mask_photos(count=3)
    dataset = data.dataset_from_arrays(photos, masks, 16, 2, training=True, seed=0)
    images_spec, masks_spec = dataset.element_spec
    assert images_spec.shape.as_list() == [2, 16, 16, 3]
    assert masks_spec.shape.as_list() == [2, 16, 16, 1]
    with pytest.raises(ValueError, match="no full batch"):
        data.dataset_from_arrays(photos, masks, 16, 4, training=True, repeat=False)


def test_dataset_from_arrays_rejects_bad_arrays():
    photos, masks = _mask_photos(count=2)
    def build(photos, masks, **kwargs):
        kwargs.setdefault("training", False)
        return data.dataset_from_arrays(photos, masks, 16, 1, **kwargs)

    with pytest.raises(ValueError, match="as many masks"):
        build(photos, masks[:1])
    with pytest.raises(ValueError, match="do not match"):
        build(photos, [m[:10] for m in masks])
    with pytest.raises(ValueError, match=r"\{0, 1\}"):
        build(photos, [m * 255 for m in masks])
    with pytest.raises(ValueError, match="rotation_border"):
        build(photos, masks, training=True, rotation_border="wrap")


# --------------------------------------------------------------------------
# A teacher's maps as soft targets


def _teacher_batches(photos, masks, teachers=None, weight=0.5):
    dataset = data.dataset_from_arrays(
        photos, masks, 24, 6, training=True, seed=4, max_rotation=15,
        scale_range=(0.8, 1.3), teachers=teachers, teacher_weight=weight)
    return [[t.numpy() for t in batch] for batch in dataset.take(2)]


def test_teacher_maps_blend_into_the_targets_and_follow_the_crop():
    photos, masks = _mask_photos()
    plain = _teacher_batches(photos, masks)
    # A constant map: every target is exactly (1 - w) * mask + w * value.
    constant = [np.full(m.shape, 153, np.uint8) for m in masks]
    for (images, targets), (same_images, plain_masks) in zip(
            _teacher_batches(photos, masks, constant, weight=0.25), plain):
        np.testing.assert_array_equal(images, same_images)  # the same crops
        np.testing.assert_allclose(targets, 0.75 * plain_masks + 0.25 * 0.6, atol=1e-6)
    # The mask's inverse at half weight. Where the map is warped as the mask
    # is, its value is 1 - s where the mask's is s before re-binarising, so
    # the target, 0.5 * [s >= 0.5] + 0.5 * (1 - s), stays within 0.25 of 0.5;
    # a map cropped, rotated or mirrored otherwise would give 0 or 1.
    inverse = [(255 - 255 * m).astype(np.uint8) for m in masks]
    for images, targets in _teacher_batches(photos, masks, inverse, weight=0.5):
        assert np.abs(targets - 0.5).max() <= 0.25 + 1e-5
        assert (np.abs(targets - 0.5) < 1e-5).mean() > 0.6


def test_teacher_maps_come_from_a_folder_by_stem(tmp_path):
    masks = _cuhk_folder(tmp_path / "train")
    pairs = data.find_pairs(tmp_path / "train")
    maps = tmp_path / "teacher" / "maps"  # as `keras-defusion detect --out teacher` writes
    _save(maps / "img0.png", (masks["img0"] * 255).astype(np.uint8))
    _save(maps / "img1.png", np.zeros((10, 20), np.uint8))

    def build(folder, **kwargs):
        kwargs.setdefault("training", True)
        return data.make_dataset(pairs, 16, 3, seed=0, teacher_maps=folder, **kwargs)

    with pytest.raises(data.DataError) as caught:
        build(tmp_path / "teacher")
    message = str(caught.value)
    assert "img2.png: no teacher map named img2.*" in message
    assert "img1.png: 20 x 10 px, but its photo" in message and "is 40 x 30" in message
    with pytest.raises(data.DataError, match="no such folder of teacher maps"):
        build(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="training=True and cache=True"):
        build(maps, training=False)
    _save(maps / "img1.png", (masks["img1"] * 255).astype(np.uint8))
    _save(maps / "img2.png", (masks["img2"] * 255).astype(np.uint8))
    for folder in (tmp_path / "teacher", maps):
        images, targets = next(iter(build(folder, teacher_weight=1.0)))
        assert images.shape == (3, 16, 16, 3) and targets.shape == (3, 16, 16, 1)
        assert targets.numpy().std() > 0.1  # the maps are the masks: not a flat target


def test_teacher_arrays_are_checked():
    photos, masks = _mask_photos(count=2)
    teachers = [(m * 255).astype(np.uint8) for m in masks]
    with pytest.raises(ValueError, match="evaluation keeps the masks"):
        data.dataset_from_arrays(photos, masks, 16, 1, training=False, teachers=teachers)
    with pytest.raises(ValueError, match=r"teacher_weight must be in \(0, 1\], got 0"):
        data.dataset_from_arrays(photos, masks, 16, 1, training=True, teachers=teachers,
                                 teacher_weight=0)
    with pytest.raises(ValueError, match="got 1 maps for 2 images"):
        data.dataset_from_arrays(photos, masks, 16, 1, training=True, teachers=teachers[:1])
    with pytest.raises(ValueError, match=r"pair 0: teacher map float64"):
        data.dataset_from_arrays(photos, masks, 16, 1, training=True,
                                 teachers=[m.astype(float) for m in masks])


# --------------------------------------------------------------------------
# The real benchmark


@pytest.mark.cuhk
def test_cuhk_train_validates_and_gives_a_batch(cuhk_dir):
    pairs = data.find_pairs(cuhk_dir / "train")
    assert len(pairs) == 604
    assert sum(p.image_path.endswith(".JPG") for p in pairs) == 37

    start = time.perf_counter()
    data.validate_pairs(pairs)
    assert time.perf_counter() - start < 30

    dataset = data.make_dataset(pairs, 64, 4, training=True, seed=0)
    images, masks = next(iter(dataset))
    assert images.shape == (4, 64, 64, 3) and masks.shape == (4, 64, 64, 1)
    assert set(np.unique(masks.numpy())) == {0.0, 1.0}
    assert 0.0 <= images.numpy().min() and images.numpy().max() <= 255.0


def test_shards_split_the_elements_between_workers():
    photos = [_photo(12, 12, seed=i) for i in range(6)]
    masks = [_blob_mask(12, 12, seed=i) for i in range(6)]

    def sums(**kwargs):
        dataset = data.dataset_from_arrays(photos, masks, 8, 1, **kwargs)
        return [float(images.numpy().sum()) for images, _ in dataset.take(6)]

    whole = sums(training=False)
    first = sums(training=False, shard=(2, 0))
    second = sums(training=False, shard=(2, 1))
    assert sorted(first + second) == sorted(whole) and len(first) == 3
    worker0 = sums(training=True, seed=3, shard=(2, 0))
    worker1 = sums(training=True, seed=3, shard=(2, 1))
    assert worker0 != worker1
    with pytest.raises(ValueError, match="shard"):
        sums(training=False, shard=(2, 2))
