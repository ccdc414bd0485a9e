"""Synthetic defocus blur: sharp photos blurred by a pillbox under a soft mask.

Each sample takes a random crop of a sharp source (scikit-image's bundled
photos and textures, which install with the package, so this works offline),
blurs a copy with a disk (pillbox) kernel of random radius, and blends the
two through a soft random mask:

    image = soft * blurred + (1 - soft) * sharp,    mask = soft >= 0.5

where `soft` is a thresholded low-frequency noise field (plus a random depth
ramp), feathered by a Gaussian about half the blur radius wide, as a defocus
edge is. A little sensor noise is added everywhere afterwards, so "no noise"
does not give the blurred region away. Masks are float32 {0, 1} with
1 = blurred, the CUHK polarity. For tests, smoke runs and warm-up training;
not a replacement for real data.
"""

import functools
import os

import numpy as np
import tensorflow as tf
from PIL import Image
from skimage import data as skimage_data

from keras_defusion import data
from keras_defusion.data import defocus
from keras_defusion.io import files
from keras_defusion.io import images as image_io

# Sharp, textured scikit-image samples that need no download (`clock` is
# left out: it is motion-blurred).
SOURCE_NAMES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "immunohistochemistry",
    "brick",
    "grass",
    "gravel",
    "coins",
    "page",
)


@functools.lru_cache(maxsize=None)
def _source(name):
    """A bundled sample as RGB uint8 [H, W, 3], or None where it is missing."""
    try:
        array = np.asarray(getattr(skimage_data, name)())
    except Exception:  # Missing file or a newer scikit-image without it.
        return None
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    return np.ascontiguousarray(array[..., :3], dtype=np.uint8)


