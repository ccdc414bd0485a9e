import sys

from keras_defusion.evaluation.baselines import main

sys.exit(main())
