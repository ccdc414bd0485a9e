"""The `tf.data` pipelines of image/mask pairs, for training and evaluation.

The usual flow (pairs from `keras_defusion.data.pairs`):

    train = make_dataset(train_pairs, 320, 4, training=True, seed=0)
    val = make_dataset(val_pairs, 320, 4, training=False)

Elements are `(images, masks)`: images float32 [B, S, S, 3] RGB in 0..255 (not
normalised; the model preprocesses inside its graph), masks float32
[B, S, S, 1] in {0, 1} with 1 = blurred.
"""

import numpy as np
import tensorflow as tf

from keras_defusion.data.augmentation import DEFAULT_RESIZE_METHODS
from keras_defusion.data.augmentation import Photometric
from keras_defusion.data.augmentation import SyntheticDefocus
from keras_defusion.data.augmentation import ROTATION_BORDERS
from keras_defusion.data.augmentation import _finish
from keras_defusion.data.augmentation import _make_augment
from keras_defusion.data.augmentation import _resize_square
from keras_defusion.data.augmentation import _split
from keras_defusion.data.augmentation import check_resize_methods
from keras_defusion.data.pairs import _load_pair
from keras_defusion.data.pairs import load_pairs
from keras_defusion.data.pairs import validate_pairs
from keras_defusion.data.teacher import load_teacher_maps
from keras_defusion.errors import DataError
from keras_defusion.io import images as image_io


def make_dataset(
    pairs,
    image_size,
    batch_size,
    *,
    training,
    polarity="blur-white",
    seed=None,
    cache=True,
    num_threads=None,
    max_rotation=15.0,
    scale_range=(1.0, 1.25),
    flip=True,
    rotation_border="crop",
    resize_methods=DEFAULT_RESIZE_METHODS,
    synthetic_defocus=None,
    photometric=None,
    repeat=None,
    drop_remainder=None,
    shard=None,
    teacher_maps=None,
    teacher_weight=0.5,
):
    """A `tf.data.Dataset` of `(images, masks)` batches from image/mask files.

    With `cache=True` (the default) every pair is decoded once, up front, by
    a thread pool through `image_io` and kept in memory as uint8 (CUHK's 604
    training pairs: about 0.65 GB, a few seconds); bad files raise one
    `DataError` before the dataset exists. With `cache=False` headers are
    checked up front and files are decoded on every use (for sets larger
    than memory).

    Training elements are augmented: a resize of the whole photo to a random
    square side S * scale (by a method drawn from `resize_methods`; the mask
    always antialiased bilinear), a random
    rotation in [-max_rotation, max_rotation] degrees, a random S x S window
    and a random horizontal mirror, identical for photo and mask, the mask
    re-binarised at 0.5. Evaluation elements are the whole photo resized to
    S x S (antialiased bilinear; mask re-binarised at 0.5).

    Args:
        pairs: a list of `Pair` (from `find_pairs`).
        image_size: side S of the square output, in pixels.
        batch_size: batch size (the global batch under `tf.distribute`, or
            the per-worker one when `shard` is set).
        training: augment and shuffle (True), or resize only, in the order
            of `pairs` (False).
        polarity: `"blur-white"` (CUHK) or `"sharp-white"` (DUT; flipped so
            that 1 = blurred).
        seed: integer seed of the shuffle and augmentation; None draws one.
            Shuffle and augmentation also depend on TensorFlow's global
            seed when one is set (`tf.random.set_seed`).
        cache: decode once into memory (True) or on every use (False).
        num_threads: decoding threads; None picks from the CPU count.
        max_rotation: largest rotation, degrees, below 45.
        scale_range: (low, high) zoom relative to S. With
            `rotation_border="crop"` zooms below 1 act as 1, and a rotation
            zooms in as far as its crop needs.
        flip: mirror left-right half of the time.
        rotation_border: `"crop"` (the window stays inside the rotated
            photo) or `"reflect"` (corners filled by reflection).
        resize_methods: the photo's resize for each training element is
            drawn uniformly from these (`RESIZE_METHODS`): "antialiased"
            (bilinear with antialiasing, what `detect` does), "bilinear"
            (without, as MediaPipe and `tf.image.resize` by default),
            "area", "nearest" and "bicubic".
        synthetic_defocus: a `SyntheticDefocus` (extra blurred regions,
            added to the masks) applied to training crops after the
            geometry; None: none.
        photometric: a `Photometric` (colour, noise, JPEG) applied to each
            training crop after the geometry and synthetic defocus; None: none.
        repeat: repeat forever; None means `training`. A non-repeating
            training set is reshuffled and re-augmented on each pass.
        drop_remainder: drop a last partial batch; None means `training`.
        shard: `(num_shards, index)` to keep one worker's share of the
            elements (e.g. from a `tf.distribute.InputContext`), taken after
            the shuffle, which every worker repeats identically.
        teacher_maps: a folder of a teacher model's maps of the photos
            (`keras_defusion.data.teacher`; training with `cache` only): each
            crop's target becomes `(1 - teacher_weight) * mask +
            teacher_weight * map`, the map cropped with the photo. None: the
            masks alone.
        teacher_weight: the map's share of the target, in (0, 1].

    Returns:
        The dataset; see the module docstring for the element structure.
    """
    image_io.check_polarity(polarity)
    if not pairs:
        raise DataError("no image/mask pairs")
    options = dict(
        training=training, seed=seed, max_rotation=max_rotation,
        scale_range=scale_range, flip=flip, rotation_border=rotation_border,
        resize_methods=resize_methods, synthetic_defocus=synthetic_defocus,
        photometric=photometric, repeat=repeat,
        drop_remainder=drop_remainder, shard=shard,
    )
    if teacher_maps is not None and not (training and cache):
        raise ValueError("teacher_maps are soft targets for training crops; they need "
                         "training=True and cache=True")
    if cache:
        images, masks = load_pairs(pairs, polarity, num_threads)
        teachers = None
        if teacher_maps is not None:
            teachers = load_teacher_maps(pairs, teacher_maps,
                                         [image.shape[:2] for image in images], num_threads)
        return dataset_from_arrays(images, masks, image_size, batch_size, teachers=teachers,
                                   teacher_weight=teacher_weight, **options)
    validate_pairs(pairs, decode=False, num_threads=num_threads)

    def fetch(index):
        problems, loaded = _load_pair(pairs[int(index)], polarity)
        if problems:  # A file went bad after the header check.
            raise DataError("; ".join(problems))
        return loaded

    return _build_dataset(fetch, len(pairs), image_size, batch_size, **options)


