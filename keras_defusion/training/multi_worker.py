"""Training across machines: a `strategy.run` loop for MultiWorkerMirrored.

Keras 3's `model.fit` fails under `tf.distribute.MultiWorkerMirroredStrategy`
(`ValueError: Attempt to convert a value (PerReplica...)`,
keras-team/keras#20585), so multi-worker runs use this loop instead. It
trains the same model with the same Eq. 6 loss, optimizer and schedule as
`fit`, and writes the same run folder on the chief (worker 0): config.json,
log.csv, history.json, tensorboard/, checkpoints/ (TF checkpoints of model
and optimizer, for `--resume`; `best.keras` by validation fused MAE) and
final.keras. Other workers write theirs under `workers/worker-<i>/`, as
TF requires every worker to save.

Every worker runs the same command with its own `TF_CONFIG`, e.g. for two:

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
        python -m training.train --preset paper --data DIR --out DIR

Each worker reads its shard of the training pairs (pair k goes to worker
k mod n); `--batch-size` stays the global batch.
"""

import dataclasses
import json
import math
import os
import time

import keras
import tensorflow as tf

from keras_defusion.models.defusionnet.config import FUSED
from keras_defusion.training import distribution
from keras_defusion.training.build import build_model
from keras_defusion.training.datasets import build_datasets
from keras_defusion.training.datasets import with_synthetic_prefix
from keras_defusion.training.losses import deep_supervision_losses
from keras_defusion.training.run_folder import finish_run
from keras_defusion.training.run_folder import save_model
from keras_defusion.training.run_folder import write_record
from keras_defusion.training.schedules import build_optimizer


def _per_example_loss(masks, outputs, losses, loss_weights):
    """Eq. 6 per example: weighted sum over outputs of each output's loss,
    averaged over the pixels where it is per pixel (cross-entropy)."""
    total = 0.0
    for name, weight in loss_weights.items():
        loss = losses[name].call(masks, outputs[name])  # [B, H, W] or [B]
        total += weight * tf.reduce_mean(tf.reshape(loss, [tf.shape(loss)[0], -1]), axis=1)
    return total


def _agree_on_finiteness(optimizer, gradients):
    """Makes every worker's gradients non-finite when any worker's are.

    `LossScaleOptimizer` checks this worker's gradients for inf/NaN before
    its inner optimizer all-reduces them. Workers that disagree take
    different branches, and those that apply wait forever for the others'
    all-reduce (seen as a hang under MultiWorkerMirroredStrategy). A scalar
    all-reduce first makes them agree: all skip the step, or none does.
    """
    local = tf.cast(tf.logical_not(optimizer.check_finite(gradients)), tf.float32)
    anywhere = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, local
    )
    factor = tf.where(anywhere > 0, float("nan"), 1.0)
    return [None if g is None else g * tf.cast(factor, g.dtype) for g in gradients]


