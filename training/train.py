"""Train DeFusionNet from a clone: `python -m training.train --preset NAME --data DIR --out DIR`.

The same command as `keras-defusion train` (`keras_defusion.cli.train`).
"""

import os
import sys

if "--verbose" not in sys.argv:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    from keras_defusion.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
