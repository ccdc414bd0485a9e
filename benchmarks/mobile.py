"""Our TFLite files as phones run them, against MediaPipe's selfie segmenter.

For each shipped model and mode (its int8 file, and float32 / float16 exports
made here at the same size): file size; LiteRT CPU latency at 1 and 2
threads; whether LiteRT's GPU accelerator takes every op (and its op counts
where not); MediaPipe ImageSegmenter end-to-end latency on one photo; max-F,
F@0.5 and MAE through MediaPipe on CUHK test (the photo goes in whole, as an
app passes it, and MediaPipe resizes it), and how far each MediaPipe map is
from `detect`'s map of the same file. MediaPipe's selfie segmenter (a
phone-grade segmenter, 256x256) is timed in the same run, interleaved, as the
anchor; latencies are medians, and ratios to it are the figures to compare.
Writes JSON:

    bash .ci/fetch_lavapipe.sh ~/.cache/lavapipe && export LAVAPIPE_DIR=~/.cache/lavapipe
    python -m benchmarks.mobile --out /tmp/mobile.json

The selfie segmenter ships inside the `mediapipe==0.10.14` wheel
(`mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite`); pass
`--selfie PATH`, or let the script `pip download` the wheel once into
`~/.cache/keras-defusion/`.
"""

import argparse
import glob
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results
from keras_defusion import evaluation
from keras_defusion import export as export_lib
from keras_defusion.export import litert as runtimes
from keras_defusion.inference.detector import load_detector
from keras_defusion.io.files import atomic_write
from keras_defusion.io.files import write_json
from keras_defusion.io import images as image_io
from keras_defusion.models import pretrained

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "CUHK" / "test"
CACHE = pathlib.Path.home() / ".cache" / "keras-defusion"
SELFIE_WHEEL = "mediapipe==0.10.14"
SELFIE_IN_WHEEL = "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"
FLOAT_MODES = ("float32", "float16")


def selfie_segmenter(path=None):
    """The selfie segmenter's file: `path`, the cache, or a pip download."""
    if path:
        return pathlib.Path(path)
    cached = CACHE / "selfie_segmentation.tflite"
    if not cached.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as folder:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--only-binary=:all:", "--python-version", "3.11", "--platform",
                 "manylinux2014_x86_64", "-d", folder, SELFIE_WHEEL],
                check=True,
            )
            wheel = glob.glob(os.path.join(folder, "*.whl"))[0]
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read(SELFIE_IN_WHEEL)
        atomic_write(cached, lambda tmp: pathlib.Path(tmp).write_bytes(data))
    return cached


def _interpreter(path, threads):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=os.fspath(path), num_threads=threads)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()[0]
    rng = np.random.default_rng(0)
    if np.dtype(details["dtype"]).kind == "f":
        data = rng.uniform(0, 1, details["shape"]).astype(details["dtype"])
    else:
        data = rng.integers(0, 255, details["shape"]).astype(details["dtype"])
    interpreter.set_tensor(details["index"], data)
    interpreter.invoke()  # the first run allocates
    return interpreter


def cpu_latencies(files, threads, rounds):
    """Median seconds per run of each file, interleaved over `rounds`."""
    interpreters = {key: _interpreter(path, threads) for key, path in files.items()}
    times = {key: [] for key in files}
    for _ in range(rounds):
        for key, interpreter in interpreters.items():
            start = time.perf_counter()
            interpreter.invoke()
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


class _MediaPipeDetector:
    """`evaluation.evaluate_detector`'s interface over MediaPipe; also records
    each map's mean |difference| to `detect`'s map of the same file."""

    def __init__(self, segmenter, reference):
        self.segmenter = segmenter
        self.reference = reference
        self.differences = []

    def detect(self, rgb, outputs=None):
        blur_map = self.segmenter.segment(rgb)
        expected = self.reference.detect(rgb)
        self.differences.append(float(np.abs(blur_map - expected).mean()))
        return blur_map


def mediapipe_scores(path, data_dir, limit, photo, rounds):
    """Scores through MediaPipe on `data_dir`, and its median end-to-end time."""
    with runtimes.MediaPipeSegmenter(path) as segmenter:
        detector = _MediaPipeDetector(segmenter, load_detector(str(path)))
        images_dir = os.path.join(data_dir, "images")
        gt_dir = os.path.join(data_dir, "gt")
        if limit:
            stems = sorted(p.stem for p in pathlib.Path(gt_dir).iterdir())[:limit]
            with tempfile.TemporaryDirectory() as folder:
                os.mkdir(os.path.join(folder, "gt"))
                for stem in stems:
                    (gt_file,) = pathlib.Path(gt_dir).glob(stem + ".*")
                    os.symlink(gt_file, os.path.join(folder, "gt", gt_file.name))
                result = evaluation.evaluate_detector(
                    detector, images_dir, folder, name="mediapipe")
        else:
            result = evaluation.evaluate_detector(detector, images_dir, gt_dir, name="mediapipe")
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            segmenter.segment(photo)
            times.append(time.perf_counter() - start)
    scores = result["mediapipe"]
    return {
        "images": scores["images"],
        "max_f": scores["max_f"],
        "f_at_0.5": scores["f_at_0.5"],
        "mae": scores["mae"],
        "end_to_end_seconds": statistics.median(times),
        "photo_size": list(photo.shape[:2]),
        "difference_to_detect": {
            "mean": float(np.mean(detector.differences)),
            "max": float(np.max(detector.differences)),
            "share_within_0.02": float(np.mean(np.array(detector.differences) <= 0.02)),
            "note": "per photo: mean |MediaPipe's map - detect's map|, same file",
        },
    }