def dataset_from_arrays(
    images,
    masks,
    image_size,
    batch_size,
    *,
    training,
    seed=None,
    max_rotation=15.0,
    scale_range=(1.0, 1.25),
    flip=True,
    rotation_border="crop",
    resize_methods=DEFAULT_RESIZE_METHODS,
    synthetic_defocus=None,
    photometric=None,
    repeat=None,
    drop_remainder=None,
    shard=None,
    teachers=None,
    teacher_weight=0.5,
):
    """A `tf.data.Dataset` like `make_dataset`'s, over arrays in memory.

    Args:
        images: sequence of uint8 RGB arrays [H, W, 3] (sizes may differ).
        masks: sequence of arrays [H, W] or [H, W, 1] in {0, 1}, 1 = blurred,
            each the size of its image.
        image_size: side S of the square output.
        batch_size: batch size.
        training, seed, max_rotation, scale_range, flip, rotation_border,
        resize_methods, synthetic_defocus, photometric, repeat, drop_remainder,
        shard, teacher_weight: as in `make_dataset`.
        teachers: a teacher's maps, uint8 [H, W] or [H, W, 1] with 255 =
            blurred, each the size of its image (training only); None: none.

    Returns:
        The dataset.
    """
    if len(images) != len(masks) or not len(images):
        raise ValueError(
            f"need as many masks as images (and at least one), got "
            f"{len(images)} images and {len(masks)} masks"
        )
    images = [np.ascontiguousarray(image, dtype=np.uint8) for image in images]
    masks = [np.asarray(mask) for mask in masks]
    for i, (image, mask) in enumerate(zip(images, masks)):
        rgb = image.ndim == 3 and image.shape[-1] == 3
        if not rgb or image.shape[:2] != mask.shape[:2]:
            raise ValueError(
                f"pair {i}: image {image.shape} and mask {mask.shape} do not "
                f"match ([H, W, 3] and [H, W])"
            )
        if mask.size and (mask.min() < 0 or mask.max() > 1):
            raise ValueError(f"pair {i}: mask values must be in {{0, 1}}")
    masks = [mask.astype(np.uint8).reshape(mask.shape[:2] + (1,)) for mask in masks]
    if teachers is not None:
        teachers = _check_teachers(teachers, images, training, teacher_weight)

    def fetch(index):
        index = int(index)
        return images[index], masks[index]

    def fetch_teacher(index):
        return teachers[int(index)]

    return _build_dataset(
        fetch, len(images), image_size, batch_size, training=training, seed=seed,
        max_rotation=max_rotation, scale_range=scale_range, flip=flip,
        rotation_border=rotation_border, resize_methods=resize_methods,
        synthetic_defocus=synthetic_defocus, photometric=photometric, repeat=repeat,
        drop_remainder=drop_remainder, shard=shard,
        fetch_teacher=None if teachers is None else fetch_teacher,
        teacher_weight=teacher_weight,
    )


