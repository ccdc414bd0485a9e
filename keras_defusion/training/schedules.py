"""Learning-rate schedules and the optimizer of a `TrainingConfig`.

Part of the package so saved models reload anywhere.

A training checkpoint stores its optimizer, schedule included; keeping the
schedule in `keras_defusion` lets any process that imports the package load
those `.keras` files.
"""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_defusion")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then a step drop, a cosine decay or a constant rate.

    Not `keras.optimizers.schedules.CosineDecay(warmup_target=...,
    warmup_steps=...)`: that covers the cosine kind alone, and its warm-up
    starts from a rate of 0 at step 0 (a wasted step), where this one's first
    step already runs at 1 / warmup_steps of the rate.

    Args:
        learning_rate: the rate after warm-up.
        total_steps: the run's optimizer steps.
        kind: "step", "cosine" or "constant".
        warmup_steps: steps of linear warm-up from 0.
        drop_at: for "step", the fraction of `total_steps` where it drops.
        drop_factor: for "step", the factor applied there.
    """

    def __init__(
        self,
        learning_rate,
        total_steps,
        kind="step",
        warmup_steps=0,
        drop_at=0.5,
        drop_factor=0.1,
    ):
        self.learning_rate = float(learning_rate)
        self.total_steps = int(total_steps)
        self.kind = kind
        self.warmup_steps = int(warmup_steps)
        self.drop_at = float(drop_at)
        self.drop_factor = float(drop_factor)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        rate = ops.convert_to_tensor(self.learning_rate, "float32")
        if self.kind == "step":
            boundary = math.floor(self.drop_at * self.total_steps)
            rate = ops.where(step >= boundary, rate * self.drop_factor, rate)
        elif self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            rate = rate * 0.5 * (1.0 + ops.cos(math.pi * progress))
        if self.warmup_steps > 0:
            rate = rate * ops.minimum(1.0, (step + 1.0) / self.warmup_steps)
        return rate

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "total_steps": self.total_steps,
            "kind": self.kind,
            "warmup_steps": self.warmup_steps,
            "drop_at": self.drop_at,
            "drop_factor": self.drop_factor,
        }


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
