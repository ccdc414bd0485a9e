"""Exports: SavedModel for TF Serving, TFLite for phones, and the LiteRT runtimes.

The names below are the export API (`from keras_defusion import export`);
the conventions they share with detection live in
`keras_defusion.inference.contract`, and the TFLite runtime in
`keras_defusion.inference.runners`.
"""

from keras_defusion.errors import ExportError
from keras_defusion.export.common import MODEL_NAME
from keras_defusion.export.common import model_metadata
from keras_defusion.export.common import serving_model
from keras_defusion.export.flatbuffer import check_builtin_ops
from keras_defusion.export.flatbuffer import requantizing_data_ops
from keras_defusion.export.flatbuffer import tflite_float_ops
from keras_defusion.export.flatbuffer import tflite_op_names
from keras_defusion.export.metadata import TFLITE_LABEL
from keras_defusion.export.metadata import read_tflite_metadata_json
from keras_defusion.export.metadata import tflite_metadata_available
from keras_defusion.export.saved_model import DEFAULT_MAX_PIXELS
from keras_defusion.export.saved_model import ENCODED_INPUT
from keras_defusion.export.saved_model import ENCODED_SIGNATURE
from keras_defusion.export.saved_model import export_saved_model
from keras_defusion.export.saved_model import saved_model_dir
from keras_defusion.export.tflite import DEFAULT_NUM_CALIBRATION
from keras_defusion.export.tflite import IO_DTYPES
from keras_defusion.export.tflite import TFLITE_MODES
from keras_defusion.export.tflite import TFLiteMode
from keras_defusion.export.tflite import calibration_photos
from keras_defusion.export.tflite import export_tflite
from keras_defusion.export.tflite import parse_tflite_mode
from keras_defusion.export.tflite import tflite_converter
from keras_defusion.export.tflite import tflite_sidecar_path
from keras_defusion.inference.contract import BLUR_MAP_OUTPUT
from keras_defusion.inference.contract import DEFAULT_INPUT_REDUCTION
from keras_defusion.inference.contract import IMAGES_INPUT
from keras_defusion.inference.contract import INPUT_REDUCTIONS
from keras_defusion.inference.contract import SERVING_SIGNATURE
from keras_defusion.inference.contract import preprocess_photo
from keras_defusion.inference.contract import reduce_input
from keras_defusion.inference.contract import resize_maps
from keras_defusion.inference.contract import resize_photos
from keras_defusion.inference.runners import load_saved_model_metadata
from keras_defusion.inference.runners import load_tflite
from keras_defusion.inference.runners import run_tflite
from keras_defusion.inference.runners import tflite_io_details
from keras_defusion.models.loading import load_model_file
