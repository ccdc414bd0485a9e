"""Scoring blur maps against ground truth.

Two sources of maps are scored with the protocol of `keras_defusion.evaluation.metrics`:
folders of predicted maps (one folder per method, files paired with the
ground truth by file stem), and a detector run on a folder of photos.

Library use:
    results = evaluate_folders({"lbp": "maps/lbp"}, "CUHK/test")
    report = build_report(results, "CUHK/test")
    write_report("scores.json", report)    # keras_defusion.evaluation.report
    plot_curves(results, "plots")

The command line is `keras-defusion evaluate` (`keras_defusion.cli.evaluate`).
"""

import pathlib
import warnings

import numpy as np

from keras_defusion.errors import DataWarning
from keras_defusion.errors import EvaluationError
from keras_defusion.evaluation import metrics
from keras_defusion.io import images as image_io

# A map whose height / width is more than 2% from its mask's draws a warning.
MAX_ASPECT_DIFFERENCE = 0.02
# Mean |channel - grey| (0..255) above which an RGB map is a colour picture.
COLOUR_SPREAD = 4.0


def resolve_gt_dir(path):
    """The folder of masks: `path/gt` when `path` is a split folder, else `path`.

    Raises:
        EvaluationError: `path` is not a folder.
    """
    path = pathlib.Path(path)
    if (path / "gt").is_dir():
        return path / "gt"
    if path.is_dir():
        return path
    raise EvaluationError(f"{path}: ground-truth folder not found")


def images_dir_beside(gt_path):
    """`path/images` when `gt_path` is a split folder holding `gt/` and `images/`."""
    path = pathlib.Path(gt_path)
    if (path / "gt").is_dir() and (path / "images").is_dir():
        return path / "images"
    return None


