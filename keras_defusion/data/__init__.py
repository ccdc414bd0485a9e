"""Training data: image/mask pairs, the tf.data pipeline and synthetic defocus."""

from keras_defusion.data.augmentation import DEFAULT_RESIZE_METHODS
from keras_defusion.data.augmentation import Photometric
from keras_defusion.data.augmentation import RESIZE_METHODS
from keras_defusion.data.augmentation import ROTATION_BORDERS
from keras_defusion.data.augmentation import SyntheticDefocus
from keras_defusion.data.augmentation import check_resize_methods
from keras_defusion.data.augmentation import resize_photo
from keras_defusion.data.pairs import LAYOUTS
from keras_defusion.data.pairs import Pair
from keras_defusion.data.pairs import find_pairs
from keras_defusion.data.pairs import load_pairs
from keras_defusion.data.pairs import split_pairs
from keras_defusion.data.pairs import validate_pairs
from keras_defusion.data.pipeline import dataset_from_arrays
from keras_defusion.data.pipeline import make_dataset
from keras_defusion.errors import DataError
