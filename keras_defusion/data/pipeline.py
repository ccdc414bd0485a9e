"""Image/mask pairs for training and evaluation: discovery, checks, `tf.data`.

The usual flow:

    pairs = find_pairs("data/CUHK/train")  # pair files by stem
    validate_pairs(pairs)              # one DataError names all bad files
    train_pairs, val_pairs = split_pairs(pairs, 0.1, seed=0)
    train = make_dataset(train_pairs, 320, 4, training=True, seed=0)
    val = make_dataset(val_pairs, 320, 4, training=False)

Elements are `(images, masks)`: images float32 [B, S, S, 3] RGB in 0..255 (not
normalised; the model preprocesses inside its graph), masks float32
[B, S, S, 1] in {0, 1} with 1 = blurred.
"""

import concurrent.futures
import dataclasses
import math
import os
import warnings

import numpy as np
import tensorflow as tf
from PIL import Image

from keras_defusion.errors import DataError
from keras_defusion.io import images as image_io

LAYOUTS = ("auto", "cuhk", "dut")
ROTATION_BORDERS = ("crop", "reflect")
# How a photo can be downscaled before it reaches the network. Phone runtimes
# (MediaPipe's ImageSegmenter), `tf.image.resize`'s default and OpenCV's
# INTER_LINEAR sample without antialiasing; training on all of them makes the
# maps independent of the caller's choice (README, "Phones").
RESIZE_METHODS = ("antialiased", "bilinear", "area", "nearest", "bicubic")
DEFAULT_RESIZE_METHODS = ("antialiased",)

# Folder names recognised by the "dut" layout (compared case-insensitively).
# DUT-DBD copies ship as `source/` + `gt/`, `dut500-source/` + `dut500-gt/` or
# `images/` + `masks/`.
_IMAGE_FOLDER_NAMES = ("images", "image", "imgs", "img", "source", "sources")
_MASK_FOLDER_NAMES = ("gt", "gts", "masks", "mask", "groundtruth", "ground_truth")
_EXIF_ORIENTATION = 0x0112
_EXIF_SWAPS_AXES = (5, 6, 7, 8)


@dataclasses.dataclass(frozen=True)
class Pair:
    """A photo and its ground-truth mask, matched by file stem.

    Attributes:
        image_path: the photo, or None when only a mask has this stem.
        mask_path: the mask, or None when only a photo has this stem.
        stem: the file name both share, without extension.
    """

    image_path: str | None
    mask_path: str | None
    stem: str

    @property
    def complete(self):
        """Whether both files are present."""
        return self.image_path is not None and self.mask_path is not None


# --------------------------------------------------------------------------
# Discovery


def find_pairs(data_dir=None, layout="auto", *, images_dir=None, masks_dir=None):
    """Pairs photos with masks by file stem (extension and its case ignored).

    Layouts:
        "cuhk": `data_dir/images/` and `data_dir/gt/` (CUHK, Shi et al.).
        "dut": one photo folder and one mask folder under `data_dir`, e.g.
            `source/1.jpg` with `gt/1.bmp` or `dut500-source/` with
            `dut500-gt/`. DUT masks are white = sharp: load them with
            `polarity="sharp-white"`.
        "auto": "cuhk" when `images/` and `gt/` exist, else "dut".
    `images_dir` and `masks_dir`, given together, override the layout.

    Hidden files (names starting with ".") and non-image files are ignored.
    A stem without its partner is returned as a `Pair` with `None` in place
    of the missing file, so `validate_pairs` can report it with the rest.

    Args:
        data_dir: folder holding the photo and mask folders.
        layout: one of `LAYOUTS`.
        images_dir: explicit photo folder.
        masks_dir: explicit mask folder.

    Returns:
        A list of `Pair`, sorted by stem.

    Raises:
        DataError: folders not found, no images at all, or two files in one
            folder sharing a stem (e.g. `a.jpg` and `a.png`).
    """
    images_dir, masks_dir = _resolve_folders(
        data_dir, layout, images_dir, masks_dir
    )
    duplicates = []
    images = _files_by_stem(images_dir, duplicates)
    masks = _files_by_stem(masks_dir, duplicates)
    if duplicates:
        raise DataError(
            "several files share a stem, so the pairing is ambiguous:\n"
            + "\n".join(f"  - {d}" for d in duplicates)
        )
    if not images and not masks:
        raise DataError(f"no image files in {images_dir} or {masks_dir}")
    stems = sorted(set(images) | set(masks))
    return [Pair(images.get(s), masks.get(s), s) for s in stems]


