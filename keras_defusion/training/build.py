"""The model and its compilation, as a `TrainingConfig` describes them."""

from keras_defusion.evaluation import metrics as metrics_lib
from keras_defusion.models.defusionnet.config import FUSED
from keras_defusion.models.defusionnet.model import DeFusionNet
from keras_defusion.errors import ModelLoadError
from keras_defusion.models.loading import load_model_file
from keras_defusion.training.losses import deep_supervision_losses
from keras_defusion.training.schedules import build_optimizer


def build_model(config):
    """The `DeFusionNet` a `TrainingConfig` describes, with initial weights."""
    source = None
    if config.init_model:  # loaded first: a bad file fails before any building
        source = load_model_file(config.init_model)
        if not isinstance(source, DeFusionNet):
            raise ModelLoadError(
                f"{config.init_model}: a {type(source).__name__} cannot start a training "
                "run; start from one of its members instead")
    model = DeFusionNet(
        config.model_preset,
        backbone_weights=None if config.init_model else config.backbone_weights,
        inference_size=config.image_size,
        **config.model_overrides,
    )
    if source is not None:
        model.set_weights(source.get_weights())
    return model


def compile_model(model, config):
    losses, loss_weights = deep_supervision_losses(
        model.defusion_config.num_steps, config.lambda_fused, config.lambda_side,
        config.iou_weight,
    )
    model.compile(
        optimizer=build_optimizer(config),
        loss=losses,
        loss_weights=loss_weights,
        metrics={FUSED: metrics_lib.training_metrics()},
    )


def build_training_state(model, element_spec):
    """Creates the optimizer's, the losses' and the metrics' variables before
    `fit`, from the training data's `element_spec` (shapes only; no data).

    Without a `tf.distribute` strategy Keras creates them while tracing the
    first train step, and a `tf.function` that creates variables is traced
    twice: measured, twice the start-up of a short run. Keras builds them this
    way itself under a strategy (`Trainer._symbolic_build`, private, hence
    the guard: a Keras without it only starts slower).
    """
    symbolic_build = getattr(model, "_symbolic_build", None)
    if symbolic_build is not None:
        symbolic_build(data_batch=element_spec)
