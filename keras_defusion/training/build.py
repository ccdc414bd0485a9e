"""The model and its compilation, as a `TrainingConfig` describes them."""

from keras_defusion.evaluation import metrics as metrics_lib
from keras_defusion.models.defusionnet.config import FUSED
from keras_defusion.models.defusionnet.model import DeFusionNet
from keras_defusion.models.loading import load_model_file
from keras_defusion.training.losses import deep_supervision_losses
from keras_defusion.training.schedules import build_optimizer


def build_model(config):
    """The `DeFusionNet` a `TrainingConfig` describes, with initial weights."""
    model = DeFusionNet(
        config.model_preset,
        backbone_weights=None if config.init_model else config.backbone_weights,
        inference_size=config.image_size,
        **config.model_overrides,
    )
    if config.init_model:
        source = load_model_file(config.init_model)
        model.set_weights(source.get_weights())
    return model


def compile_model(model, config):
    losses, loss_weights = deep_supervision_losses(
        model.defusion_config.num_steps, config.lambda_fused, config.lambda_side
    )
    model.compile(
        optimizer=build_optimizer(config),
        loss=losses,
        loss_weights=loss_weights,
        metrics={FUSED: metrics_lib.training_metrics()},
    )
