"""`keras-defusion train` (and `python -m training.train` in a clone).

    keras-defusion train --preset scratch --data DIR --out DIR [--val DIR]

The work is done by `keras_defusion.training.train.train`; this module only
parses arguments.
"""

import argparse
import json
import sys

from keras_defusion.data.augmentation import RESIZE_METHODS
from keras_defusion.errors import UsageError
from keras_defusion.training.config import TRAINING_PRESETS
from keras_defusion.training.config import get_training_config
from keras_defusion.training.train import train


def _parse_model_overrides(items):
    overrides = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--model-set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value  # a bare string, e.g. normalization=group
    return overrides


def add_arguments(parser):
    parser.add_argument("--preset", required=True, choices=sorted(TRAINING_PRESETS),
                        help="training preset; it names its model preset")
    parser.add_argument("--data", required=True, help="training folder (images/ + gt/)")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--val", help="validation folder; 'best' = lowest fused MAE on it")
    parser.add_argument("--steps", type=int, help="optimizer steps in all")
    parser.add_argument("--batch-size", type=int, help="global batch (per replica x replicas)")
    parser.add_argument("--crop-size", type=int, dest="image_size", metavar="N",
                        help="side of the square training crops (TrainingConfig.image_size)")
    parser.add_argument("--image-size", type=int, dest="image_size", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help="encoder's initial weights: imagenet, none or PATH")
    parser.add_argument("--init-model", help="a .keras model, or a shipped model's name, "
                        "whose weights start the run (fine-tuning a trained model)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--lr", type=float, dest="learning_rate", help="initial learning rate")
    parser.add_argument("--optimizer", choices=("sgd", "adam", "adamw"))
    parser.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up steps")
    parser.add_argument("--resize-methods", help="comma-separated resampling methods drawn "
                        f"for training photos, from {','.join(RESIZE_METHODS)}")
    parser.add_argument("--synthetic-defocus", type=float, metavar="P",
                        help="share of training crops given an extra region blurred by a "
                        "pillbox and added to their masks (default 0: off)")
    parser.add_argument("--color-jitter", type=float, metavar="J",
                        help="largest relative change of brightness, contrast and saturation "
                        "of a training crop (default 0: off)")
    parser.add_argument("--noise-stddev", type=float, metavar="S",
                        help="largest Gaussian noise added to a training crop, 0..255 scale "
                        "(default 0: off)")
    parser.add_argument("--jpeg-quality", type=int, metavar="Q",
                        help="re-encode each training crop as a JPEG of quality drawn in "
                        "[Q, 100] (default: not re-encoded)")
    parser.add_argument("--teacher-maps", metavar="DIR",
                        help="distil a teacher: its maps of the training photos (from "
                        "`keras-defusion detect TRAIN/images --model TEACHER --out DIR`) "
                        "blended into the training targets (default: the masks alone)")
    parser.add_argument("--teacher-weight", type=float, metavar="W",
                        help="the teacher map's share of each target, in (0, 1] "
                        "(default 0.5)")
    parser.add_argument("--steps-per-epoch", type=int,
                        help="steps between validations, checkpoints and log rows")
    parser.add_argument("--synthetic-steps", type=int, help="synthetic-defocus warm-up steps")
    parser.add_argument("--val-fraction", type=float,
                        help="share of --data kept for validation when --val is absent")
    parser.add_argument("--val-size", type=int, metavar="N",
                        help="side the validation photos are resized to for the best "
                        "checkpoint's choice; give the size the model will run at "
                        "(default: --crop-size)")
    parser.add_argument("--polarity", choices=("blur-white", "sharp-white"))
    parser.add_argument("--lambda-fused", type=float, help="Eq. 6's lambda_f (default 1)")
    parser.add_argument("--lambda-side", help="Eq. 6's lambda_i^j: one number for every side "
                        "output, or JSON mapping output names to weights, e.g. "
                        "'{\"step1_out1\": 0.5}' (default 1)")
    parser.add_argument("--iou-weight", type=float, metavar="W",
                        help="add W x (1 - soft IoU) per photo to every output's "
                        "cross-entropy (default 0: Eq. 6 alone)")
    parser.add_argument("--mixed-precision", action="store_true", default=None,
                        help="mixed_float16 compute (GPUs)")
    parser.add_argument("--distribution", choices=("auto", "default", "mirrored", "multi_worker"))
    parser.add_argument("--seed", type=int,
                        help="seeds the validation split (--val-fraction), data order, "
                        "augmentation and initialisation")
    parser.add_argument("--deterministic", action="store_true", default=None,
                        help="TF's deterministic ops too: the same seed gives the same "
                        "weights on GPUs as well (slower; CPU runs already repeat)")
    parser.add_argument("--model-preset", help="override the preset's model preset")
    parser.add_argument("--model-set", action="append", metavar="KEY=VALUE",
                        help="override a DeFusionNetConfig field, e.g. num_steps=6 or "
                        "use_ffrm=false (repeatable)")
    parser.add_argument("--progress", default="auto", choices=("auto", "0", "1", "2"),
                        help="Keras' progress display (default auto)")
    # --verbose LEVEL was the progress display; a bare --verbose shows TF's logs.
    parser.add_argument("--verbose", nargs="?", const=True, default=False,
                        help="show TensorFlow's log lines (hidden by default)")