def gpu_summary(path, size, rounds):
    """Whether LiteRT's GPU accelerator takes every op of the file, and its
    median time (on lavapipe, a software driver on this CPU, where no GPU is:
    it shows that the file runs, not a phone GPU's speed)."""
    dtype = export_lib.tflite_io_details(export_lib.load_tflite(path))[0]["dtype"]
    images = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(dtype)
    try:
        run = runtimes.run_on_gpu(path, images, rounds=rounds)
    except runtimes.RuntimeUnavailable as error:
        return {"available": False, "reason": str(error)}
    return {"available": True, "fully_accelerated": run.fully_accelerated,
            "gpu_ops": run.gpu_ops, "cpu_ops": run.cpu_ops, "seconds": run.gpu_seconds,
            "driver": os.environ.get("LAVAPIPE_DIR") and "lavapipe (software Vulkan)"}


def model_cost(model, size):
    """Parameters and multiply-adds of a Keras model at size x size."""
    from benchmarks.speed import count_macs

    return {"parameters": int(model.count_params()),
            "gmacs": count_macs(model.inference_model(), size, size) / 1e9}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_out_arguments(parser)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CUHK test folder")
    parser.add_argument("--models", default=",".join(pretrained.available_models()),
                        help="comma-separated shipped model names")
    parser.add_argument("--selfie", help="selfie_segmentation.tflite (default: fetched)")
    parser.add_argument("--limit", type=int, help="score only the first N test photos")
    parser.add_argument("--rounds", type=int, default=30, help="timed runs per file")
    args = parse_args_keeping_results(parser, argv)

    selfie = selfie_segmenter(args.selfie)
    photo = image_io.load_rgb(sorted(pathlib.Path(args.data, "images").iterdir())[0])
    report = {"platform": platform.platform(), "processor": platform.processor(),
              "cpu_count": os.cpu_count(), "rounds": args.rounds,
              "note": "shared, noisy machine: compare ratios measured in this run",
              "selfie_segmenter": {"file": SELFIE_WHEEL + ":" + SELFIE_IN_WHEEL,
                                   "file_bytes": os.path.getsize(selfie)},
              "models": {}}
    with tempfile.TemporaryDirectory() as folder:
        files = {"selfie": selfie}
        for name in args.models.split(","):
            model = pretrained.load_pretrained(name)
            int8 = pretrained.pretrained_dir(name) / pretrained.INT8_TFLITE_FILE
            details = export_lib.tflite_io_details(export_lib.load_tflite(int8))
            input_size, size = (int(d["shape"][1]) for d in details)
            files[(name, "int8")] = int8
            for mode in FLOAT_MODES:  # made as the shipped int8 file was
                files[(name, mode)] = export_lib.export_tflite(
                    model, os.path.join(folder, f"{name}-{mode}.tflite"), mode,
                    inference_size=size, input_reduction=input_size // size)
            report["models"][name] = {"inference_size": size, "input_size": input_size,
                                      **model_cost(model, size), "modes": {}}
        latency = {threads: cpu_latencies(files, threads, args.rounds) for threads in (1, 2)}
        for threads in (1, 2):
            report["selfie_segmenter"][f"cpu_seconds_{threads}_thread"] = latency[threads]["selfie"]
        for key, path in files.items():
            if key == "selfie":
                continue
            name, mode = key
            size = report["models"][name]["input_size"]
            entry = {"file_bytes": os.path.getsize(path)}
            for threads in (1, 2):
                seconds = latency[threads][key]
                entry[f"cpu_seconds_{threads}_thread"] = seconds
                entry[f"cpu_ratio_to_selfie_{threads}_thread"] = seconds / latency[threads]["selfie"]
            entry["gpu_accelerator"] = gpu_summary(path, size, max(3, args.rounds // 3))
            entry["mediapipe"] = mediapipe_scores(path, args.data, args.limit, photo,
                                                  max(5, args.rounds // 3))
            report["models"][name]["modes"][mode] = entry
            print(f"{name} {mode}: {entry['file_bytes'] / 1e6:.1f} MB, "
                  f"{entry['cpu_seconds_1_thread'] * 1e3:.1f} ms (1 thread, "
                  f"{entry['cpu_ratio_to_selfie_1_thread']:.1f}x selfie), "
                  f"GPU {entry['gpu_accelerator']}, MediaPipe max-F "
                  f"{entry['mediapipe']['max_f']:.3f} MAE {entry['mediapipe']['mae']:.3f}")
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
