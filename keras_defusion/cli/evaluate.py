"""`keras-defusion evaluate`: score blur maps like the paper (section 4.2)."""

import os
import pathlib
import sys

import numpy as np

from keras_defusion.errors import EvaluationError
from keras_defusion.errors import UsageError
from keras_defusion.evaluation import metrics
from keras_defusion.evaluation.report import build_report
from keras_defusion.evaluation.report import format_table
from keras_defusion.evaluation.report import plot_curves
from keras_defusion.evaluation.report import write_report
from keras_defusion.evaluation.scoring import evaluate_detector
from keras_defusion.evaluation.scoring import evaluate_folders
from keras_defusion.evaluation.scoring import images_dir_beside
from keras_defusion.io import images as image_io


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
        from keras_defusion.inference.detector import find_saved_model_dir

        # None for a shipped-form folder; a folder of several SavedModels
        # raises ModelLoadError, as loading it does.
        found = find_saved_model_dir(path)
        if found is not None and found.name.isdigit() and found.parent.name:
            return found.parent.name
        return path.name or "model"
    if path.name == pretrained.WEIGHTS_FILE and path.parent.name:
        return path.parent.name
    return path.stem or "model"


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
    if args.adaptive_factor <= 0 or not np.isfinite(args.adaptive_factor):
        raise UsageError(f"--adaptive-factor must be a positive number, got {args.adaptive_factor}")
    if args.pred and (args.outputs or args.images):
        raise UsageError("--outputs and --images go with --model, not --pred")
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
    write_report(args.json, build_report(results, args.gt, extra))
    print(format_table(results))
    print(f"wrote {args.json}")
    if args.plots:
        for path in plot_curves(results, args.plots, title=pathlib.Path(args.gt).name):
            print(f"wrote {path}")
    return 0


def main(argv=None):
    """`keras-defusion evaluate ARGS`, with its error handling."""
    from keras_defusion.cli import main as cli_main

    return cli_main(["evaluate", *(sys.argv[1:] if argv is None else argv)])
