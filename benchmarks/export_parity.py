"""Parity, accuracy, size and CPU latency of the TFLite exports against Keras.

Exports the model in every TFLite mode, runs each file in the LiteRT
interpreter on real photos (CUHK test by default) and writes JSON:

- float32 TFLite vs Keras: max and mean |map difference| (at S x S);
- each quantised mode vs the float Keras model: mean and max |difference|,
  and max-F and MAE on the ground truth with their change;
- file sizes, and whether full-integer int8 is at most 30% of float32;
- median latency per image, batch 1 at S x S: LiteRT at 1 and 2 threads
  against Keras (a `tf.function`, TensorFlow's default threads), in one run.

Usage (from a clone; without --model a random-init "mobile" model is used):

    python -m benchmarks.export_parity --model model.keras --size 320 \\
        --out benchmarks/results/export_parity.json
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import numpy as np

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "CUHK")
INT8_MAX_SIZE_RATIO = 0.30


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help=".keras file; default: random-init 'mobile' DeFusionNet")
    parser.add_argument("--size", type=int, help="TFLite input side (default: the model's inference_size, or 320)")
    parser.add_argument("--images", default=os.path.join(DEFAULT_DATA, "test", "images"))
    parser.add_argument("--gt", help="ground-truth folder (default: gt/ beside --images)")
    parser.add_argument("--calibration", default=os.path.join(DEFAULT_DATA, "train", "images"),
                        help="int8 calibration photos (default: CUHK train, not the test set)")
    parser.add_argument("--num-calibration", type=int, default=100)
    parser.add_argument("--max-images", type=int, help="score only the first N test photos")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per latency sample")
    parser.add_argument("--seed", type=int, default=0, help="random init seed (no --model)")
    parser.add_argument("--keep", help="folder to keep the .tflite files in (default: temporary)")
    add_out_arguments(parser)
    return parser


def test_pairs(images_dir, gt_dir, limit):
    """(photo path, mask path) pairs matched by file stem, sorted."""
    from keras_defusion.io.images import is_image_file

    masks = {
        os.path.splitext(name)[0]: os.path.join(gt_dir, name)
        for name in os.listdir(gt_dir)
        if is_image_file(name)
    }
    pairs = [
        (os.path.join(images_dir, name), masks[os.path.splitext(name)[0]])
        for name in sorted(os.listdir(images_dir))
        if is_image_file(name) and os.path.splitext(name)[0] in masks
    ]
    if not pairs:
        raise SystemExit(f"no photo in {images_dir} has a mask in {gt_dir}")
    return pairs[:limit] if limit else pairs


def seconds(run, image):
    start = time.perf_counter()
    run(image)
    return time.perf_counter() - start


def main(argv=None):
    args = parse_args_keeping_results(build_parser(), argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras_defusion
    from keras_defusion import export as export_lib

    if args.model:
        model = export_lib.load_model_file(args.model)
        source = {"kind": "file", "path": os.path.abspath(args.model)}
    else:
        keras_defusion.set_seed(args.seed)
        model = keras_defusion.DeFusionNet(
            "mobile", backbone_weights=None, inference_size=args.size or 320
        )
        source = {
            "kind": "random init",
            "preset": "mobile",
            "backbone_weights": None,
            "seed": args.seed,
            "kernels": "he_normal, one independent draw per Conv2D (the mobile preset's init)",
            "note": "untrained: parity, sizes and latency are meaningful; max-F and MAE are not",
        }
    from keras_defusion.inference.contract import model_inference_size

    size = args.size or model_inference_size(model)
    gt_dir = args.gt or os.path.join(os.path.dirname(os.path.abspath(args.images)), "gt")
    pairs = test_pairs(args.images, gt_dir, args.max_images)
    print(f"{len(pairs)} test photos at {size}x{size}")

    with tempfile.TemporaryDirectory(prefix="export_parity-") as scratch:
        report = measure(args, model, source, size, pairs, gt_dir, args.keep or scratch)
    return report


def measure(args, model, source, size, pairs, gt_dir, folder):
    """Exports every mode into `folder`, measures, writes and returns the report."""
    import keras
    import tensorflow as tf

    import keras_defusion
    from keras_defusion import export as export_lib
    from keras_defusion.io.files import write_json
    from keras_defusion.evaluation.metrics import ScoreAccumulator
    from keras_defusion.io.images import load_mask
    from keras_defusion.io.images import load_rgb

    files, conversion_seconds = {}, {}
    for mode in export_lib.TFLITE_MODES:
        start = time.perf_counter()
        files[mode] = export_lib.export_tflite(
            model,
            os.path.join(folder, f"defusionnet_{size}_{mode}.tflite"),
            mode,
            image_size=size,
            input_reduction=1,  # the Keras model's own input: parity of conversion alone
            calibration_images=args.calibration if mode == "int8" else None,
            num_calibration=args.num_calibration,
        )
        conversion_seconds[mode] = time.perf_counter() - start
        print(f"  {mode}: {os.path.getsize(files[mode]) / 1e6:.2f} MB in {conversion_seconds[mode]:.0f} s")

    # Maps of every runner on every photo; scores against the ground truth.
    inference = model.inference_model()
    keras_fn = tf.function(lambda x: inference(x, training=False), reduce_retracing=True)
    interpreters = {mode: export_lib.load_tflite(path, num_threads=2) for mode, path in files.items()}
    scores = {name: ScoreAccumulator() for name in ["keras"] + list(files)}
    diffs = {mode: {"max": 0.0, "sum": 0.0, "count": 0} for mode in files}
    for photo_path, mask_path in pairs:
        batch = export_lib.preprocess_photo(load_rgb(photo_path), size)
        gt = load_mask(mask_path, "blur-white")
        reference = keras_fn(batch).numpy()[0, ..., 0]
        scores["keras"].add(reference, gt)
        for mode, interpreter in interpreters.items():
            blur_map = export_lib.run_tflite(interpreter, batch)[0, ..., 0]
            scores[mode].add(blur_map, gt)
            difference = np.abs(blur_map - reference)
            diffs[mode]["max"] = max(diffs[mode]["max"], float(difference.max()))
            diffs[mode]["sum"] += float(difference.sum())
            diffs[mode]["count"] += difference.size
    summary = {name: scores[name].result() for name in scores}

    # Latency: batch 1 at S x S, one run, interleaved rounds.
    image = export_lib.preprocess_photo(load_rgb(pairs[0][0]), size)
    runners = {"keras": lambda x: keras_fn(x).numpy()}
    for mode, path in files.items():
        for threads in (1, 2):
            interpreter = export_lib.load_tflite(path, num_threads=threads)
            runners[f"{mode}@{threads}"] = lambda x, it=interpreter: export_lib.run_tflite(it, x)
    samples = {name: [] for name in runners}
    for name, run in runners.items():
        run(image)  # warm up
    for _ in range(args.repeats):
        for name, run in runners.items():
            samples[name].append(seconds(run, image))
    latency = {name: statistics.median(times) for name, times in samples.items()}

    float_bytes = os.path.getsize(files["float32"])
    modes = {}
    for mode, path in files.items():
        entry = {
            "file_bytes": os.path.getsize(path),
            "size_ratio_to_float32": os.path.getsize(path) / float_bytes,
            "conversion_seconds": conversion_seconds[mode],
            "vs_keras_max_abs": diffs[mode]["max"],
            "vs_keras_mean_abs": diffs[mode]["sum"] / diffs[mode]["count"],
            "max_f": summary[mode]["max_f"],
            "mae": summary[mode]["mae"],
            "delta_max_f": summary[mode]["max_f"] - summary["keras"]["max_f"],
            "delta_mae": summary[mode]["mae"] - summary["keras"]["mae"],
            "latency_median_seconds": {
                "threads_1": latency[f"{mode}@1"],
                "threads_2": latency[f"{mode}@2"],
            },
        }
        sidecar = json.load(open(export_lib.tflite_sidecar_path(path)))
        entry["input"] = {k: sidecar["input"][k] for k in ("dtype", "quantization")}
        entry["output"] = {k: sidecar["output"][k] for k in ("dtype", "quantization")}
        if sidecar.get("float_compute_ops"):
            entry["float_compute_ops"] = sidecar["float_compute_ops"]
        modes[mode] = entry
    int8_ratio = modes["int8"]["size_ratio_to_float32"]
    report = {
        "model": source,
        "inference_size": size,
        "keras_defusion_version": keras_defusion.__version__,
        "data": {
            "images": os.path.abspath(args.images),
            "gt": os.path.abspath(gt_dir),
            "photos_scored": len(pairs),
            "calibration": os.path.abspath(args.calibration),
            "calibration_photos": args.num_calibration,
            "preprocessing": "photo resized to SxS (bilinear, antialiased); map scored "
            "after bilinear resize to the mask's size",
        },
        "metrics": "keras_defusion.evaluation.metrics.ScoreAccumulator",
        "float32_vs_keras_max_abs": modes["float32"]["vs_keras_max_abs"],
        "float32_within_1e-4": modes["float32"]["vs_keras_max_abs"] <= 1e-4,
        "int8_size_ratio": int8_ratio,
        "int8_within_30_percent": int8_ratio <= INT8_MAX_SIZE_RATIO,
        "keras": {
            "max_f": summary["keras"]["max_f"],
            "mae": summary["keras"]["mae"],
            "latency_median_seconds": latency["keras"],
            "latency_note": "tf.function, batch 1, TensorFlow's default thread pools",
        },
        "modes": modes,
        "latency_repeats": args.repeats,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    try:
        import ai_edge_litert

        report["versions"]["ai_edge_litert"] = getattr(ai_edge_litert, "__version__", "unknown")
    except ImportError:
        pass
    write_json(args.out, report)

    print(f"keras: max-F {summary['keras']['max_f']:.4f}  MAE {summary['keras']['mae']:.4f}  "
          f"{latency['keras'] * 1000:.0f} ms")
    for mode, entry in modes.items():
        print(
            f"{mode:>8}: {entry['file_bytes'] / 1e6:6.2f} MB  max|d| {entry['vs_keras_max_abs']:.2e}  "
            f"mean|d| {entry['vs_keras_mean_abs']:.2e}  dF {entry['delta_max_f']:+.4f}  "
            f"dMAE {entry['delta_mae']:+.4f}  1t {latency[f'{mode}@1'] * 1000:.0f} ms  "
            f"2t {latency[f'{mode}@2'] * 1000:.0f} ms"
        )
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
