"""keras-defusion: DeFusionNet defocus blur detection for TensorFlow/Keras."""

import os as _os
import sys as _sys

from keras_defusion.utils import native_stderr as _native_stderr

# The `keras-defusion` command hides TensorFlow's log lines unless --verbose.
if _os.path.basename(_sys.argv[0]) == "keras-defusion" and "--verbose" not in _sys.argv:
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:
    # TensorFlow 2.21 prints its start-up lines (oneDNN, absl) whatever
    # TF_CPP_MIN_LOG_LEVEL says; they are dropped here when it asks for quiet.
    if _os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") in ("2", "3"):
        with _native_stderr():
            import tensorflow  # noqa: F401
    else:
        import tensorflow  # noqa: F401
except ImportError as error:  # TensorFlow comes from an extra, [cpu] or [gpu].
    raise ImportError(
        "keras-defusion needs TensorFlow, which it installs through an extra: "
        "pip install 'keras-defusion[cpu]' (or '.[cpu]' from a clone), or "
        "'[gpu]' on a machine with NVIDIA GPUs"
    ) from error

import keras

from keras_defusion.errors import BackboneWeightsError
from keras_defusion.errors import KerasDefusionError
from keras_defusion.evaluation.metrics import BlurFBeta
from keras_defusion.inference.detector import load_detector
from keras_defusion.models.defusionnet.config import DeFusionNetConfig
from keras_defusion.models.defusionnet.config import output_names
from keras_defusion.models.defusionnet.model import DeFusionNet
from keras_defusion.models.defusionnet.presets import MODEL_PRESETS
from keras_defusion.models.defusionnet.presets import get_model_config
from keras_defusion.models.ensemble import DeFusionEnsemble
from keras_defusion.models.pretrained import DEFAULT_MODEL
from keras_defusion.training.losses import BCEIoULoss
from keras_defusion.training.schedules import WarmupSchedule
from keras_defusion.version import __version__

# Seeds Python, NumPy and the backend (TF kernels also need
# `tf.config.experimental.enable_op_determinism()` to be deterministic).
set_seed = keras.utils.set_random_seed
