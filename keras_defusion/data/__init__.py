"""Training data: image/mask pairs, the tf.data pipeline and synthetic defocus."""

from keras_defusion.data.pipeline import DEFAULT_RESIZE_METHODS
from keras_defusion.data.pipeline import LAYOUTS
from keras_defusion.data.pipeline import RESIZE_METHODS
from keras_defusion.data.pipeline import ROTATION_BORDERS
from keras_defusion.data.pipeline import DataError
from keras_defusion.data.pipeline import Pair
from keras_defusion.data.pipeline import check_resize_methods
from keras_defusion.data.pipeline import dataset_from_arrays
from keras_defusion.data.pipeline import find_pairs
from keras_defusion.data.pipeline import load_pairs
from keras_defusion.data.pipeline import make_dataset
from keras_defusion.data.pipeline import resize_photo
from keras_defusion.data.pipeline import split_pairs
from keras_defusion.data.pipeline import validate_pairs
