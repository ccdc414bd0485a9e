"""`keras-defusion detect` against the model's own time, per photo.

The model's time is the network alone on photos already at its inference
size, batched as detect batches them. Detect's time is `detect_paths` over
the same photos: decoding, resizing, the network, resizing back and writing
the map, overlay and panel. Their ratio is the cost of everything around the
network, which detect overlaps with it (issue 13 asks for at most 1.25):

    python -m benchmarks.detect_speed --out benchmarks/results/detect_speed.json
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


def measure(detector, photos, batch_size, repeats):
    """Per repeat: (model, detect) seconds per photo, measured back to back.

    Alternating the two lets a shared machine's load fall on both alike, so
    their ratio per repeat is steadier than either time.
    """
    prepared = [detector.prepare(load_rgb(photo))[0] for photo in photos]
    batches = [np.stack(prepared[i:i + batch_size]) for i in range(0, len(prepared), batch_size)]
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        detector.run_prepared(batches[0])  # traces the function
        detect_seconds(detector, photos[:batch_size], batch_size, os.path.join(folder, "warm"))
        for index in range(repeats):
            model = model_seconds(detector, batches, len(photos))
            detect = detect_seconds(detector, photos, batch_size, os.path.join(folder, str(index)))
            runs.append((model, detect))
    return runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model detect loads (default: the shipped one)")
    parser.add_argument("--images", default=str(DEFAULT_IMAGES), help="folder of photos")
    parser.add_argument("--limit", type=int, default=60, help="at most this many photos")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--repeats", type=int, default=5,
                        help="back-to-back runs of each; medians are reported")
    add_out_arguments(parser)
    args = parse_args_keeping_results(parser, argv)

    photos = list_images(args.images)[:args.limit]
    detector = load_detector(args.model)
    runs = measure(detector, photos, args.batch_size, args.repeats)
    model = float(np.median([m for m, _ in runs]))
    detect = float(np.median([d for _, d in runs]))
    ratio = float(np.median([d / m for m, d in runs]))
    report = {
        "model": str(detector.source),
        "inference_size": detector.inference_size,
        "photos": len(photos),
        "images": os.path.abspath(args.images),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "model_seconds_per_photo": round(model, 4),
        "detect_seconds_per_photo": round(detect, 4),
        "ratio": round(ratio, 3),
        "ratios": [round(d / m, 3) for m, d in runs],
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "note": "medians over --repeats back-to-back runs of the network alone and of "
                "detect; ratio is the median of the per-run ratios; detect writes the "
                "map, overlay and panel of each photo",
    }
    write_json(args.out, report)
    print(f"model {model:.4f} s/photo, detect {detect:.4f} s/photo: "
          f"ratio {ratio:.2f} ({args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
