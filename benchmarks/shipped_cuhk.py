"""The shipped model against the classical baselines on CUHK test.

Scores the shipped Keras model (float32) and its int8 TFLite file with the
evaluator, beside the LBP and HiFST-like baselines' maps (from
`python -m benchmarks.baselines_cuhk --maps-dir DIR`), an all-blurred map and the
paper's Table 1, and writes one JSON and the PR / F-measure plots:

    python -m benchmarks.baselines_cuhk --maps-dir /tmp/baseline_maps --out /tmp/baselines.json
    python -m benchmarks.shipped_cuhk --baseline-maps /tmp/baseline_maps --out /tmp/shipped.json
"""

import argparse
import os
import pathlib
import time

import numpy as np

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results
from keras_defusion import evaluation
from keras_defusion.inference.detector import load_detector
from keras_defusion.models import pretrained

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "CUHK" / "test"
PAPER_TABLE1 = {  # DeFusionNet (CVPR 2019) Table 1, Shi et al.'s dataset (F-beta, MAE)
    "LBP": (0.866, 0.186), "HiFST": (0.856, 0.232),
    "BTBNet": (0.892, 0.105), "DeFusionNet": (0.917, 0.116),
}
HEADLINE = ("images", "max_f", "max_f_threshold", "f_at_0.5", "adaptive_f", "mae", "iou_at_0.5")


class _TimedDetector:
    """Wraps a detector to record seconds per photo."""

    def __init__(self, detector):
        self.detector = detector
        self.seconds = []

    def detect(self, image, outputs=None):
        start = time.perf_counter()
        blur = self.detector.detect(image, outputs=outputs)
        self.seconds.append(time.perf_counter() - start)
        return blur


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--model", default=pretrained.DEFAULT_MODEL,
                        help="shipped name or model path")
    parser.add_argument("--tflite", help="int8 TFLite file (default: the shipped --model's)")
    parser.add_argument("--baseline-maps", help="folder with lbp/ and hifst/ map folders")
    add_out_arguments(parser)
    parser.add_argument("--plots", help="folder for the PR / F-measure curve PNGs")
    args = parse_args_keeping_results(parser, argv)
    if args.tflite is None:
        if args.model not in pretrained.PRETRAINED_MODELS:
            parser.error("--tflite is needed with a --model that is not a shipped name")
        args.tflite = str(pretrained.pretrained_dir(args.model) / pretrained.INT8_TFLITE_FILE)

    images_dir = os.path.join(args.data, "images")
    results, timings = {}, {}
    for name, source in (("ours (Keras float32)", args.model),
                         ("ours (TFLite int8)", args.tflite)):
        detector = _TimedDetector(load_detector(source))
        results.update(evaluation.evaluate_detector(detector, images_dir, args.data, name=name))
        timings[name] = {"median_seconds_per_photo": float(np.median(detector.seconds)),
                         "inference_size": detector.detector.image_size}
    if args.baseline_maps:
        folders = {name: os.path.join(args.baseline_maps, sub)
                   for name, sub in (("LBP (ours)", "lbp"), ("HiFST-like (ours)", "hifst"))
                   if os.path.isdir(os.path.join(args.baseline_maps, sub))}
        results.update(evaluation.evaluate_folders(folders, args.data))
    if args.plots:
        evaluation.plot_curves(results, args.plots, title="CUHK test")
    document = evaluation.build_report(results, args.data, extra={
        "timing": timings,
        "paper_table1": {k: {"f_beta": f, "mae": m} for k, (f, m) in PAPER_TABLE1.items()},
    })
    for entry in document["methods"].values():
        entry.pop("per_image", None)
    evaluation.write_report(args.out, document)
    print(evaluation.format_table(results))
    print(f"wrote {args.out}" + (f" and plots in {args.plots}" if args.plots else ""))


if __name__ == "__main__":
    main()