def train_multi_worker(config, data_dir, out_dir, val_dir, strategy, resume=False):
    """Trains with a custom loop under a MultiWorkerMirroredStrategy.

    Args: as `keras_defusion.training.train.train`, with the strategy already made.

    Returns:
        A `TrainResult` (on every worker; the chief's points at the run
        folder).
    """
    chief = distribution.is_chief()
    work_dir = out_dir if chief else os.path.join(out_dir, "workers", f"worker-{distribution.task_index()}")
    checkpoint_dir = os.path.join(work_dir, "checkpoints")
    os.makedirs(checkpoint_dir, exist_ok=True)
    global_batch = config.batch_size
    if global_batch % strategy.num_replicas_in_sync:
        raise ValueError(
            f"the global batch {global_batch} does not split over "
            f"{strategy.num_replicas_in_sync} replicas"
        )

    with strategy.scope():
        model = build_model(config)
        optimizer = build_optimizer(config)
        if config.mixed_precision:
            # What `fit` does by itself: scale the loss so float16 gradients
            # do not underflow; apply_gradients unscales them.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
    output_losses, loss_weights = deep_supervision_losses(
        model.defusion_config.num_steps, config.lambda_fused, config.lambda_side,
        config.iou_weight,
    )
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=2)
    steps_done = 0
    if resume:
        if manager.latest_checkpoint is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {checkpoint_dir}")
        checkpoint.restore(manager.latest_checkpoint)
        # Checkpoints are numbered by the steps run; the optimizer's
        # iterations leave out the steps a LossScaleOptimizer skipped.
        steps_done = int(manager.latest_checkpoint.rsplit("-", 1)[1])

    def dataset_fn(context):
        # Each worker: its shard of the pairs, and its own synthetic seed.
        per_replica = dataclasses.replace(
            config,
            batch_size=context.get_per_replica_batch_size(global_batch),
            seed=config.seed + 1000 * context.input_pipeline_id,
        )
        _, _, train, _ = build_datasets(
            per_replica, data_dir, val_dir,
            per_worker=(context.input_pipeline_id, context.num_input_pipelines),
        )
        return with_synthetic_prefix(train, per_replica, steps_done)

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    val_ds = None
    if chief:
        _, _, _, val_ds = build_datasets(config, data_dir, val_dir)

    @tf.function
    def train_step(iterator):
        def step_fn(images, masks):
            with tf.GradientTape() as tape:
                outputs = model(images, training=True)
                per_example = _per_example_loss(masks, outputs, output_losses, loss_weights)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                scaled = optimizer.scale_loss(loss) if config.mixed_precision else loss
            gradients = tape.gradient(scaled, model.trainable_variables)
            if config.mixed_precision:
                gradients = _agree_on_finiteness(optimizer, gradients)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss

        images, masks = next(iterator)
        replica_losses = strategy.run(step_fn, args=(images, masks))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, replica_losses, axis=None)

    @tf.function
    def predict_fused(images):
        return model(images, training=False)[FUSED]

    def validate():
        errors = []
        for images, masks in val_ds:
            errors.append(tf.reduce_mean(tf.abs(predict_fused(images) - masks), axis=[1, 2, 3]))
        return float(tf.reduce_mean(tf.concat(errors, 0))) if errors else None

    if chief:
        write_record(
            os.path.join(out_dir, "config.json"),
            {"training": config.to_dict(), "model": model.get_config(),
             "data": {"train": os.fspath(data_dir), "val": val_dir and os.fspath(val_dir)},
             "replicas": strategy.num_replicas_in_sync, "loop": "multi_worker"},
        )
    # The same log.csv and TensorBoard events as model.fit's callbacks write.
    callbacks = keras.callbacks.CallbackList([
        keras.callbacks.CSVLogger(os.path.join(work_dir, "log.csv"), append=resume),
        keras.callbacks.TensorBoard(os.path.join(work_dir, "tensorboard"), write_graph=False),
    ], model=_CompiledView(model, optimizer))
    callbacks.on_train_begin()
    state_path = os.path.join(checkpoint_dir, "state.json")
    best = math.inf
    if resume and os.path.exists(state_path):
        with open(state_path) as f:
            best = json.load(f).get("best_val_fused_mae") or math.inf
    start = time.time()
    total_steps = math.ceil(config.steps / config.steps_per_epoch) * config.steps_per_epoch
    while steps_done < total_steps:
        losses = [float(train_step(iterator)) for _ in range(config.steps_per_epoch)]
        steps_done += config.steps_per_epoch
        epoch = steps_done // config.steps_per_epoch - 1
        row = {
            "loss": sum(losses) / len(losses),
            "learning_rate": float(optimizer.learning_rate),
        }
        if chief and val_ds is not None:
            row["val_fused_mae"] = validate()
            if row["val_fused_mae"] < best:
                best = row["val_fused_mae"]
                save_model(model, os.path.join(checkpoint_dir, "best.keras"))
        manager.save(checkpoint_number=steps_done)  # every worker saves
        write_record(state_path, {
            "steps_done": steps_done,
            "best_val_fused_mae": None if math.isinf(best) else best,
        })
        callbacks.on_epoch_end(epoch, logs=row)
        print(f"step {steps_done}/{total_steps}: " +
              " ".join(f"{k}={v:.4g}" for k, v in row.items()), flush=True)
    callbacks.on_train_end()
    return finish_run(
        model, work_dir, config, steps_done=steps_done, seconds=time.time() - start,
        has_best=val_ds is not None,
    )


class _CompiledView:
    """The model as Keras callbacks read it after `compile`: with its
    optimizer (TensorBoard logs the learning rate from it). The loop keeps
    the optimizer apart from the model, so checkpoints keep their layout."""

    def __init__(self, model, optimizer):
        self._model = model
        self.optimizer = optimizer

    def __getattr__(self, name):
        return getattr(self._model, name)

