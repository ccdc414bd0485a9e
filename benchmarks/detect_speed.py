"""`keras-defusion detect` against the model's own time, per photo.

The model's time is the network alone on photos already at its inference
size, batched as detect batches them. Detect's time is `detect_paths` over
the same photos: decoding, resizing, the network, resizing back and writing
the map, overlay and panel. Their ratio is the cost of everything around the
network, which detect overlaps with it (issue 13 asks for at most 1.25):

    python -m benchmarks.detect_speed --out benchmarks/results/detect_speed.json

With `--baseline MODEL` the baseline is measured in the same run, its repeats
alternating with the model's, and the report adds detect's time relative to
the baseline's (issue 15's budget: a new default at most 2x the old one).
"""

import argparse
import os
import pathlib
import platform
import tempfile
import time

import numpy as np

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results
from keras_defusion.inference.batch_detect import DEFAULT_BATCH_SIZE
from keras_defusion.inference.batch_detect import detect_paths
from keras_defusion.inference.detector import load_detector
from keras_defusion.io.files import write_json
from keras_defusion.io.images import list_images
from keras_defusion.io.images import load_rgb

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_IMAGES = REPO_ROOT.parent / "shared" / "data" / "CUHK" / "test" / "images"


def model_seconds(detector, batches, count):
    """Seconds per photo of the network alone over prepared `batches`."""
    start = time.perf_counter()
    for batch in batches:
        detector.run_prepared(batch)
    return (time.perf_counter() - start) / count


def detect_seconds(detector, photos, batch_size, folder):
    """Seconds per photo of `detect_paths` over `photos`, writing every output."""
    summary = detect_paths(photos, folder, detector, batch_size=batch_size, progress=False,
                           report=lambda message: None)
    assert len(summary.written) == len(photos), summary.failures
    return summary.seconds / len(photos)


def warm_up(detector, photos, batch_size, folder):
    """Prepared batches of `photos`, after tracing the network and detect once."""
    prepared = [detector.prepare(load_rgb(photo))[0] for photo in photos]
    batches = [np.stack(prepared[i:i + batch_size]) for i in range(0, len(prepared), batch_size)]
    detector.run_prepared(batches[0])  # traces the function
    detect_seconds(detector, photos[:batch_size], batch_size, os.path.join(folder, "warm"))
    return batches


def measure(detectors, photos, batch_size, repeats):
    """Per detector and repeat: (model, detect) seconds per photo.

    Runs alternate (the network alone, then detect, then the next detector),
    so a shared machine's load falls on all alike and ratios between runs of
    one repeat are steadier than any single time.

    Returns:
        A list per detector of `repeats` (model, detect) pairs.
    """
    runs = [[] for _ in detectors]
    with tempfile.TemporaryDirectory() as folder:
        batches = [warm_up(detector, photos, batch_size, os.path.join(folder, str(number)))
                   for number, detector in enumerate(detectors)]
        for index in range(repeats):
            for number, detector in enumerate(detectors):
                model = model_seconds(detector, batches[number], len(photos))
                detect = detect_seconds(detector, photos, batch_size,
                                        os.path.join(folder, f"{number}-{index}"))
                runs[number].append((model, detect))
    return runs


def summary(detector, runs):
    """Medians of one detector's runs, rounded for the report."""
    return {
        "model": str(detector.source),
        "inference_size": detector.inference_size,
        "model_seconds_per_photo": round(float(np.median([m for m, _ in runs])), 4),
        "detect_seconds_per_photo": round(float(np.median([d for _, d in runs])), 4),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model detect loads (default: the shipped one)")
    parser.add_argument("--baseline",
                        help="a second model measured in the same run, for detect's time ratio")
    parser.add_argument("--images", default=str(DEFAULT_IMAGES), help="folder of photos")
    parser.add_argument("--limit", type=int, default=60, help="at most this many photos")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--repeats", type=int, default=5,
                        help="back-to-back runs of each; medians are reported")
    add_out_arguments(parser)
    args = parse_args_keeping_results(parser, argv)

    photos = list_images(args.images)[:args.limit]
    detectors = [load_detector(args.model)]
    if args.baseline:
        detectors.append(load_detector(args.baseline))
    runs = measure(detectors, photos, args.batch_size, args.repeats)
    ratios = [d / m for m, d in runs[0]]
    report = summary(detectors[0], runs[0])
    report.update({
        "photos": len(photos),
        "images": os.path.abspath(args.images),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "ratio": round(float(np.median(ratios)), 3),
        "ratios": [round(r, 3) for r in ratios],
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "note": "medians over --repeats back-to-back runs of the network alone and of "
                "detect; ratio is the median of the per-run ratios; detect writes the "
                "map, overlay and panel of each photo",
    })
    message = (f"model {report['model_seconds_per_photo']:.4f} s/photo, detect "
               f"{report['detect_seconds_per_photo']:.4f} s/photo: ratio {report['ratio']:.2f}")
    if args.baseline:
        versus = [d / db for (_, d), (_, db) in zip(runs[0], runs[1])]
        report["baseline"] = summary(detectors[1], runs[1])
        report["detect_time_vs_baseline"] = round(float(np.median(versus)), 3)
        report["detect_times_vs_baseline"] = [round(v, 3) for v in versus]
        message += f"; detect {report['detect_time_vs_baseline']:.2f}x the baseline's"
    write_json(args.out, report)
    print(f"{message} ({args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
