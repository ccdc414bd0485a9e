"""Small shared helpers."""

import random

import numpy as np


def set_seed(seed):
    """Seeds Python, NumPy, TensorFlow and Keras for reproducible runs.

    Full determinism of TF kernels also needs
    `tf.config.experimental.enable_op_determinism()`, which is slower; pass
    `deterministic=True` to the training function for that.
    """
    import keras

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
