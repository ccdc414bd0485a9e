"""Training throughput of each training preset, with the step time split.

Writes JSON: per training preset (`training.config.TRAINING_PRESETS`), under
the chosen `tf.distribute` strategy and precision, images per second and the
median seconds of

    input      pulling one batch from the training `tf.data` pipeline alone
    compute    one `fit` step on a batch already in memory
    full_step  one `fit` step on the training pipeline, as a run trains

so that input_share = input / full_step tells whether a run waits on its
data or on its model. Without --data a small synthetic folder is written to
a temporary directory. Encoder weights are always random (`--weights none`:
ImageNet weights cannot be downloaded here), which does not change the speed.
On a GPU the presets' own crops are timed over 5 steps after 2 of warm-up;
without one, 128 px crops over 2 steps after 1. An existing --out is kept
unless --overwrite is given. Usage:

    python -m benchmarks.train_throughput    # benchmarks/results/train_throughput.json
    python -m benchmarks.train_throughput --data DIR --mixed-precision --out mp.json
"""

import argparse
import datetime
import gc
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time

import keras
import tensorflow as tf

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results
from keras_defusion.cli import train as train_cli
from keras_defusion.data import synthetic
from keras_defusion.io.files import write_json
from keras_defusion.training import build
from keras_defusion.training import datasets
from keras_defusion.training import distribution
from keras_defusion.training.config import TRAINING_PRESETS
from keras_defusion.training.config import get_training_config

SYNTHETIC_PAIRS = 32
SYNTHETIC_SIZE = (480, 640)  # height, width: about a CUHK photo
# Flags left unset take these. Without a GPU the presets' own crops take
# 15-25 s a step on 2 cores, so a CPU run uses smaller crops and fewer steps.
GPU_DEFAULTS = {"steps": 5, "warmup": 2, "image_size": None}
CPU_DEFAULTS = {"steps": 2, "warmup": 1, "image_size": 128}


class StepTimer(keras.callbacks.Callback):
    """Records the seconds between consecutive batch ends of `fit`.

    Each interval covers the whole step: fetching the batch, the train
    function and the callbacks. Reading the loss makes the step finish on the
    device before the clock is read.
    """

    def on_train_begin(self, logs=None):
        self.ends = [time.perf_counter()]

    def on_train_batch_end(self, batch, logs=None):
        float((logs or {}).get("loss", 0.0))
        self.ends.append(time.perf_counter())

    @property
    def seconds(self):
        return [end - begin for begin, end in zip(self.ends, self.ends[1:])]


def time_fit(model, dataset, warmup, steps):
    """Seconds per step of `model.fit` on `dataset`, warm-up steps dropped."""
    timer = StepTimer()
    model.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, callbacks=[timer],
              shuffle=False, verbose=0)
    return timer.seconds[warmup:]


