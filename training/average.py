"""Average the weights of models fine-tuned from one start (a "model soup").

    python -m training.average --models runs/a/checkpoints/best.keras \\
        runs/b/final.keras --out runs/soup.keras

A thin command over `keras_defusion.training.average.average_weights`; score
the result like any model (`benchmarks/val_inference_size.py`).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    from keras_defusion.training.average import average_weights

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True,
                        help="two or more .keras files or shipped model names, of one network")
    parser.add_argument("--out", required=True, help="the .keras file to write")
    args = parser.parse_args(argv)
    try:
        average_weights(args.models, args.out)
    except ValueError as error:  # ModelLoadError included
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: the mean of {len(args.models)} models' weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