def index_by_stem(folder):
    """Image files of `folder` (not recursive) grouped by stem.

    Returns:
        dict stem -> sorted list of paths (several when only the extension
        differs).

    Raises:
        EvaluationError: `folder` is not a folder.
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: folder not found")
    index = {}
    for entry in image_io.list_images(folder):
        index.setdefault(entry.stem, []).append(entry)
    return index


def gt_files(gt_dir):
    """Mask files of the ground-truth folder as a sorted dict stem -> path.

    Raises:
        EvaluationError: no mask, or two masks share a stem.
    """
    folder = resolve_gt_dir(gt_dir)
    index = index_by_stem(folder)
    if not index:
        raise EvaluationError(f"{folder}: no image files (ground-truth masks) found")
    clashes = [paths for paths in index.values() if len(paths) > 1]
    if clashes:
        listed = "; ".join(", ".join(str(p) for p in paths) for paths in clashes)
        raise EvaluationError(f"ground-truth masks sharing a stem: {listed}")
    return {stem: paths[0] for stem, paths in sorted(index.items())}


def pair_by_stem(masks, folder, what="prediction"):
    """Finds, for every mask, the file of `folder` with the same stem.

    Args:
        masks: dict stem -> mask path (from `gt_files`).
        folder: folder of maps or photos.
        what: word for the files in error messages.

    Returns:
        dict stem -> path in `folder`, in the order of `masks`.

    Raises:
        EvaluationError: listing every mask without a match, or with several.
    """
    index = index_by_stem(folder)
    missing = [stem for stem in masks if stem not in index]
    ambiguous = [index[stem] for stem in masks if len(index.get(stem, ())) > 1]
    problems = []
    if missing:
        names = ", ".join(masks[stem].name for stem in missing)
        problems.append(
            f"{folder}: no {what} for {len(missing)} of {len(masks)} "
            f"ground-truth files: {names}"
        )
    if ambiguous:
        names = "; ".join(", ".join(str(p) for p in paths) for paths in ambiguous)
        problems.append(f"{folder}: several {what} files for one stem: {names}")
    if problems:
        raise EvaluationError("\n".join(problems))
    return {stem: index[stem][0] for stem in masks}


def load_map(path, polarity="blur-white"):
    """Reads a predicted map as float32 [H, W] in [0, 1], 1 = blurred.

    8-bit files are divided by 255, 16-bit by 65535; `"sharp-white"` maps
    (high = sharp) are flipped. A colour image (a colour-mapped picture
    rather than a map) is read through its luminance, with a `DataWarning`.
    """
    image_io.check_polarity(polarity)
    image = image_io.open_image(path)
    if image.mode in ("RGB", "RGBA", "P"):
        rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
        spread = np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).mean()
        if spread > COLOUR_SPREAD:
            warnings.warn(
                f"{path}: a colour image, not a grey map (a colour-mapped panel?); read "
                "through its luminance, which is not the blur probability: score the "
                "grey maps (detect's maps/)", DataWarning, stacklevel=2)
    prediction = image_io.gray_values(image, path)  # decoded once
    return 1.0 - prediction if polarity == "sharp-white" else prediction


def check_aspect(prediction, gt, path):
    """Warns (`DataWarning`) when a map's aspect ratio is not its mask's: it
    is resized to the mask anyway, so a rotated or cropped map scores wrong."""
    (ph, pw), (gh, gw) = prediction.shape[:2], gt.shape[:2]
    if abs((ph / pw) / (gh / gw) - 1.0) > MAX_ASPECT_DIFFERENCE:
        warnings.warn(
            f"{path}: the map is {ph} x {pw} but its mask {gh} x {gw}, another aspect "
            "ratio (rotated or cropped?); resized to the mask anyway", DataWarning,
            stacklevel=2)


def _method_entry(accumulator, source, gt_polarity, pred_polarity):
    summary = accumulator.result()
    curves = {key: summary.pop(key) for key in ("thresholds", "precision", "recall", "f_measure")}
    protocol = metrics.protocol_description(accumulator.adaptive_factor, accumulator.beta2)
    protocol["gt_polarity"] = gt_polarity
    protocol["pred_polarity"] = pred_polarity
    protocol["images"] = summary["images"]
    entry = {"source": str(source)}
    entry.update(summary)
    entry["curves"] = curves
    entry["protocol"] = protocol
    entry["per_image"] = accumulator.per_image
    return entry


def _raise_unreadable(errors):
    if errors:
        listed = "\n  ".join(errors)
        raise EvaluationError(f"{len(errors)} unreadable file(s):\n  {listed}")


def evaluate_folders(
    pred_dirs,
    gt_dir,
    gt_polarity="blur-white",
    pred_polarity="blur-white",
    adaptive_factor=metrics.DEFAULT_ADAPTIVE_FACTOR,
):
    """Scores folders of predicted maps, one folder per method.

    Every method is paired with the ground truth before anything is scored,
    so a missing map fails fast. Each mask is read once for all methods.

    Args:
        pred_dirs: dict method name -> folder of maps (same stems as the masks).
        gt_dir: folder of masks, or a split folder holding `gt/`.
        gt_polarity: `"blur-white"` or `"sharp-white"` for the masks.
        pred_polarity: the same for the maps (some methods output high = sharp).
        adaptive_factor: factor of the adaptive threshold.

    Returns:
        dict method name -> scores (see `build_report` for the layout).

    Raises:
        EvaluationError: a map is missing or ambiguous (all named, before
            scoring) or a file is unreadable (all named, after reading the rest).
        ValueError: a bad polarity.
    """
    image_io.check_polarity(gt_polarity)
    image_io.check_polarity(pred_polarity)
    masks = gt_files(gt_dir)
    pairs = {}
    problems = []
    for name, folder in pred_dirs.items():
        try:
            pairs[name] = pair_by_stem(masks, folder)
        except EvaluationError as e:
            problems.append(str(e))
    if problems:
        raise EvaluationError("\n".join(problems))

    accumulators = {name: metrics.ScoreAccumulator(adaptive_factor) for name in pred_dirs}
    errors = []
    for stem, mask_path in masks.items():
        try:
            gt = image_io.load_mask(mask_path, gt_polarity)
        except image_io.ImageReadError as e:
            errors.append(str(e))
            continue
        for name, paired in pairs.items():
            try:
                prediction = load_map(paired[stem], pred_polarity)
            except image_io.ImageReadError as e:
                errors.append(str(e))
                continue
            if not errors:
                check_aspect(prediction, gt, paired[stem])
                accumulators[name].add(prediction, gt, name=stem)
    _raise_unreadable(errors)
    return {
        name: _method_entry(accumulators[name], pred_dirs[name], gt_polarity, pred_polarity)
        for name in pred_dirs
    }


def evaluate_folder(pred_dir, gt_dir, name=None, **kwargs):
    """Scores one folder of maps; `name` defaults to the folder's name.

    Keyword arguments are those of `evaluate_folders`.

    Returns:
        The method's scores (dict).
    """
    name = name or pathlib.Path(pred_dir).resolve().name
    return evaluate_folders({name: pred_dir}, gt_dir, **kwargs)[name]


def evaluate_detector(
    detector,
    images_dir,
    gt_dir,
    outputs=None,
    name="model",
    gt_polarity="blur-white",
    adaptive_factor=metrics.DEFAULT_ADAPTIVE_FACTOR,
    progress=None,
):
    """Runs a detector on photos and scores its maps.

    Args:
        detector: object with `detect(rgb_uint8, outputs=None)` returning a
            float map [H, W] (1 = blurred), or with `outputs="all"` a dict
            output name -> map.
        images_dir: folder of photos, paired with the masks by stem.
        gt_dir: folder of masks, or a split folder holding `gt/`.
        outputs: passed to `detect`; `"all"` scores every named output.
        name: method name when `detect` returns a single map.
        gt_polarity: polarity of the masks.
        adaptive_factor: factor of the adaptive threshold.
        progress: optional callable(done, total) called after each photo.

    Returns:
        dict method name -> scores; with `outputs="all"` one entry per output
        name ("fused", "step{t}_out{i}", ...).

    Raises:
        EvaluationError: a photo is missing (all named, before running) or
            unreadable (all named, after the rest), or the detector fails on
            a photo (named).
    """
    image_io.check_polarity(gt_polarity)
    masks = gt_files(gt_dir)
    photos = pair_by_stem(masks, images_dir, what="photo")
    accumulators = {}
    errors = []
    for done, (stem, mask_path) in enumerate(masks.items(), start=1):
        try:
            gt = image_io.load_mask(mask_path, gt_polarity)
            rgb = image_io.load_rgb(photos[stem])
        except image_io.ImageReadError as e:
            errors.append(str(e))
            continue
        if errors:
            continue  # Keep reading to name every bad file, but stop detecting.
        try:
            detected = detector.detect(rgb, outputs=outputs)
        except Exception as e:
            raise EvaluationError(f"{photos[stem]}: detector failed: {e}") from e
        if not isinstance(detected, dict):
            detected = {name: detected}
        for output_name, prediction in detected.items():
            if output_name not in accumulators:
                accumulators[output_name] = metrics.ScoreAccumulator(adaptive_factor)
            try:
                accumulators[output_name].add(prediction, gt, name=stem)
            except ValueError as e:
                raise EvaluationError(
                    f"{photos[stem]}: output {output_name!r} is not a usable map: {e}"
                ) from e
        if progress is not None:
            progress(done, len(masks))
    _raise_unreadable(errors)
    return {
        output_name: _method_entry(accumulator, images_dir, gt_polarity, "blur-white")
        for output_name, accumulator in accumulators.items()
    }


# --- command line -------------------------------------------------------------
