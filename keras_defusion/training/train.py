"""Train DeFusionNet: `python -m training.train --preset NAME --data DIR --out DIR`.

The work is done by `train()`, importable and tested; the CLI only parses
arguments. On one machine it runs `model.fit` under the chosen
`tf.distribute` strategy; across machines (`TF_CONFIG` with several workers)
it runs the custom `strategy.run` loop of `training.multi_worker`, because
Keras 3's `fit` fails under MultiWorkerMirroredStrategy
(keras-team/keras#20585).

A run folder holds:

    config.json              the TrainingConfig and the model's config
    checkpoints/last.keras   model and optimizer after the latest epoch
    checkpoints/best.keras   lowest validation MAE of the fused map (with --val
                             or val_fraction > 0)
    checkpoints/state.json   epochs and steps done, for --resume
    log.csv, history.json    one row per epoch (losses, metrics, lr)
    tensorboard/             TensorBoard logs
    final.keras              the trained model, float32: what detect,
                             evaluate and the exporters load
"""

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import keras
import tensorflow as tf

from keras_defusion import data as data_lib
from keras_defusion.export import tflite as export_lib
from keras_defusion.io import images as image_io
from keras_defusion.evaluation import metrics as metrics_lib
from keras_defusion.data import synthetic
from keras_defusion.data.pipeline import RESIZE_METHODS
from keras_defusion.models.defusionnet.encoder import BackboneWeightsError
from keras_defusion.io.images import atomic_write
from keras_defusion.training.losses import deep_supervision_losses
from keras_defusion.models.defusionnet.model import DeFusionNet
from keras_defusion.utils import set_seed
from keras_defusion.training import distribution
from keras_defusion.training.config import TRAINING_PRESETS
from keras_defusion.training.config import TrainingConfig
from keras_defusion.training.config import get_training_config
from keras_defusion.training.schedules import build_optimizer
from keras_defusion.training.schedules import build_schedule

BEST_METRIC = "val_fused_mae"


@dataclasses.dataclass
class TrainResult:
    """What a finished run left behind."""

    out_dir: str
    final_model: str
    best_model: str
    steps_done: int
    history: dict


def write_json(path, payload):
    """Writes run bookkeeping (config, state, history) as sorted JSON, atomically."""
    image_io.write_json(path, payload, sort_keys=True, default=float)


def save_model(model, path):
    atomic_write(path, model.save)


def build_model(config):
    """The `DeFusionNet` a `TrainingConfig` describes, with initial weights."""
    model = DeFusionNet(
        config.model_preset,
        backbone_weights=None if config.init_model else config.backbone_weights,
        inference_size=config.image_size,
        **config.model_overrides,
    )
    if config.init_model:
        source = export_lib.load_model_file(config.init_model)
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
        metrics={"fused": metrics_lib.training_metrics()},
    )


def _targets(output_names):
    """Maps (images, masks) to (images, {output name: masks})."""
    return lambda images, masks: (images, {name: masks for name in output_names})


def build_datasets(config, data_dir, val_dir=None, per_worker=None):
    """The training and validation `tf.data` pipelines of a run.

    Validation is the whole `val_dir` (or the `val_fraction` carved from
    `data_dir`), resized to the training size; None when neither is set.

    Args:
        config: the `TrainingConfig`.
        data_dir: training folder (CUHK or DUT layout).
        val_dir: validation folder, optional.
        per_worker: `(input_pipeline_id, num_pipelines)` to shard the
            training pairs for multi-worker runs.

    Returns:
        `(train_pairs, val_pairs, train_dataset, val_dataset)`; datasets
        yield `(images, masks)` with the global batch.
    """
    pairs = data_lib.find_pairs(data_dir)
    if val_dir:
        val_pairs = data_lib.find_pairs(val_dir)
        train_pairs = pairs
    elif config.val_fraction > 0:
        train_pairs, val_pairs = data_lib.split_pairs(pairs, config.val_fraction, config.seed)
    else:
        train_pairs, val_pairs = pairs, []
    # One error naming every missing, empty or mismatched file of both
    # splits, before any training starts; decoding errors are reported by
    # `make_dataset`, which decodes each file once.
    data_lib.validate_pairs(train_pairs + val_pairs, decode=False)
    if per_worker is not None:
        index, count = per_worker
        train_pairs = train_pairs[index::count]
    options = dict(
        max_rotation=config.max_rotation,
        scale_range=config.scale_range,
        flip=config.flip,
        resize_methods=config.resize_methods,
    )
    train = data_lib.make_dataset(
        train_pairs,
        config.image_size,
        config.batch_size,
        training=True,
        polarity=config.polarity,
        seed=config.seed,
        **options,
    )
    val = None
    if val_pairs:
        val = data_lib.make_dataset(
            val_pairs,
            config.image_size,
            config.batch_size,
            training=False,
            polarity=config.polarity,
        )
    return train_pairs, val_pairs, train, val


