"""Scoring blur maps against ground truth, and `keras-defusion evaluate`.

Two sources of maps are scored with the protocol of `keras_defusion.evaluation.metrics`:
folders of predicted maps (one folder per method, files paired with the
ground truth by file stem), and a detector run on a folder of photos.

Library use:
    results = evaluate_folders({"lbp": "maps/lbp"}, "CUHK/test")
    report = build_report(results, "CUHK/test")
    write_json(report, "scores.json")
    plot_curves(results, "plots")
"""

import argparse
import os
import pathlib
import sys

import numpy as np

from keras_defusion.errors import EvaluationError
from keras_defusion.evaluation import metrics
from keras_defusion.io import images as image_io

PR_PLOT_NAME = "pr_curves.png"
F_PLOT_NAME = "f_measure_curves.png"


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
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and image_io.is_image_file(entry):
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
    (high = sharp) are flipped.
    """
    image_io.check_polarity(polarity)
    prediction = image_io.load_gray_float(path)
    return 1.0 - prediction if polarity == "sharp-white" else prediction


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


def build_report(results, gt_dir, extra=None):
    """The JSON document of one run.

    Layout: {"tool", "version", "ground_truth", "methods": {name: {"source",
    "images", "mae", "max_f", "max_f_threshold", "f_at_0.5", "adaptive_f",
    "iou_at_0.5", "curves": {"thresholds", "precision", "recall",
    "f_measure"}, "protocol": {...}, "per_image": {stem: {...}}}}}.
    """
    from keras_defusion.version import __version__

    report = {
        "tool": "keras-defusion evaluate",
        "version": __version__,
        "ground_truth": str(resolve_gt_dir(gt_dir)),
    }
    report.update(extra or {})
    report["methods"] = results
    return report


def write_json(document, path):
    """Writes `document` as indented JSON, atomically."""
    image_io.write_json(path, document, indent=1, allow_nan=False)


def plot_curves(results, plots_dir, title=None):
    """PNG plots of the PR and F-measure curves, all methods on each figure.

    Args:
        results: dict method name -> scores (from an evaluate function).
        plots_dir: output folder (created).
        title: optional figure title suffix (e.g. the dataset).

    Returns:
        (pr_path, f_path).
    """
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state.

    plots_dir = pathlib.Path(plots_dir)
    pr_path = plots_dir / PR_PLOT_NAME
    f_path = plots_dir / F_PLOT_NAME
    small_legend = len(results) > 8
    for path, kind in ((pr_path, "pr"), (f_path, "f")):
        figure = Figure(figsize=(6.4, 5.2), dpi=120)
        axes = figure.add_subplot()
        for name, entry in results.items():
            curves = entry["curves"]
            if kind == "pr":
                label = f"{name} (max-F {entry['max_f']:.3f})"
                axes.plot(curves["recall"], curves["precision"], label=label, linewidth=1.4)
            else:
                label = f"{name} (max-F {entry['max_f']:.3f})"
                axes.plot(np.arange(len(curves["f_measure"])), curves["f_measure"],
                          label=label, linewidth=1.4)
        if kind == "pr":
            axes.set_xlabel("recall")
            axes.set_ylabel("precision")
            axes.set_xlim(0, 1)
            heading = "Precision-recall (blur = positive)"
        else:
            axes.set_xlabel("threshold (x 1/255)")
            axes.set_ylabel("F-measure (beta^2 = 0.3)")
            axes.set_xlim(0, 255)
            heading = "F-measure over thresholds"
        axes.set_ylim(0, 1.02)
        axes.grid(True, alpha=0.3)
        axes.set_title(f"{heading}{' - ' + title if title else ''}", fontsize=10)
        axes.legend(fontsize=6 if small_legend else 8, loc="lower left",
                    ncol=2 if small_legend else 1)
        figure.tight_layout()
        image_io.atomic_write(path, lambda tmp, fig=figure: fig.savefig(tmp, format="png"))
    return pr_path, f_path


def format_table(results):
    """A plain-text table of the headline numbers, one line per method."""
    width = max([len("method")] + [len(name) for name in results])
    lines = [
        f"{'method':<{width}}  images  max-F (thr)     F@0.5   adaptF  MAE     IoU@0.5"
    ]
    for name, entry in results.items():
        lines.append(
            f"{name:<{width}}  {entry['images']:>6}  {entry['max_f']:.4f} ({entry['max_f_threshold']:.3f})"
            f"  {entry['f_at_0.5']:.4f}  {entry['adaptive_f']:.4f}  {entry['mae']:.4f}"
            f"  {entry['iou_at_0.5']:.4f}"
        )
    return "\n".join(lines)


def parse_pred_spec(spec):
    """`[NAME=]DIR` -> (name, dir); the name defaults to the folder's name.

    A value that is itself an existing folder is taken as a folder even if it
    contains "=".
    """
    if "=" in spec and not os.path.isdir(spec):
        name, folder = spec.split("=", 1)
        if not name or not folder:
            raise EvaluationError(f"--pred {spec!r}: expected NAME=DIR or DIR")
        return name, folder
    return pathlib.Path(spec).resolve().name or spec, spec


def model_method_name(source):
    """The method name of `--model SOURCE` in the scores.

    A SavedModel version folder (`serving/defusionnet/1`) or a serving base
    folder is named after its model folder (`defusionnet`), another folder by
    its own name, a file by its stem (a shipped-form weights file by its
    folder), and a registered pretrained name by that name.
    """
    from keras_defusion.models import pretrained

    text = str(source)
    path = pathlib.Path(text).expanduser()
    if not path.exists():
        if text in pretrained.PRETRAINED_MODELS:
            return text
        return path.stem or text or "model"
    path = path.resolve()
    if path.is_dir():
        try:
            from keras_defusion.inference.detector import find_saved_model_dir

            found = pathlib.Path(find_saved_model_dir(path))
        except Exception:  # not a SavedModel layout: a shipped-form folder
            found = None
        if found is not None and found.name.isdigit() and found.parent.name:
            return found.parent.name
        return path.name or "model"
    if path.name == pretrained.WEIGHTS_FILE and path.parent.name:
        return path.parent.name
    return path.stem or "model"


# --- command line -------------------------------------------------------------


def add_arguments(parser):
    """Adds the `evaluate` options to an argparse parser."""
    parser.description = (
        "Score defocus blur maps like DeFusionNet (CVPR 2019, section 4.2): "
        "MAE, max-F, F at 0.5, adaptive F, IoU at 0.5, PR and F-measure "
        "curves (blur = positive class, beta^2 = 0.3)."
    )
    parser.add_argument(
        "--gt", required=True, metavar="DIR",
        help="ground-truth masks: a split folder holding gt/ (and images/), "
        "e.g. CUHK/test, or a folder of masks directly",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--pred", action="append", metavar="[NAME=]DIR",
        help="folder of predicted maps, files named like the masks (any image "
        "extension); repeat for several methods; NAME defaults to the folder name",
    )
    source.add_argument(
        "--model", metavar="PATH",
        help="a trained model (anything keras_defusion.inference.detector.load_detector loads)",
    )
    parser.add_argument(
        "--images", metavar="DIR",
        help="photos for --model (default: the images/ folder beside gt/)",
    )
    parser.add_argument(
        "--gt-polarity", choices=image_io.POLARITIES, default="blur-white",
        help="blur-white: white = blurred (CUHK, default); sharp-white: white = sharp (DUT)",
    )
    parser.add_argument(
        "--pred-polarity", choices=image_io.POLARITIES, default="blur-white",
        help="polarity of the --pred maps (sharp-white for methods that output high = sharp)",
    )
    parser.add_argument(
        "--outputs", choices=("all",),
        help="with --model: score every named output (fused, step{t}_out{i})",
    )
    parser.add_argument(
        "--adaptive-factor", type=float, default=metrics.DEFAULT_ADAPTIVE_FACTOR, metavar="F",
        help="adaptive threshold = min(F x mean(map), 1) (default %(default)s)",
    )
    parser.add_argument("--json", required=True, metavar="FILE", help="scores JSON to write")
    parser.add_argument("--plots", metavar="DIR", help="write PR and F-measure curve PNGs here")


def _print_progress(done, total):
    if done == total or done % 10 == 0:
        print(f"scored {done}/{total}", file=sys.stderr, flush=True)


def run(args):
    """Runs `keras-defusion evaluate`; returns the exit status."""
    prefix = "keras-defusion evaluate: error:"
    if args.adaptive_factor <= 0 or not np.isfinite(args.adaptive_factor):
        print(f"{prefix} --adaptive-factor must be a positive number", file=sys.stderr)
        return 2
    if args.pred and (args.outputs or args.images):
        print(f"{prefix} --outputs and --images go with --model, not --pred", file=sys.stderr)
        return 2
    try:
        if args.pred:
            pred_dirs = {}
            for spec in args.pred:
                name, folder = parse_pred_spec(spec)
                if name in pred_dirs:
                    raise EvaluationError(
                        f"two --pred methods named {name!r}; name them with NAME=DIR"
                    )
                pred_dirs[name] = folder
            results = evaluate_folders(
                pred_dirs, args.gt, gt_polarity=args.gt_polarity,
                pred_polarity=args.pred_polarity, adaptive_factor=args.adaptive_factor,
            )
            extra = {"sources": "prediction folders"}
        else:
            images_dir = args.images or images_dir_beside(args.gt)
            if images_dir is None:
                raise EvaluationError(
                    f"--model needs --images DIR ({args.gt} holds no images/ beside gt/)"
                )
            from keras_defusion.inference.detector import load_detector

            detector = load_detector(args.model)
            results = evaluate_detector(
                detector, images_dir, args.gt, outputs=args.outputs,
                name=model_method_name(args.model),
                gt_polarity=args.gt_polarity, adaptive_factor=args.adaptive_factor,
                progress=_print_progress,
            )
            extra = {"sources": "model", "model": str(args.model), "images_dir": str(images_dir)}
        # Writing is inside the try: an unwritable --json or --plots path is an
        # error message, not a traceback.
        write_json(build_report(results, args.gt, extra), args.json)
        print(format_table(results))
        print(f"wrote {args.json}")
        if args.plots:
            for path in plot_curves(results, args.plots, title=pathlib.Path(args.gt).name):
                print(f"wrote {path}")
    except (EvaluationError, ValueError, OSError) as e:
        print(f"{prefix} {e}", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    """Entry point for `python -m keras_defusion.evaluation.scoring`."""
    parser = argparse.ArgumentParser(prog="keras-defusion evaluate")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
