"""Export a SavedModel for TF Serving from a clone.

    python -m export.saved_model --model model.keras --out serving/ \\
        [--name defusionnet] [--version 1] [--overwrite]

The same command as `keras-defusion export saved_model`
(`keras_defusion.cli.export`).
"""

import os
import sys

if "--verbose" not in sys.argv:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    from keras_defusion.cli import main as cli_main

    return cli_main(["export", "saved_model", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
