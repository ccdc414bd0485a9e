"""Train DeFusionNet from a clone: `python -m training.train --preset NAME --data DIR --out DIR`.

The same command as `keras-defusion train` (`keras_defusion.cli.train`).
"""

import sys

from keras_defusion.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
