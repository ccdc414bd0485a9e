"""keras-defusion: DeFusionNet defocus blur detection for TensorFlow/Keras."""

try:
    import tensorflow  # noqa: F401
except ImportError as error:  # TensorFlow comes from an extra, [cpu] or [gpu].
    raise ImportError(
        "keras-defusion needs TensorFlow, which it installs through an extra: "
        "pip install 'keras-defusion[cpu]' (or '.[cpu]' from a clone), or "
        "'[gpu]' on a machine with NVIDIA GPUs"
    ) from error

from keras_defusion.models.defusionnet.config import DeFusionNetConfig
from keras_defusion.models.defusionnet.config import MODEL_PRESETS
from keras_defusion.models.defusionnet.config import get_model_config
from keras_defusion.models.defusionnet.config import output_names
from keras_defusion.inference.detector import load_detector
from keras_defusion.models.defusionnet.encoder import BackboneWeightsError
from keras_defusion.evaluation.metrics import BlurFBeta
from keras_defusion.models.defusionnet.model import DeFusionNet
from keras_defusion.models.pretrained import DEFAULT_MODEL
from keras_defusion.training.schedules import WarmupSchedule
from keras_defusion.utils import set_seed
from keras_defusion.version import __version__