def _check_teachers(teachers, images, training, teacher_weight):
    if not training:
        raise ValueError("teachers are soft targets for training crops; "
                         "evaluation keeps the masks")
    if not 0 < teacher_weight <= 1:
        raise ValueError(f"teacher_weight must be in (0, 1], got {teacher_weight}")
    if len(teachers) != len(images):
        raise ValueError(f"need a teacher map per image, got {len(teachers)} maps "
                         f"for {len(images)} images")
    checked = []
    for i, (teacher, image) in enumerate(zip(teachers, images)):
        teacher = np.asarray(teacher)
        if teacher.dtype != np.uint8 or teacher.shape[:2] != image.shape[:2]:
            raise ValueError(f"pair {i}: teacher map {teacher.dtype} {teacher.shape} does "
                             f"not match image {image.shape} (uint8 [H, W])")
        checked.append(teacher.reshape(teacher.shape[:2] + (1,)))
    return checked


def _build_dataset(
    fetch,
    count,
    image_size,
    batch_size,
    *,
    training,
    seed,
    max_rotation,
    scale_range,
    flip,
    rotation_border,
    resize_methods,
    synthetic_defocus,
    photometric,
    repeat,
    drop_remainder,
    shard,
    fetch_teacher=None,
    teacher_weight=0.5,
):
    """Index dataset -> `fetch` (numpy) -> augment or resize -> batches."""
    size = _check_positive_int(image_size, "image_size")
    batch_size = _check_positive_int(batch_size, "batch_size")
    if rotation_border not in ROTATION_BORDERS:
        raise ValueError(
            f"rotation_border must be one of {ROTATION_BORDERS}, "
            f"got {rotation_border!r}"
        )
    scale_low, scale_high = (float(s) for s in scale_range)
    if not 0 < scale_low <= scale_high:
        raise ValueError(
            f"scale_range must be (low, high) with 0 < low <= high, "
            f"got {scale_range}"
        )
    resize_methods = check_resize_methods(resize_methods)
    photometric = photometric or Photometric()
    if not isinstance(photometric, Photometric):
        raise TypeError(f"photometric must be a Photometric or None, got {photometric!r}")
    synthetic_defocus = synthetic_defocus or SyntheticDefocus()
    if not isinstance(synthetic_defocus, SyntheticDefocus):
        raise TypeError(
            f"synthetic_defocus must be a SyntheticDefocus or None, got {synthetic_defocus!r}")
    if not 0 <= max_rotation < 45:
        raise ValueError(
            f"max_rotation must be in [0, 45) degrees, got {max_rotation}"
        )
    if shard is not None:
        num_shards, shard_index = (int(v) for v in shard)
        if not 0 <= shard_index < num_shards:
            raise ValueError(
                f"shard must be (num_shards, index) with "
                f"0 <= index < num_shards, got {shard}"
            )
    repeat = training if repeat is None else repeat
    drop_remainder = training if drop_remainder is None else drop_remainder
    per_pass = count if shard is None else count // num_shards
    if drop_remainder and not repeat and per_pass < batch_size:
        raise ValueError(
            f"{per_pass} pairs make no full batch of {batch_size} "
            f"(drop_remainder=True)"
        )

    def load(index):
        image, mask = tf.numpy_function(
            fetch, [index], [tf.uint8, tf.uint8], stateful=False
        )
        image.set_shape([None, None, 3])
        mask.set_shape([None, None, 1])
        channels = [tf.cast(image, tf.float32), tf.cast(mask, tf.float32)]
        if fetch_teacher is not None:
            teacher = tf.numpy_function(fetch_teacher, [index], tf.uint8, stateful=False)
            teacher.set_shape([None, None, 1])
            channels.append(tf.cast(teacher, tf.float32) / 255.0)
        return tf.concat(channels, axis=-1)

    indices = tf.data.Dataset.range(count)
    if training:
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        streams = np.random.SeedSequence(seed).generate_state(2)
        shuffle_seed, augment_seed = (int(s) for s in streams)
        indices = indices.shuffle(
            count, seed=shuffle_seed, reshuffle_each_iteration=True
        )
        if repeat:
            indices = indices.repeat()
        # Per-element seeds for stateless ops; new ones on each re-iteration
        # when the dataset does not repeat (one Keras epoch per pass).
        element_seeds = tf.data.Dataset.random(
            seed=augment_seed, rerandomize_each_iteration=True
        ).batch(2)
        dataset = tf.data.Dataset.zip(indices, element_seeds)
        if shard is not None:
            dataset = dataset.shard(num_shards, shard_index)
        augment = _make_augment(
            size, max_rotation, (scale_low, scale_high), flip, rotation_border,
            resize_methods, synthetic_defocus, photometric,
            None if fetch_teacher is None else float(teacher_weight),
        )
        dataset = dataset.map(
            lambda index, element_seed: augment(load(index), element_seed),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        if repeat:
            indices = indices.repeat()
        if shard is not None:
            indices = indices.shard(num_shards, shard_index)
        dataset = indices.map(
            lambda index: _split(_finish(_resize_square(load(index), size))),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _check_positive_int(value, name):
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


