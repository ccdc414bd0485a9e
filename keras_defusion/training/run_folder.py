"""A training run's folder: config, checkpoints, state, history and curve.

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

import dataclasses
import json
import math
import os
import sys
import zipfile

import keras

from keras_defusion.errors import DataError
from keras_defusion.io import files
from keras_defusion.io.files import atomic_write
from keras_defusion.models.defusionnet.model import DeFusionNet
from keras_defusion.training.config import TrainingConfig


BEST_METRIC = "val_fused_mae"


@dataclasses.dataclass
class TrainResult:
    """What a finished run left behind."""

    out_dir: str
    final_model: str
    best_model: str
    steps_done: int
    history: dict


def write_record(path, payload):
    """Writes run bookkeeping (config, state, history) as sorted JSON, atomically."""
    files.write_json(path, payload, sort_keys=True, default=float)


def save_model(model, path):
    atomic_write(path, model.save)


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
        write_record(
            os.path.join(self.checkpoint_dir, "state.json"),
            {
                "epochs_done": epoch + 1,
                "steps_done": (epoch + 1) * self.steps_per_epoch,
                "best_val_fused_mae": None if math.isinf(self.best) else self.best,
                # What last.keras holds: a kill between the two files shows
                # as a checkpoint whose optimizer is past this count.
                "optimizer_iterations": optimizer_iterations(self.model),
            },
        )


def checkpoint_state(state, model, steps_per_epoch):
    """`state.json` made to match the loaded `last.keras`.

    Each epoch writes last.keras, then state.json. A kill between the two
    leaves a checkpoint one epoch past the state; resuming by the state would
    train that epoch twice.
    """
    saved = state.get("optimizer_iterations")
    if saved is None or optimizer_iterations(model) == saved:
        return state
    return {**state, "epochs_done": state["epochs_done"] + 1,
            "steps_done": state["steps_done"] + steps_per_epoch,
            "optimizer_iterations": optimizer_iterations(model)}


def optimizer_iterations(model):
    """The optimizer's step count (a mirrored variable under a strategy)."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


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
    try:
        with open(path) as f:
            state = json.load(f)
        if not isinstance(state, dict) or "epochs_done" not in state:
            raise ValueError("no epochs_done")
    except ValueError as e:
        raise DataError(
            f"{path}: not a readable run state ({e}); --resume needs it. Restore it "
            "from a copy of the run, or start a new --out"
        ) from None
    last = os.path.join(checkpoint_dir, "last.keras")
    if not zipfile.is_zipfile(last):
        what = "missing" if not os.path.exists(last) else "not a readable .keras file (truncated?)"
        raise DataError(
            f"{last}: {what}; --resume needs it beside {path}. Start a new --out, or "
            "resume from another copy of the run"
        )
    return state


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
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"--out {out_dir} is a file; give a folder for the run")
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
        for folder in (out_dir, checkpoint_dir):  # what a killed run left half-written
            files.remove_stale_temporaries(folder)
    return config, state


def finish_run(model, out_dir, config, steps_done, seconds, has_best):
    """Writes final.keras (float32), history.json and the curve plot."""
    final_path = os.path.join(out_dir, "final.keras")
    save_model(float32_copy(model), final_path)
    history = _history_from_csv(os.path.join(out_dir, "log.csv"))
    write_record(
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
