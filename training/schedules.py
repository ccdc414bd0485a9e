"""The optimizer and learning-rate schedule of a `TrainingConfig`."""

import keras

from keras_defusion.schedules import WarmupSchedule


def build_schedule(config):
    """The learning-rate schedule of a `TrainingConfig`, over `config.steps`."""
    return WarmupSchedule(
        config.learning_rate,
        config.steps,
        kind=config.schedule,
        warmup_steps=config.warmup_steps,
        drop_at=config.drop_at,
        drop_factor=config.drop_factor,
    )


def build_optimizer(config):
    """The optimizer a `TrainingConfig` names, with its schedule."""
    common = {"learning_rate": build_schedule(config), "clipnorm": config.clipnorm}
    decay = config.weight_decay or None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(
            momentum=config.momentum, weight_decay=decay, **common
        )
    if config.optimizer == "adam":
        return keras.optimizers.Adam(weight_decay=decay, **common)
    return keras.optimizers.AdamW(weight_decay=config.weight_decay, **common)
