"""Combine trained models into one output ensemble (the weighted mean of their logits).

    python -m training.ensemble --models defusionnet-scratch-cuhk-soup \\
        defusionnet-phone-cuhk --weights 2 1 --out runs/ensembles/NAME.keras

A thin command over `keras_defusion.training.ensemble.ensemble_models`;
score the result like any model (`benchmarks/val_compare.py`), and ship it
with `python -m training.package --model FILE`.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    from keras_defusion.training.ensemble import ensemble_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True,
                        help="two or more .keras files or shipped model names (DeFusionNets)")
    parser.add_argument("--weights", nargs="+", type=float,
                        help="one positive weight per model (default: equal)")
    parser.add_argument("--inference-size", type=int,
                        help="detect's input size (default: the first model's)")
    parser.add_argument("--out", required=True, help="the .keras file to write")
    args = parser.parse_args(argv)
    try:
        ensemble = ensemble_models(args.models, args.out, args.weights, args.inference_size)
    except ValueError as error:  # ModelLoadError included
        print(f"error: {error}", file=sys.stderr)
        return 2
    weights = ", ".join(f"{weight:.3f}" for weight in ensemble.member_weights)
    print(f"wrote {args.out}: an ensemble of {len(args.models)} models (weights {weights})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