def _procedural_source(rng, side=384):
    """A sharp random texture, the fallback when no bundled photo loads."""
    cells = rng.integers(4, 32)
    coarse = rng.uniform(0, 255, (cells, cells, 3))
    blocks = np.kron(coarse, np.ones((side // cells + 1, side // cells + 1, 1)))
    noise = rng.normal(0, 40, (side, side, 3))
    return np.clip(blocks[:side, :side] + noise, 0, 255).astype(np.uint8)


def _random_crop(rng, source, height, width):
    """A random crop of `source` resized to [height, width], random mirror."""
    src_h, src_w = source.shape[:2]
    # Crops at least 1.5x the output, so the downscale sharpens the source.
    max_scale = min(src_h / height, src_w / width)
    low = min(1.5, max_scale)
    scale = np.exp(rng.uniform(np.log(low), np.log(max_scale)))
    crop_h = min(src_h, max(1, int(round(height * scale))))
    crop_w = min(src_w, max(1, int(round(width * scale))))
    top = int(rng.integers(0, src_h - crop_h + 1))
    left = int(rng.integers(0, src_w - crop_w + 1))
    crop = Image.fromarray(source[top : top + crop_h, left : left + crop_w])
    crop = np.asarray(crop.resize((width, height), Image.Resampling.LANCZOS))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return crop


def synthetic_pair(rng, size, radius_range=None):
    """One synthetic (image, mask) pair.

    Args:
        rng: a `numpy.random.Generator`.
        size: output side S, or (height, width).
        radius_range: (low, high) pillbox radius in pixels; None scales it
            with the image (`defocus.default_radius_range`).

    Returns:
        `(image, mask)`: uint8 RGB [H, W, 3] and float32 [H, W] in {0, 1},
        1 = blurred.
    """
    height, width = _height_width(size)
    if height < 2 or width < 2:
        raise ValueError(f"size must be at least 2 pixels, got {size}")
    low, high = radius_range or defocus.default_radius_range(height, width)
    sources = [s for s in (_source(name) for name in SOURCE_NAMES) if s is not None]
    if sources:
        source = sources[rng.integers(len(sources))]
    else:
        source = _procedural_source(rng)
    if min(source.shape[0] / height, source.shape[1] / width) < 1:
        source = _upscale_to_cover(source, height, width)
    sharp = _random_crop(rng, source, height, width).astype(np.float32)
    radius = rng.uniform(low, high)
    composite, mask = defocus.add_defocus(rng, sharp, np.zeros((height, width, 1)), radius)
    composite += rng.normal(0.0, rng.uniform(0.0, 3.0), composite.shape)
    image = np.clip(np.round(composite), 0, 255).astype(np.uint8)
    return image, mask[..., 0]


def _upscale_to_cover(source, height, width):
    factor = max(height / source.shape[0], width / source.shape[1])
    new_width = int(np.ceil(source.shape[1] * factor))
    new_height = int(np.ceil(source.shape[0] * factor))
    resized = Image.fromarray(source).resize(
        (new_width, new_height), Image.Resampling.BICUBIC
    )
    return np.asarray(resized)


def _height_width(size):
    if np.isscalar(size):
        return int(size), int(size)
    return int(size[0]), int(size[1])


def _pair_rng(seed, index):
    # Pair `index` depends only on (seed, index), not on how many came before.
    return np.random.default_rng([int(seed), int(index)])


def iter_synthetic_pairs(size, seed=0, start=0, radius_range=None):
    """An endless generator of `synthetic_pair`s, reproducible from `seed`."""
    index = start
    while True:
        yield synthetic_pair(_pair_rng(seed, index), size, radius_range)
        index += 1


def synthetic_pairs(count, size, seed=0, radius_range=None):
    """`count` synthetic pairs as stacked arrays.

    Args:
        count: number of pairs.
        size: side S, or (height, width).
        seed: integer seed; pair i depends only on (seed, i).
        radius_range: pillbox radius range in pixels (None: scaled to size).

    Returns:
        `(images, masks)`: uint8 [count, H, W, 3] and float32 [count, H, W]
        in {0, 1}, 1 = blurred.
    """
    pairs = [
        synthetic_pair(_pair_rng(seed, i), size, radius_range)
        for i in range(count)
    ]
    if not pairs:
        height, width = _height_width(size)
        return (
            np.zeros((0, height, width, 3), np.uint8),
            np.zeros((0, height, width), np.float32),
        )
    images, masks = zip(*pairs)
    return np.stack(images), np.stack(masks)


def synthetic_dataset(
    image_size,
    batch_size,
    seed=0,
    *,
    count=None,
    training=True,
    radius_range=None,
    **options,
):
    """A `tf.data.Dataset` of synthetic `(images, masks)` batches.

    The element structure is `make_dataset`'s: images float32
    [B, S, S, 3] in 0..255, masks float32 [B, S, S, 1] in {0, 1}.

    Args:
        image_size: side S.
        batch_size: global batch size.
        seed: integer seed; the same seed gives the same batches.
        count: None streams fresh pairs forever (training only); an integer
            makes that many pairs once, which then go through
            `data.dataset_from_arrays` (shuffled, augmented and repeated for
            training, in order for evaluation).
        training: as in `make_dataset`.
        radius_range: pillbox radius range in pixels (None: scaled to S).
        **options: passed to `data.dataset_from_arrays` when `count` is set.

    Returns:
        The dataset.
    """
    if count is not None:
        images, masks = synthetic_pairs(count, image_size, seed, radius_range)
        return data.dataset_from_arrays(
            list(images), list(masks), image_size, batch_size,
            training=training, seed=seed, **options,
        )
    if not training:
        raise ValueError("an evaluation dataset needs a finite count")
    if options:
        raise ValueError(f"options {sorted(options)} need count to be set")
    size = int(image_size)

    def generate():
        pairs = iter_synthetic_pairs(size, seed, radius_range=radius_range)
        for image, mask in pairs:
            yield image.astype(np.float32), mask[..., None]

    dataset = tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            tf.TensorSpec([size, size, 3], tf.float32),
            tf.TensorSpec([size, size, 1], tf.float32),
        ),
    )
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def write_synthetic_folder(
    out_dir, count, size, seed=0, *, layout="cuhk", radius_range=None
):
    """Writes synthetic pairs as a dataset folder, each file atomically.

    Layouts:
        "cuhk": `images/synth_0000.jpg` and `gt/synth_0000.png`, white =
            blurred.
        "dut": `source/0.jpg` and `gt/0.bmp`, white = sharp (as DUT-DBD).

    Args:
        out_dir: folder to create or add to.
        count: number of pairs.
        size: side S, or (height, width).
        seed: integer seed.
        layout: "cuhk" or "dut".
        radius_range: pillbox radius range in pixels (None: scaled to size).

    Returns:
        The pairs written, as `data.Pair` records sorted by stem.
    """
    if layout not in ("cuhk", "dut"):
        raise ValueError(f"layout must be 'cuhk' or 'dut', got {layout!r}")
    out_dir = os.fspath(out_dir)
    images_dir = os.path.join(out_dir, "images" if layout == "cuhk" else "source")
    masks_dir = os.path.join(out_dir, "gt")
    pairs = []
    for index in range(count):
        image, mask = synthetic_pair(_pair_rng(seed, index), size, radius_range)
        stem = f"synth_{index:04d}" if layout == "cuhk" else str(index)
        image_path = os.path.join(images_dir, stem + ".jpg")
        photo = Image.fromarray(image)
        files.atomic_write(
            image_path, lambda tmp: photo.save(tmp, format="JPEG", quality=95)
        )
        if layout == "cuhk":
            mask_path = os.path.join(masks_dir, stem + ".png")
            image_io.save_png(mask_path, mask * 255)
        else:
            mask_path = os.path.join(masks_dir, stem + ".bmp")
            sharp_white = Image.fromarray(((1.0 - mask) * 255).astype(np.uint8))
            files.atomic_write(
                mask_path, lambda tmp: sharp_white.save(tmp, format="BMP")
            )
        pairs.append(data.Pair(image_path, mask_path, stem))
    return sorted(pairs, key=lambda p: p.stem)
