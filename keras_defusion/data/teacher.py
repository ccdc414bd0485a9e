"""A teacher's blur maps as soft training targets (distillation).

A teacher is any model `keras-defusion detect` runs; its maps of the training
photos (`detect TRAIN/images --out DIR` writes them to `DIR/maps`, white =
blurred, at each photo's size) are matched to the pairs by file stem, and
each training crop's target becomes `(1 - w) * mask + w * teacher map`.
"""

import os

import numpy as np

from keras_defusion.data.pairs import _map_threads
from keras_defusion.data.pairs import _raise_problems
from keras_defusion.errors import DataError
from keras_defusion.io import images as image_io

MAPS_SUBFOLDER = "maps"


def teacher_maps_dir(folder):
    """The folder holding the maps: `folder/maps` when `detect --out folder`
    made it, else `folder` itself."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: no such folder of teacher maps; make one with "
                        "`keras-defusion detect TRAIN/images --model TEACHER --out DIR`")
    inner = os.path.join(folder, MAPS_SUBFOLDER)
    return inner if os.path.isdir(inner) else folder


def load_teacher_maps(pairs, folder, sizes, num_threads=None):
    """Reads the teacher's map of every pair's photo, by file stem.

    Args:
        pairs: a list of `Pair` (the training split).
        folder: the maps (see `teacher_maps_dir`).
        sizes: each pair's photo size, (height, width), as decoded.
        num_threads: decoding threads; None picks from the CPU count.

    Returns:
        A list of uint8 arrays [H, W, 1], 0..255 with 255 = blurred, each the
        size of its photo.

    Raises:
        DataError: a pair has no map, or one that cannot be read or has
            another size than its photo, all of them listed.
    """
    folder = teacher_maps_dir(folder)
    by_stem = {}
    for path in image_io.list_images(folder):
        by_stem.setdefault(os.path.splitext(os.path.basename(path))[0], path)

    def load(pair_and_size):
        pair, (height, width) = pair_and_size
        path = by_stem.get(pair.stem)
        if path is None:
            return [f"{pair.image_path}: no teacher map named {pair.stem}.* in {folder}; "
                    "run the teacher over every training photo"], None
        try:
            values = image_io.load_gray_float(path)
        except image_io.ImageReadError as e:
            return [str(e)], None
        if values.shape != (height, width):
            return [f"{path}: {values.shape[1]} x {values.shape[0]} px, but its photo "
                    f"{pair.image_path} is {width} x {height}; write the maps at the "
                    "photos' size, as `keras-defusion detect` does"], None
        return [], np.round(values * 255.0).astype(np.uint8)[..., None]

    results = _map_threads(load, list(zip(pairs, sizes)), num_threads)
    _raise_problems(pairs, [problems for problems, _ in results])
    return [loaded for _, loaded in results]