def build_parser():
    """The `keras-defusion train` options as a parser of their own."""
    parser = argparse.ArgumentParser(
        prog="keras-defusion train",
        description="Train DeFusionNet on image/mask folders.",
    )
    add_arguments(parser)
    return parser


def _lambda_side(text):
    """--lambda-side: a number, or JSON mapping output names to weights."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"--lambda-side {text!r} is neither a number nor JSON ({error}); give e.g. "
            "0.5 or '{\"step1_out1\": 0.5}'"
        ) from None


def cli_overrides(args):
    """The `TrainingConfig` fields the command line sets, by name."""
    overrides = {
        key: value
        for key, value in {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "image_size": args.image_size,
            "init_model": args.init_model,
            "learning_rate": args.learning_rate,
            "optimizer": args.optimizer,
            "warmup_steps": args.warmup_steps,
            "resize_methods": args.resize_methods and args.resize_methods.split(","),
            "synthetic_defocus": args.synthetic_defocus,
            "color_jitter": args.color_jitter,
            "noise_stddev": args.noise_stddev,
            "jpeg_quality": args.jpeg_quality,
            "teacher_maps": args.teacher_maps,
            "teacher_weight": args.teacher_weight,
            "steps_per_epoch": args.steps_per_epoch,
            "synthetic_steps": args.synthetic_steps,
            "val_fraction": args.val_fraction,
            "val_size": args.val_size,
            "polarity": args.polarity,
            "lambda_fused": args.lambda_fused,
            "lambda_side": args.lambda_side and _lambda_side(args.lambda_side),
            "iou_weight": args.iou_weight,
            "mixed_precision": args.mixed_precision,
            "distribution": args.distribution,
            "seed": args.seed,
            "deterministic": args.deterministic,
            "model_preset": args.model_preset,
        }.items()
        if value is not None
    }
    if args.weights is not None:
        overrides["backbone_weights"] = None if args.weights.lower() == "none" else args.weights
    if args.model_set:
        model_overrides = dict(TRAINING_PRESETS[args.preset].model_overrides)
        model_overrides.update(_parse_model_overrides(args.model_set))
        overrides["model_overrides"] = model_overrides
    return overrides


def config_from_args(args):
    return get_training_config(args.preset, **cli_overrides(args))


def run(args):
    """Runs `keras-defusion train`; returns the exit status."""
    progress = args.verbose if args.verbose not in (True, False) else args.progress
    if progress not in ("auto", "0", "1", "2"):
        raise UsageError(f"--progress must be auto, 0, 1 or 2, got {progress!r}")
    overrides = cli_overrides(args)
    config = get_training_config(args.preset, **overrides)
    result = train(config, args.data, args.out, args.val, resume=args.resume,
                   verbose=progress if progress == "auto" else int(progress),
                   given=set(overrides))
    print(f"trained {result.steps_done} steps; model: {result.final_model}"
          f" (best: {result.best_model})")
    return 0


def main(argv=None):
    """`keras-defusion train ARGS`, with its error handling."""
    from keras_defusion.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])