def time_input(dataset, warmup, steps):
    """Seconds per batch pulled from `dataset` alone, warm-up batches dropped."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        batch = next(iterator)
        tf.nest.map_structure(lambda t: t.numpy(), batch)  # on the host, as fit needs it
        seconds.append(time.perf_counter() - start)
    return seconds


def measure_preset(preset, args, data_dir, strategy):
    """Builds one preset's pipeline and model and times input, compute and full steps."""
    overrides = dict(backbone_weights=None, val_fraction=0.0, synthetic_steps=0,
                     mixed_precision=args.mixed_precision)
    if args.distribution:
        overrides["distribution"] = args.distribution
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    if args.image_size:
        overrides["image_size"] = args.image_size
    if args.model_set:
        model_overrides = dict(TRAINING_PRESETS[preset].model_overrides)
        model_overrides.update(train_cli._parse_model_overrides(args.model_set))
        overrides["model_overrides"] = model_overrides
    config = get_training_config(preset, **overrides)

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        start = time.perf_counter()
        _, _, train_ds, _ = datasets.build_datasets(config, data_dir)
        with strategy.scope():
            model = build.build_model(config)
            build.compile_model(model, config)
        policy = model.dtype_policy.name
        jit_compile = bool(model.jit_compile)  # Keras' "auto": XLA on GPUs only
        train_ds = train_ds.map(datasets.to_targets(list(model.output_names)))
        build_seconds = time.perf_counter() - start

        input_seconds = time_input(train_ds, args.warmup, args.steps)
        # One batch held in memory: the pipeline costs nothing, fit is unchanged.
        fixed = next(iter(train_ds))
        start = time.perf_counter()
        compute_seconds = time_fit(
            model, tf.data.Dataset.from_tensors(fixed).repeat(), args.warmup, args.steps)
        first_fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        full_seconds = time_fit(model, train_ds, args.warmup, args.steps)
        second_fit_seconds = time.perf_counter() - start
        params = int(model.count_params())
    finally:
        if args.mixed_precision:
            keras.mixed_precision.set_global_policy("float32")

    input_median = statistics.median(input_seconds)
    compute_median = statistics.median(compute_seconds)
    full_median = statistics.median(full_seconds)
    result = {
        "model_preset": config.model_preset,
        "model_overrides": config.model_overrides,
        "batch_size": config.batch_size,
        "image_size": config.image_size,
        "replicas": strategy.num_replicas_in_sync,
        "precision_policy": policy,
        "jit_compile": jit_compile,
        "parameters": params,
        "median_seconds": {
            "input": input_median,
            "compute": compute_median,
            "full_step": full_median,
        },
        "images_per_second": config.batch_size / full_median,
        "compute_images_per_second": config.batch_size / compute_median,
        "input_images_per_second": config.batch_size / input_median,
        "input_share": input_median / full_median,
        "all_seconds": {
            "input": input_seconds,
            "compute": compute_seconds,
            "full_step": full_seconds,
        },
        "setup_seconds": {
            "datasets_and_model": build_seconds,
            "compute_fit_with_tracing": first_fit_seconds,
            "full_step_fit": second_fit_seconds,
        },
    }
    del model, train_ds, fixed
    keras.backend.clear_session()
    gc.collect()
    return result


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.train_throughput",
        description="Images per second of each training preset, input vs compute.",
    )
    parser.add_argument("--data", help="training folder (images/ + gt/); default: a small "
                        "synthetic folder in a temporary directory")
    parser.add_argument("--presets", default="paper,mobile,scratch",
                        help="comma-separated training presets")
    parser.add_argument("--distribution", choices=("auto", "default", "mirrored", "multi_worker"),
                        default="auto")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="mixed_float16 compute (GPUs)")
    parser.add_argument("--steps", type=int,
                        help=f"timed steps of each kind (default {GPU_DEFAULTS['steps']}; "
                        f"{CPU_DEFAULTS['steps']} without a GPU)")
    parser.add_argument("--warmup", type=int,
                        help=f"untimed steps before them (default {GPU_DEFAULTS['warmup']}; "
                        f"{CPU_DEFAULTS['warmup']} without a GPU)")
    parser.add_argument("--batch-size", type=int, help="global batch (default: each preset's)")
    parser.add_argument("--image-size", type=int,
                        help="crop side (default: each preset's; "
                        f"{CPU_DEFAULTS['image_size']} without a GPU)")
    parser.add_argument("--weights", choices=("none",), default="none",
                        help="encoder weights: always random here")
    parser.add_argument("--model-set", action="append", metavar="KEY=VALUE",
                        help=argparse.SUPPRESS)  # shrinks the model for tests
    add_out_arguments(parser)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args_keeping_results(build_parser(), argv)
    gpus = tf.config.list_physical_devices("GPU")
    defaults = GPU_DEFAULTS if gpus else CPU_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    presets = [name for name in args.presets.split(",") if name]
    unknown = [name for name in presets if name not in TRAINING_PRESETS]
    if unknown or not presets or args.steps < 1 or args.warmup < 0:
        print(f"error: --presets must name some of {sorted(TRAINING_PRESETS)}, "
              "--steps >= 1, --warmup >= 0", file=sys.stderr)
        return 2

    strategy = distribution.select_strategy(args.distribution)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data
        if data_dir is None:
            data_dir = os.path.join(tmp, "synthetic")
            synthetic.write_synthetic_folder(data_dir, SYNTHETIC_PAIRS, SYNTHETIC_SIZE)
        results = {}
        for preset in presets:
            try:
                results[preset] = measure_preset(preset, args, data_dir, strategy)
            except Exception as error:  # e.g. out of memory: keep the other presets
                results[preset] = {"error": f"{type(error).__name__}: {error}"}
                print(f"{preset:>8}: failed: {results[preset]['error']}", file=sys.stderr)
                continue
            r = results[preset]
            m = r["median_seconds"]
            print(f"{preset:>8}: {r['images_per_second']:7.2f} img/s  batch {r['batch_size']} "
                  f"x {r['image_size']}px  input {m['input'] * 1000:.0f} ms  compute "
                  f"{m['compute'] * 1000:.0f} ms  step {m['full_step'] * 1000:.0f} ms  "
                  f"input share {r['input_share']:.2f}")

    report = {
        "command": "python -m benchmarks.train_throughput " + shlex.join(argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data": args.data or (f"synthetic: {SYNTHETIC_PAIRS} pairs of "
                              f"{SYNTHETIC_SIZE[1]}x{SYNTHETIC_SIZE[0]} "
                              "(keras_defusion.data.synthetic.write_synthetic_folder)"),
        "distribution": args.distribution,
        "strategy": type(strategy).__name__,
        "mixed_precision": args.mixed_precision,
        "backbone_weights": None,
        "steps": args.steps,
        "warmup": args.warmup,
        "defaults": "gpu" if gpus else "cpu (smaller crops, fewer steps)",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cpu_count": os.cpu_count(),
        "gpus": [device.name for device in gpus],
        "gpu_names": [tf.config.experimental.get_device_details(device).get("device_name")
                      for device in gpus],
        "notes": (
            "Medians over the timed steps; the machine may be shared and noisy. "
            "input: batches pulled from the tf.data pipeline alone (no training "
            "running); compute: fit steps on one batch held in memory; full_step: "
            "fit steps on the pipeline (its prefetch overlaps input with compute, "
            "so input + compute may exceed full_step; on a CPU both share the "
            "cores). images_per_second = batch_size / full_step. Encoder weights "
            "random (ImageNet weights not downloadable here): same speed."
        ),
        "results": results,
    }
    write_json(args.out, report, default=float)
    print(f"wrote {args.out}")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
