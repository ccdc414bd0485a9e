"""`python -m keras_defusion.cli`: the `keras-defusion` command."""

import sys

from keras_defusion.cli import main

sys.exit(main())
