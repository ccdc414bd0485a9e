"""TFLite metadata (tflite-support) that the Task library `ImageSegmenter` reads."""

import logging
import os
import tempfile

from keras_defusion.export.common import MODEL_NAME
from keras_defusion.export.flatbuffer import _schema
from keras_defusion.inference.contract import BLUR_MAP_OUTPUT
from keras_defusion.inference.contract import IMAGES_INPUT
from keras_defusion.inference.contract import OUTPUT_MEANING
from keras_defusion.version import __version__

logger = logging.getLogger(__name__)


# Label file of the single output channel, for the Task library.
TFLITE_LABEL = "blurred"


def _import_metadata_writer():
    """tflite-support's image segmenter metadata writer, or None.

    tflite-support 0.4.4 cannot be installed beside TensorFlow 2.21 with its
    dependencies (it pins protobuf < 4) and its top-level import is broken;
    `pip install --no-deps tflite-support==0.4.4` (and Debian's libusb-1.0-0)
    makes this module importable on its own.
    """
    try:
        from tensorflow_lite_support.metadata import metadata_schema_py_generated as metadata_fb
        from tensorflow_lite_support.metadata.python.metadata_writers import image_segmenter
        from tensorflow_lite_support.metadata.python.metadata_writers import metadata_info
    except (ImportError, OSError) as error:  # OSError: libusb missing
        return None, f"{type(error).__name__}: {error}"
    return (image_segmenter, metadata_info, metadata_fb), None


def tflite_metadata_available():
    """Whether TFLite metadata (for the Task library) can be embedded here."""
    modules, _ = _import_metadata_writer()
    return modules is not None


def _embed_task_metadata(model_bytes, image_size, input_dtype):
    """The model with Task library `ImageSegmenter` metadata, or None.

    The single output channel is a confidence mask: read MediaPipe's
    ImageSegmenter `confidence_masks[0]`. Its category mask over one channel
    is 0 where the confidence is above 0.5 (blurred) and 255 elsewhere.
    """
    modules, reason = _import_metadata_writer()
    if modules is None:
        logger.info("TFLite metadata not embedded: tflite-support not importable (%s)", reason)
        return None, f"tflite-support not importable ({reason})"
    image_segmenter, metadata_info, metadata_fb = modules
    schema = _schema()
    tensor_type = {
        "float32": schema.TensorType.FLOAT32,
        "uint8": schema.TensorType.UINT8,
        "int8": schema.TensorType.INT8,
    }[input_dtype]
    with tempfile.TemporaryDirectory() as folder:
        label_path = os.path.join(folder, "blur_labels.txt")
        with open(label_path, "w") as f:
            f.write(TFLITE_LABEL + "\n")
        writer = image_segmenter.MetadataWriter.create_from_metadata_info(
            model_buffer=bytearray(model_bytes),
            general_md=metadata_info.GeneralMd(
                name=MODEL_NAME,
                version=__version__,
                description=(
                    f"DeFusionNet defocus blur detection (keras-defusion {__version__}). "
                    f"Input: RGB {image_size}x{image_size}, values 0..255, no "
                    f"normalisation. Output: {OUTPUT_MEANING}; read it as a "
                    "confidence mask."
                ),
                author="keras-defusion",
                licenses="Apache-2.0",
            ),
            input_md=metadata_info.InputImageTensorMd(
                name=IMAGES_INPUT,
                description=f"RGB photo resized to {image_size}x{image_size} by any method, "
                            "values 0..255",
                norm_mean=[0.0, 0.0, 0.0],
                norm_std=[1.0, 1.0, 1.0],
                color_space_type=metadata_fb.ColorSpaceType.RGB,
                tensor_type=tensor_type,
            ),
            output_md=metadata_info.TensorMd(
                name=BLUR_MAP_OUTPUT,
                description=OUTPUT_MEANING,
                associated_files=[metadata_info.LabelFileMd(file_path=label_path)],
            ),
        )
        return bytes(writer.populate()), None


def read_tflite_metadata_json(path):
    """The embedded TFLite metadata as JSON text, or None when absent/unreadable."""
    try:
        from tensorflow_lite_support.metadata.python import metadata as metadata_lib
    except (ImportError, OSError):  # OSError: libusb missing
        return None
    try:
        return metadata_lib.MetadataDisplayer.with_model_file(os.fspath(path)).get_metadata_json()
    except ValueError:
        return None