def _resolve_folders(data_dir, layout, images_dir, masks_dir):
    if (images_dir is None) != (masks_dir is None):
        raise ValueError("give both images_dir and masks_dir, or neither")
    if images_dir is not None:
        folders = (os.fspath(images_dir), os.fspath(masks_dir))
    else:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if data_dir is None:
            raise ValueError("give data_dir, or images_dir and masks_dir")
        data_dir = os.fspath(data_dir)
        if not os.path.isdir(data_dir):
            raise DataError(f"{data_dir}: no such folder")
        subfolders = {
            name.lower(): os.path.join(data_dir, name)
            for name in sorted(os.listdir(data_dir))
            if os.path.isdir(os.path.join(data_dir, name))
        }
        cuhk = subfolders.get("images"), subfolders.get("gt")
        if layout == "cuhk" or (layout == "auto" and all(cuhk)):
            if not all(cuhk):
                raise DataError(
                    f"{data_dir}: the CUHK layout needs images/ and gt/ folders"
                )
            folders = cuhk
        else:
            folders = _dut_folders(data_dir, subfolders)
    for folder in folders:
        if not os.path.isdir(folder):
            raise DataError(f"{folder}: no such folder")
    return folders


def _dut_folders(data_dir, subfolders):
    image_like = [
        path
        for name, path in subfolders.items()
        if name in _IMAGE_FOLDER_NAMES or name.endswith("source")
    ]
    mask_like = [
        path
        for name, path in subfolders.items()
        if name in _MASK_FOLDER_NAMES or name.endswith("gt")
    ]
    if len(image_like) != 1 or len(mask_like) != 1:
        found = ", ".join(sorted(subfolders)) or "none"
        raise DataError(
            f"{data_dir}: cannot tell the photo folder from the mask folder "
            f"(sub-folders: {found}); expected images/ + gt/ (CUHK) or one of "
            f"{_IMAGE_FOLDER_NAMES} (or *source) with one of "
            f"{_MASK_FOLDER_NAMES} (or *gt); or pass images_dir and masks_dir"
        )
    return image_like[0], mask_like[0]


def _files_by_stem(folder, duplicates):
    by_stem = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(".") or not image_io.is_image_file(name):
            continue
        if os.path.isdir(path):
            continue
        stem = os.path.splitext(name)[0]
        if stem in by_stem:
            duplicates.append(f"{by_stem[stem]} and {path}")
            continue
        by_stem[stem] = path
    return by_stem


