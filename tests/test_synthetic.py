"""The synthetic defocus generator."""

import os
import time

import numpy as np
import pytest
from scipy import ndimage

from keras_defusion import data
from keras_defusion.data import defocus
from keras_defusion.data import synthetic


def test_pairs_have_the_documented_shapes_and_values():
    images, masks = synthetic.synthetic_pairs(4, (24, 40), seed=0)

    assert images.shape == (4, 24, 40, 3) and images.dtype == np.uint8
    assert masks.shape == (4, 24, 40) and masks.dtype == np.float32
    assert set(np.unique(masks)) <= {0.0, 1.0}
    blurred_share = masks.mean(axis=(1, 2))
    assert np.all((blurred_share > 0.1) & (blurred_share < 0.95))


def test_same_seed_same_pairs_and_pairs_independent_of_count():
    images, masks = synthetic.synthetic_pairs(3, 32, seed=5)
    again_images, again_masks = synthetic.synthetic_pairs(5, 32, seed=5)
    other_images, _ = synthetic.synthetic_pairs(3, 32, seed=6)

    np.testing.assert_array_equal(images, again_images[:3])
    np.testing.assert_array_equal(masks, again_masks[:3])
    assert not np.array_equal(images, other_images)


def test_eight_small_pairs_take_well_under_a_second():
    synthetic.synthetic_pairs(1, 64, seed=0)  # loads the bundled sources once
    start = time.perf_counter()
    synthetic.synthetic_pairs(8, 64, seed=1)
    assert time.perf_counter() - start < 0.5


def _gradient_energy(image, region):
    grey = image.astype(np.float64).mean(axis=-1)
    gy, gx = np.gradient(grey)
    return float(np.mean((gx**2 + gy**2)[region]))


def test_blurred_region_has_less_gradient_energy_than_sharp_region():
    images, masks = synthetic.synthetic_pairs(12, 96, seed=2, radius_range=(3, 5))
    ratios = []
    for image, mask in zip(images, masks):
        # Away from the soft edge, where both regions mix.
        blurred = ndimage.binary_erosion(mask > 0.5, iterations=6)
        sharp = ndimage.binary_erosion(mask < 0.5, iterations=6)
        if blurred.sum() < 50 or sharp.sum() < 50:
            continue
        energy = _gradient_energy(image, blurred), _gradient_energy(image, sharp)
        ratios.append(energy[0] / energy[1])
    assert len(ratios) >= 8
    assert np.median(ratios) < 0.3
    assert np.mean(np.array(ratios) < 1.0) >= 0.8


def test_disk_kernel_is_a_normalised_disc():
    kernel = defocus.disk_kernel(3.0)
    assert kernel.shape == (7, 7)
    assert np.isclose(kernel.sum(), 1.0)
    np.testing.assert_allclose(kernel, kernel.T)
    np.testing.assert_allclose(kernel, kernel[::-1])
    assert kernel[0, 0] == 0 and kernel[3, 3] == kernel.max()
    flat = defocus.disk_blur(np.full((10, 12, 3), 80.0), 2.5)
    np.testing.assert_allclose(flat, 80.0, atol=1e-3)
    with pytest.raises(ValueError):
        defocus.disk_kernel(0)


def test_add_defocus_keeps_blurred_pixels_and_blurs_the_new_region():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (48, 64, 3))
    mask = np.zeros((48, 64, 1))
    mask[:, :16] = 1.0  # a blurred strip on the left
    painted, grown = defocus.add_defocus(np.random.default_rng(2), image, mask, 3.0)
    assert painted.shape == image.shape and grown.shape == mask.shape
    assert painted.dtype == np.float32 and grown.dtype == np.float32
    assert (grown[:, :16] == 1).all()  # blurred stays blurred
    new = (grown[..., 0] == 1) & (mask[..., 0] == 0)
    assert new.any() and not grown.all()
    assert painted.std(axis=-1)[new].mean() < 0.6 * image.std(axis=-1)[new].mean()
    again = defocus.add_defocus(np.random.default_rng(2), image, mask, 3.0)
    np.testing.assert_array_equal(again[0], painted)


@pytest.mark.parametrize("count", [None, 4])
def test_dataset_matches_make_dataset_structure(count):
    dataset = synthetic.synthetic_dataset(16, 2, seed=0, count=count)

    images_spec, masks_spec = dataset.element_spec
    assert images_spec.shape.as_list() == [2, 16, 16, 3]
    assert masks_spec.shape.as_list() == [2, 16, 16, 1]
    images, masks = next(iter(dataset))
    assert images.dtype == "float32" and masks.dtype == "float32"
    assert 0.0 <= images.numpy().min() and images.numpy().max() <= 255.0
    assert set(np.unique(masks.numpy())) <= {0.0, 1.0}
    again = next(iter(synthetic.synthetic_dataset(16, 2, seed=0, count=count)))
    np.testing.assert_array_equal(images.numpy(), again[0].numpy())


def test_evaluation_dataset_needs_a_count():
    with pytest.raises(ValueError, match="finite count"):
        synthetic.synthetic_dataset(16, 2, training=False)
    batches = list(synthetic.synthetic_dataset(16, 2, count=3, training=False))
    assert [int(images.shape[0]) for images, _ in batches] == [2, 1]


def test_written_folder_is_a_valid_cuhk_dataset(tmp_path):
    written = synthetic.write_synthetic_folder(tmp_path, 3, (20, 28), seed=4)

    stems = [f"synth_000{i}" for i in range(3)]
    assert sorted(os.listdir(tmp_path / "images")) == [s + ".jpg" for s in stems]
    assert sorted(os.listdir(tmp_path / "gt")) == [s + ".png" for s in stems]
    pairs = data.find_pairs(tmp_path)
    assert pairs == written
    data.validate_pairs(pairs)
    images, masks = data.load_pairs(pairs)
    _, expected_masks = synthetic.synthetic_pairs(3, (20, 28), seed=4)
    assert images[0].shape == (20, 28, 3)
    np.testing.assert_array_equal(np.stack(masks)[..., 0], expected_masks)