def pad_to_full_batches(dataset, count, batch_size, output_names):
    """Batches (images, masks) so every batch is full, for multi-replica runs.

    Keras' `fit` and `evaluate` under MirroredStrategy fail on a last batch
    that does not split evenly over the replicas (AddN shape mismatch).
    Instead of dropping the remainder, the set is padded with repeats of its
    first elements at sample weight 0, so every image counts exactly once.
    """
    pad = (-count) % batch_size

    def weighted(weight):
        def add(images, masks):
            targets = {name: masks for name in output_names}
            # [1, 1] per image: Keras matches a [B, 1, 1] weight to the
            # per-pixel loss [B, H, W]; a [B] weight would not broadcast.
            weights = {name: tf.fill([1, 1], weight) for name in output_names}
            return images, targets, weights

        return add

    elements = dataset.unbatch()
    padded = elements.map(weighted(1.0))
    if pad:
        padded = padded.concatenate(elements.repeat().take(pad).map(weighted(0.0)))
    return padded.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _with_synthetic_prefix(train, config, steps_done):
    """Prepends the synthetic warm-up steps not yet done to the real data."""
    remaining = config.synthetic_steps - steps_done
    if remaining <= 0:
        return train
    warmup = synthetic.synthetic_dataset(
        config.image_size, config.batch_size, seed=config.seed + steps_done
    ).take(remaining)
    return warmup.concatenate(train)


class RunCheckpoint(keras.callbacks.Callback):
    """Saves `last.keras` and `state.json` each epoch, `best.keras` on improvement.

    Files are written to a temporary name and renamed, so an interrupted run
    keeps its previous checkpoint whole.
    """

    def __init__(self, checkpoint_dir, steps_per_epoch, best_so_far=math.inf):
        super().__init__()
        self.checkpoint_dir = checkpoint_dir
        self.steps_per_epoch = steps_per_epoch
        self.best = best_so_far

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        save_model(self.model, os.path.join(self.checkpoint_dir, "last.keras"))
        current = logs.get(BEST_METRIC)
        if current is not None and current < self.best:
            self.best = float(current)
            save_model(self.model, os.path.join(self.checkpoint_dir, "best.keras"))
        write_json(
            os.path.join(self.checkpoint_dir, "state.json"),
            {
                "epochs_done": epoch + 1,
                "steps_done": (epoch + 1) * self.steps_per_epoch,
                "best_val_fused_mae": None if math.isinf(self.best) else self.best,
            },
        )


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the current learning rate to each epoch's logs."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            optimizer = self.model.optimizer
            logs["learning_rate"] = float(
                optimizer.learning_rate(optimizer.iterations)
                if callable(optimizer.learning_rate)
                else optimizer.learning_rate
            )


def float32_copy(model):
    """The same model with float32 compute (drops a mixed-precision policy)."""
    if model.dtype_policy.name == "float32":
        return model
    config = model.get_config()
    config["dtype"] = "float32"
    # Layers take the global policy when built; Keras 3 has no policy scope.
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = DeFusionNet.from_config(config)
    finally:
        keras.config.set_dtype_policy(policy)
    copy.set_weights(model.get_weights())
    return copy