def split_pairs(pairs, val_fraction, seed=0):
    """Splits pairs into (train, val) deterministically.

    The split depends only on the stems, `val_fraction` and `seed`, not on
    the order of `pairs`. Both lists come back sorted by stem.

    Args:
        pairs: a list of `Pair`.
        val_fraction: share of pairs for validation, in [0, 1). A positive
            fraction gives at least one validation pair.
        seed: integer seed of the shuffle.

    Returns:
        `(train_pairs, val_pairs)`.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ordered = sorted(pairs, key=lambda p: p.stem)
    num_val = int(round(len(ordered) * val_fraction))
    if val_fraction > 0 and len(ordered) > 1:
        num_val = min(max(num_val, 1), len(ordered) - 1)
    order = np.random.default_rng(seed).permutation(len(ordered))
    val_indices = set(order[:num_val].tolist())
    train = [p for i, p in enumerate(ordered) if i not in val_indices]
    val = [p for i, p in enumerate(ordered) if i in val_indices]
    return train, val


# --------------------------------------------------------------------------
# Checks and loading


def validate_pairs(pairs, *, decode=True, num_threads=None):
    """Checks every pair; raises one `DataError` naming every bad file.

    Problems found: a photo without a mask, a mask without a photo, an empty
    (0-byte), missing or unreadable file, and a photo whose size (after its
    EXIF orientation, as `image_io.load_rgb` applies it) differs from its
    mask's. With `decode=True` every file is fully decoded, which also
    catches truncated or corrupt data (about 2 s for CUHK's 604 training
    pairs on 2 cores); `decode=False` reads headers only.

    Args:
        pairs: a list of `Pair` (from `find_pairs`).
        decode: decode whole files rather than read headers.
        num_threads: decoding threads; None picks from the CPU count.

    Returns:
        `pairs`, unchanged, for chaining.

    Raises:
        DataError: at least one problem, all of them listed in the message.
    """
    if not pairs:
        raise DataError("no image/mask pairs to check")
    check = _check_decoded if decode else _check_headers
    results = _map_threads(check, pairs, num_threads)
    _raise_problems(pairs, [problems for problems, _ in results])
    return pairs


def _raise_problems(pairs, problems_per_pair):
    problems = [p for pair_problems in problems_per_pair for p in pair_problems]
    if not problems:
        return
    bad = sum(1 for pair_problems in problems_per_pair if pair_problems)
    raise DataError(
        f"{len(problems)} problem(s) in {bad} of {len(pairs)} image/mask "
        f"pairs:\n" + "\n".join(f"  - {p}" for p in problems)
    )


def _map_threads(fn, items, num_threads):
    # PIL releases the GIL while decoding, so threads scale with the cores.
    workers = num_threads or min(8, (os.cpu_count() or 1) + 2)
    if workers == 1 or len(items) < 4:
        return [fn(item) for item in items]
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def _missing_partner(pair):
    if pair.image_path is None and pair.mask_path is None:
        return [f"{pair.stem}: neither a photo nor a mask"]
    if pair.image_path is None:
        return [
            f"{pair.mask_path}: mask without a photo "
            f"(no photo named {pair.stem}.*)"
        ]
    if pair.mask_path is None:
        return [
            f"{pair.image_path}: photo without a mask "
            f"(no mask named {pair.stem}.*)"
        ]
    return []


def _size_problem(pair, image_hw, mask_hw):
    if tuple(image_hw) == tuple(mask_hw):
        return []
    return [
        f"{pair.image_path}: photo is {image_hw[1]}x{image_hw[0]} (WxH) but "
        f"its mask {pair.mask_path} is {mask_hw[1]}x{mask_hw[0]}"
    ]


def _check_headers(pair):
    problems = _missing_partner(pair)
    if problems:
        return problems, None
    sizes = []
    for path, apply_exif in ((pair.image_path, True), (pair.mask_path, False)):
        try:
            sizes.append(_header_hw(path, apply_exif))
        except image_io.ImageReadError as e:
            problems.append(str(e))
    if not problems:
        problems = _size_problem(pair, *sizes)
    return problems, None


def _header_hw(path, apply_exif):
    """(height, width) from the file header, EXIF orientation optionally applied."""
    if not os.path.isfile(path):
        raise image_io.ImageReadError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise image_io.ImageReadError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > image_io.MAX_IMAGE_PIXELS:
                    raise image_io.ImageReadError(
                        f"{path}: {width}x{height} pixels is over the limit of "
                        f"{image_io.MAX_IMAGE_PIXELS}"
                    )
                orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except image_io.ImageReadError:
        raise
    except Exception as e:  # Pillow raises many types on corrupt headers.
        raise image_io.ImageReadError(
            f"{path}: not a readable image ({e})"
        ) from None
    if width == 0 or height == 0:
        raise image_io.ImageReadError(f"{path}: image has no pixels")
    if apply_exif and orientation in _EXIF_SWAPS_AXES:
        width, height = height, width
    return height, width


def _load_pair(pair, polarity):
    """Decodes one pair.

    Returns:
        `(problems, loaded)`: a list of messages, and `(image, mask)` (uint8
        [H, W, 3] and uint8 {0, 1} [H, W, 1]) or None when there are problems.
    """
    problems = _missing_partner(pair)
    if problems:
        return problems, None
    image = mask = None
    try:
        image = image_io.load_rgb(pair.image_path)
    except image_io.ImageReadError as e:
        problems.append(str(e))
    try:
        mask = image_io.load_mask(pair.mask_path, polarity)
    except image_io.ImageReadError as e:
        problems.append(str(e))
    if problems:
        return problems, None
    problems = _size_problem(pair, image.shape[:2], mask.shape)
    if problems:
        return problems, None
    return [], (image, mask.astype(np.uint8)[..., None])


def _check_decoded(pair):
    problems, _ = _load_pair(pair, "blur-white")
    return problems, None


def load_pairs(pairs, polarity="blur-white", num_threads=None):
    """Decodes all pairs into memory with a thread pool.

    Args:
        pairs: a list of `Pair`.
        polarity: mask polarity, one of `image_io.POLARITIES`.
        num_threads: decoding threads; None picks from the CPU count.

    Returns:
        `(images, masks)`: lists of uint8 arrays, images [H, W, 3] RGB and
        masks [H, W, 1] in {0, 1} with 1 = blurred.

    Raises:
        DataError: any bad pair, all of them listed.
    """
    image_io.check_polarity(polarity)
    if not pairs:
        raise DataError("no image/mask pairs to load")
    results = _map_threads(lambda p: _load_pair(p, polarity), pairs, num_threads)
    _raise_problems(pairs, [problems for problems, _ in results])
    return [r[1][0] for r in results], [r[1][1] for r in results]


# --------------------------------------------------------------------------
# tf.data


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
    repeat=None,
    drop_remainder=None,
    shard=None,
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
        repeat: repeat forever; None means `training`. A non-repeating
            training set is reshuffled and re-augmented on each pass.
        drop_remainder: drop a last partial batch; None means `training`.
        shard: `(num_shards, index)` to keep one worker's share of the
            elements (e.g. from a `tf.distribute.InputContext`), taken after
            the shuffle, which every worker repeats identically.

    Returns:
        The dataset; see the module docstring for the element structure.
    """
    image_io.check_polarity(polarity)
    if not pairs:
        raise DataError("no image/mask pairs")
    options = dict(
        training=training, seed=seed, max_rotation=max_rotation,
        scale_range=scale_range, flip=flip, rotation_border=rotation_border,
        resize_methods=resize_methods, repeat=repeat,
        drop_remainder=drop_remainder, shard=shard,
    )
    if cache:
        images, masks = load_pairs(pairs, polarity, num_threads)
        return dataset_from_arrays(images, masks, image_size, batch_size, **options)
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
    repeat=None,
    drop_remainder=None,
    shard=None,
):
    """A `tf.data.Dataset` like `make_dataset`'s, over arrays in memory.

    Args:
        images: sequence of uint8 RGB arrays [H, W, 3] (sizes may differ).
        masks: sequence of arrays [H, W] or [H, W, 1] in {0, 1}, 1 = blurred,
            each the size of its image.
        image_size: side S of the square output.
        batch_size: batch size.
        training, seed, max_rotation, scale_range, flip, rotation_border,
        resize_methods, repeat, drop_remainder, shard: as in `make_dataset`.

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

    def fetch(index):
        index = int(index)
        return images[index], masks[index]

    return _build_dataset(
        fetch, len(images), image_size, batch_size, training=training, seed=seed,
        max_rotation=max_rotation, scale_range=scale_range, flip=flip,
        rotation_border=rotation_border, resize_methods=resize_methods,
        repeat=repeat, drop_remainder=drop_remainder, shard=shard,
    )


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
    repeat,
    drop_remainder,
    shard,
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
        return tf.concat(
            [tf.cast(image, tf.float32), tf.cast(mask, tf.float32)], axis=-1
        )

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
            resize_methods,
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


def check_resize_methods(methods):
    """`methods` as a tuple, if it is a non-empty selection of `RESIZE_METHODS`."""
    methods = tuple(methods)
    unknown = [m for m in methods if m not in RESIZE_METHODS]
    if not methods or unknown:
        raise ValueError(
            f"resize_methods must be a non-empty selection of {RESIZE_METHODS}, "
            f"got {list(methods)}"
        )
    return methods


def _check_positive_int(value, name):
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _resize_square(stacked, side):
    """Resizes [H, W, 4] (RGB + mask) to [side, side, 4], antialiased bilinear."""
    return resize_photo(stacked, side, "antialiased")


def _finish(stacked):
    """Clips RGB to 0..255 and re-binarises the mask channel at 0.5."""
    image = tf.clip_by_value(stacked[..., :3], 0.0, 255.0)
    mask = tf.cast(stacked[..., 3:] >= 0.5, tf.float32)
    return tf.concat([image, mask], axis=-1)


def _split(stacked):
    return stacked[..., :3], stacked[..., 3:]


def resize_photo(image, side, method):
    """Resizes [H, W, C] to [side, side, C] by a `RESIZE_METHODS` name."""
    size = tf.stack([side, side])
    if method == "antialiased":
        return tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.image.resize(image, size, method=method)


def _resize_random(stacked, side, methods, seed):
    """`_resize_square` with the photo resized by a method drawn from `methods`."""
    if methods == ("antialiased",):
        return _resize_square(stacked, side)
    mask = _resize_square(stacked[..., 3:], side)
    index = tf.random.stateless_uniform([], seed, 0, len(methods), dtype=tf.int32)
    branches = [
        (lambda method=method: resize_photo(stacked[..., :3], side, method))
        for method in methods
    ]
    photo = tf.switch_case(index, branches)
    return tf.concat([photo, mask], axis=-1)


def _make_augment(size, max_rotation, scale_range, flip, rotation_border, resize_methods):
    """Builds the per-element training transform (see `make_dataset`).

    Photo and mask travel as one [H, W, 4] tensor, so every geometric step is
    the same for both. Steps: one resize of the whole photo to a random square
    side n = S * scale, by a method drawn from `resize_methods`; then a single
    projective warp that rotates by a random angle about the centre, takes an
    S x S window at a random integer offset and mirrors it (bilinear
    sampling); last the mask is
    re-binarised at 0.5. With `rotation_border="crop"` the window stays inside
    the rotated photo (n is raised as far as needed, so large angles zoom in);
    with `"reflect"` the corners are filled by reflection.
    """
    max_angle = math.radians(max_rotation)
    scale_low, scale_high = scale_range
    crop = rotation_border == "crop"
    side = float(size)

    def augment(stacked, element_seed):
        seeds = tf.random.experimental.stateless_split(element_seed, num=4)
        angle = tf.random.stateless_uniform([], seeds[0], -max_angle, max_angle)
        scale = tf.random.stateless_uniform([], seeds[1], scale_low, scale_high)
        mirror = tf.random.stateless_uniform([], seeds[2]) < 0.5
        if not flip:
            mirror = tf.constant(False)
        position = tf.random.stateless_uniform([2], seeds[3])

        cos, sin = tf.cos(angle), tf.sin(angle)
        # Side of the largest axis-aligned square inside a square rotated by
        # `angle`, as a fraction of that square's side (pixel-centre spans).
        fit = cos + tf.abs(sin)
        n = side * scale
        if crop:
            n = tf.maximum(n, 1.0 + (side - 1.0) * fit)
            n = tf.math.ceil(n - 1e-4)
        else:
            n = tf.maximum(tf.round(n), 1.0)
        resize_seed = tf.random.experimental.stateless_fold_in(element_seed, 4)
        resized = _resize_random(
            stacked, tf.cast(n, tf.int32), resize_methods, resize_seed
        )

        center = (n - 1.0) / 2.0
        if crop:
            half = (n - 1.0) / (2.0 * fit)
            low, high = center - half, center + half - (side - 1.0)
        else:
            low = tf.minimum(0.0, (n - side) / 2.0)
            high = tf.maximum(n - side, (n - side) / 2.0)
        offset = tf.round(low + position * (high - low))
        offset_x, offset_y = offset[0], offset[1]

        # Output pixel (x, y) -> window point u = fx*x + tx + offset_x,
        # v = y + offset_y -> rotated about the centre into the resized photo.
        fx = tf.where(mirror, -1.0, 1.0)
        tx = tf.where(mirror, side - 1.0, 0.0)
        du = tx + offset_x - center
        dv = offset_y - center
        transform = tf.stack([
            cos * fx, -sin, cos * du - sin * dv + center,
            sin * fx, cos, sin * du + cos * dv + center,
            0.0, 0.0,
        ])[None]
        warped = tf.raw_ops.ImageProjectiveTransformV3(
            images=resized[None],
            transforms=transform,
            output_shape=tf.constant([size, size], tf.int32),
            fill_value=0.0,
            interpolation="BILINEAR",
            # "crop" never samples outside but for rounding at the very edge.
            fill_mode="NEAREST" if crop else "REFLECT",
        )[0]
        warped.set_shape([size, size, 4])
        return _split(_finish(warped))

    return augment
