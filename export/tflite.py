"""Export a TFLite model for phones from a clone.

    python -m export.tflite --model model.keras --mode MODE --out model.tflite \\
        [--calibration DIR] [--inference-size N] [--io-dtype uint8|int8] [--num-calibration N]

The same command as `keras-defusion export tflite` (`keras_defusion.cli.export`).
"""

import os
import sys

if "--verbose" not in sys.argv:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    from keras_defusion.cli import main as cli_main

    return cli_main(["export", "tflite", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
