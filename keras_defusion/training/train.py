"""Training DeFusionNet: `train()` writes a run folder (`run_folder`).

On one machine it runs `model.fit` under the chosen `tf.distribute`
strategy; across machines (`TF_CONFIG` with several workers) it runs the
custom `strategy.run` loop of `keras_defusion.training.multi_worker`,
because Keras 3's `fit` fails under MultiWorkerMirroredStrategy
(keras-team/keras#20585). The command line is `keras-defusion train`.
"""

import math
import os
import time

import keras
import tensorflow as tf

from keras_defusion.training import distribution
from keras_defusion.training import multi_worker
from keras_defusion.training.build import build_model
from keras_defusion.training.build import build_training_state
from keras_defusion.training.build import compile_model
from keras_defusion.training.datasets import build_datasets
from keras_defusion.training.datasets import pad_to_full_batches
from keras_defusion.training.datasets import to_targets
from keras_defusion.training.datasets import with_synthetic_prefix
from keras_defusion.training.run_folder import LearningRateLogger
from keras_defusion.training.run_folder import RunCheckpoint
from keras_defusion.training.run_folder import checkpoint_state
from keras_defusion.training.run_folder import finish_run
from keras_defusion.training.run_folder import prepare_run
from keras_defusion.training.run_folder import write_record
from keras_defusion.training.schedules import build_schedule


def train(config, data_dir, out_dir, val_dir=None, resume=False, verbose="auto", strategy=None,
          given=None):
    """Trains DeFusionNet and writes the run folder (see the module docstring).

    Args:
        config: a `TrainingConfig` (see `training.config.TRAINING_PRESETS`).
        data_dir: training images and masks (CUHK layout `images/` + `gt/`,
            or DUT layout).
        out_dir: the run folder.
        val_dir: a validation folder; "best" means the lowest fused-map MAE
            on it (or on the `val_fraction` split when no folder is given).
        resume: continue from `out_dir/checkpoints/last.keras`.
        verbose: Keras' progress display ("auto", 0, 1 or 2).
        strategy: a `tf.distribute.Strategy`; None selects one from
            `config.distribution`.
        given: the `TrainingConfig` fields the user set (the CLI's flags);
            a resumed run reports those it ignores. None: every field.

    Returns:
        A `TrainResult`.
    """
    strategy = strategy or distribution.select_strategy(config.distribution)
    multi_worker_run = distribution.is_multi_worker(strategy)
    state = None
    if not multi_worker_run:  # multi-worker runs resume from TF checkpoints
        config, state = prepare_run(config, out_dir, resume, given)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        if multi_worker_run:
            return multi_worker.train_multi_worker(
                config, data_dir, out_dir, val_dir, strategy, resume=resume
            )
        return _fit(config, data_dir, out_dir, val_dir, strategy, state, verbose)
    finally:
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy("float32")


def _fit(config, data_dir, out_dir, val_dir, strategy, state, verbose):
    checkpoint_dir = os.path.join(out_dir, "checkpoints")
    _, val_pairs, train_ds, val_ds = build_datasets(config, data_dir, val_dir)
    epochs = math.ceil(config.steps / config.steps_per_epoch)

    with strategy.scope():
        if state:
            model = keras.saving.load_model(os.path.join(checkpoint_dir, "last.keras"))
            checked = checkpoint_state(state, model, config.steps_per_epoch)
            if checked != state:
                state = checked
                write_record(os.path.join(checkpoint_dir, "state.json"), state)
            # The run may have grown (--steps): the schedule spans the new length.
            model.optimizer.learning_rate = build_schedule(config)
        else:
            model = build_model(config)
            compile_model(model, config)
    steps_done = state["steps_done"] if state else 0
    initial_epoch = state["epochs_done"] if state else 0
    output_names = list(model.output_names)
    train_ds = with_synthetic_prefix(train_ds, config, steps_done).map(to_targets(output_names))
    if val_ds is not None:
        if strategy.num_replicas_in_sync > 1:
            val_ds = pad_to_full_batches(val_ds, len(val_pairs), config.batch_size, output_names)
        else:
            val_ds = val_ds.map(to_targets(output_names))
    with strategy.scope():
        build_training_state(model, train_ds.element_spec)

    # Created once the data and the model are known to be good, so a failed
    # start leaves no empty run folder behind.
    os.makedirs(checkpoint_dir, exist_ok=True)
    write_record(
        os.path.join(out_dir, "config.json"),
        {
            "training": config.to_dict(),
            "model": model.get_config(),
            "data": {"train": os.fspath(data_dir), "val": val_dir and os.fspath(val_dir),
                     "val_pairs": len(val_pairs)},
            "replicas": strategy.num_replicas_in_sync,
        },
    )
    best_so_far = (state or {}).get("best_val_fused_mae") or math.inf
    callbacks = [
        LearningRateLogger(),
        RunCheckpoint(checkpoint_dir, config.steps_per_epoch, best_so_far),
        keras.callbacks.CSVLogger(os.path.join(out_dir, "log.csv"), append=bool(state)),
        keras.callbacks.TensorBoard(os.path.join(out_dir, "tensorboard"), write_graph=False),
        keras.callbacks.TerminateOnNaN(),
    ]
    start = time.time()
    model.fit(
        train_ds,
        epochs=epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=config.steps_per_epoch,
        validation_data=val_ds,
        callbacks=callbacks,
        verbose=verbose,
    )
    elapsed = time.time() - start
    return finish_run(model, out_dir, config, steps_done=epochs * config.steps_per_epoch,
                      seconds=elapsed, has_best=val_ds is not None)
