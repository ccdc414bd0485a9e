import sys

from keras_defusion.baselines import main

sys.exit(main())