def _read_state(checkpoint_dir):
    path = os.path.join(checkpoint_dir, "state.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _history_from_csv(path):
    if not os.path.exists(path):
        return {}
    import csv

    with open(path) as f:
        rows = list(csv.DictReader(f))
    history = {key: [] for key in (rows[0] if rows else ())}
    for row in rows:
        for key in history:
            try:
                history[key].append(float(row.get(key)))
            except (TypeError, ValueError):  # a blank cell: not logged that epoch
                history[key].append(None)
    return history


def prepare_run(config, out_dir, resume, given=None):
    """Writes or checks the run's config; returns (config, state or None).

    On resume the saved settings win; the fields in `given` (the settings
    the user set, None for all of `config`) that differ are reported.
    """
    config_path = os.path.join(out_dir, "config.json")
    checkpoint_dir = os.path.join(out_dir, "checkpoints")
    state = _read_state(checkpoint_dir) if resume else None
    if resume and state is None:
        raise FileNotFoundError(
            f"--resume: no checkpoint to resume in {checkpoint_dir} "
            "(expected state.json and last.keras)"
        )
    if not resume and os.path.exists(os.path.join(checkpoint_dir, "last.keras")):
        raise FileExistsError(
            f"{out_dir} already holds a run; pass --resume to continue it or "
            "choose another --out"
        )
    if resume:
        with open(config_path) as f:
            saved = TrainingConfig.from_dict(json.load(f)["training"])
        # A resumed run keeps its hyperparameters; only the length may grow.
        ignored = sorted(
            key for key, value in config.to_dict().items()
            if key != "steps" and saved.to_dict()[key] != value
            and (given is None or key in given)
        )
        if ignored:
            print(f"--resume keeps the run's saved settings; ignoring: {', '.join(ignored)}",
                  file=sys.stderr)
        config = dataclasses.replace(saved, steps=max(config.steps, saved.steps))
    os.makedirs(checkpoint_dir, exist_ok=True)
    return config, state


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
    set_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        if multi_worker_run:
            from keras_defusion.training import multi_worker

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
    steps_done = state["steps_done"] if state else 0
    initial_epoch = state["epochs_done"] if state else 0
    epochs = math.ceil(config.steps / config.steps_per_epoch)

    with strategy.scope():
        if state:
            model = keras.saving.load_model(os.path.join(checkpoint_dir, "last.keras"))
            # The run may have grown (--steps): the schedule spans the new length.
            model.optimizer.learning_rate = build_schedule(config)
        else:
            model = build_model(config)
            compile_model(model, config)
    output_names = list(model.output_names)
    train_ds = _with_synthetic_prefix(train_ds, config, steps_done).map(_targets(output_names))
    if val_ds is not None:
        if strategy.num_replicas_in_sync > 1:
            val_ds = pad_to_full_batches(val_ds, len(val_pairs), config.batch_size, output_names)
        else:
            val_ds = val_ds.map(_targets(output_names))

    write_json(
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


def finish_run(model, out_dir, config, steps_done, seconds, has_best):
    """Writes final.keras (float32), history.json and the curve plot."""
    final_path = os.path.join(out_dir, "final.keras")
    save_model(float32_copy(model), final_path)
    history = _history_from_csv(os.path.join(out_dir, "log.csv"))
    write_json(
        os.path.join(out_dir, "history.json"),
        {"steps_per_epoch": config.steps_per_epoch, "steps_done": steps_done,
         "seconds_this_session": seconds, "epochs": history},
    )
    plot_history(history, config.steps_per_epoch, os.path.join(out_dir, "curve.png"))
    best = os.path.join(out_dir, "checkpoints", "best.keras")
    return TrainResult(
        out_dir=out_dir,
        final_model=final_path,
        best_model=best if has_best and os.path.exists(best) else final_path,
        steps_done=steps_done,
        history=history,
    )


def plot_history(history, steps_per_epoch, path):
    """Training curve: loss and validation fused MAE / F-beta against steps."""
    if not history.get("epoch"):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [(int(e) + 1) * steps_per_epoch for e in history["epoch"]]

    def plot(axis, key):
        points = [(s, v) for s, v in zip(steps, history.get(key, ())) if v is not None]
        if points:
            axis.plot(*zip(*points), label=key)

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("loss", "val_loss", "fused_loss", "val_fused_loss"):
        plot(ax_loss, key)
    ax_loss.set_xlabel("step")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    for key in ("fused_mae", "val_fused_mae", "fused_blur_f_beta", "val_fused_blur_f_beta"):
        plot(ax_val, key)
    ax_val.set_xlabel("step")
    ax_val.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


# === Command line ===


def _parse_model_overrides(items):
    overrides = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--model-set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value  # a bare string, e.g. normalization=group
    return overrides


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train DeFusionNet on image/mask folders.",
    )
    parser.add_argument("--preset", required=True, choices=sorted(TRAINING_PRESETS),
                        help="training preset; it names its model preset")
    parser.add_argument("--data", required=True, help="training folder (images/ + gt/)")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--val", help="validation folder; 'best' = lowest fused MAE on it")
    parser.add_argument("--steps", type=int, help="optimizer steps in all")
    parser.add_argument("--batch-size", type=int, help="global batch (per replica x replicas)")
    parser.add_argument("--image-size", type=int, help="side of the square training crops")
    parser.add_argument("--weights", help="encoder's initial weights: imagenet, none or PATH")
    parser.add_argument("--init-model", help="a .keras model, or a shipped model's name, "
                        "whose weights start the run (fine-tuning a trained model)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--lr", type=float, dest="learning_rate", help="initial learning rate")
    parser.add_argument("--optimizer", choices=("sgd", "adam", "adamw"))
    parser.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up steps")
    parser.add_argument("--resize-methods", help="comma-separated resampling methods drawn "
                        f"for training photos, from {','.join(RESIZE_METHODS)}")
    parser.add_argument("--steps-per-epoch", type=int,
                        help="steps between validations, checkpoints and log rows")
    parser.add_argument("--synthetic-steps", type=int, help="synthetic-defocus warm-up steps")
    parser.add_argument("--val-fraction", type=float,
                        help="share of --data kept for validation when --val is absent")
    parser.add_argument("--polarity", choices=("blur-white", "sharp-white"))
    parser.add_argument("--lambda-fused", type=float, help="Eq. 6's lambda_f (default 1)")
    parser.add_argument("--lambda-side", help="Eq. 6's lambda_i^j: one number for every side "
                        "output, or JSON mapping output names to weights, e.g. "
                        "'{\"step1_out1\": 0.5}' (default 1)")
    parser.add_argument("--mixed-precision", action="store_true", default=None,
                        help="mixed_float16 compute (GPUs)")
    parser.add_argument("--distribution", choices=("auto", "default", "mirrored", "multi_worker"))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--model-preset", help="override the preset's model preset")
    parser.add_argument("--model-set", action="append", metavar="KEY=VALUE",
                        help="override a DeFusionNetConfig field, e.g. num_steps=6 or "
                        "use_ffrm=false (repeatable)")
    parser.add_argument("--verbose", default="auto", help="Keras progress: auto, 0, 1 or 2")
    return parser


def _lambda_side(text):
    """--lambda-side: a number, or JSON mapping output names to weights."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"--lambda-side {text!r} is neither a number nor JSON ({error}); give e.g. "
            "0.5 or '{\"step1_out1\": 0.5}'"
        ) from None


def cli_overrides(args):
    """The `TrainingConfig` fields the command line sets, by name."""
    overrides = {
        key: value
        for key, value in {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "image_size": args.image_size,
            "init_model": args.init_model,
            "learning_rate": args.learning_rate,
            "optimizer": args.optimizer,
            "warmup_steps": args.warmup_steps,
            "resize_methods": args.resize_methods and args.resize_methods.split(","),
            "steps_per_epoch": args.steps_per_epoch,
            "synthetic_steps": args.synthetic_steps,
            "val_fraction": args.val_fraction,
            "polarity": args.polarity,
            "lambda_fused": args.lambda_fused,
            "lambda_side": args.lambda_side and _lambda_side(args.lambda_side),
            "mixed_precision": args.mixed_precision,
            "distribution": args.distribution,
            "seed": args.seed,
            "model_preset": args.model_preset,
        }.items()
        if value is not None
    }
    if args.weights is not None:
        overrides["backbone_weights"] = None if args.weights.lower() == "none" else args.weights
    if args.model_set:
        model_overrides = dict(TRAINING_PRESETS[args.preset].model_overrides)
        model_overrides.update(_parse_model_overrides(args.model_set))
        overrides["model_overrides"] = model_overrides
    return overrides


def config_from_args(args):
    return get_training_config(args.preset, **cli_overrides(args))


def main(argv=None):
    args = build_parser().parse_args(argv)
    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    try:
        overrides = cli_overrides(args)
        config = get_training_config(args.preset, **overrides)
        result = train(config, args.data, args.out, args.val, resume=args.resume,
                       verbose=verbose, given=set(overrides))
    except (data_lib.DataError, BackboneWeightsError, export_lib.ExportError,
            FileNotFoundError, FileExistsError,
            ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"trained {result.steps_done} steps; model: {result.final_model}"
          f" (best: {result.best_model})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
