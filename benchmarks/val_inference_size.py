"""Score a trained model on its run's validation split at several inference sizes.

The validation split is the one training carved from the training folder
(same `val_fraction` and seed, read from the run's config.json), so the
inference size is chosen without looking at the test set. Writes JSON:

    python -m benchmarks.val_inference_size --run runs/cuhk --sizes 160 192 256 320
"""

import argparse
import json
import os

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results
from keras_defusion import data
from keras_defusion.evaluation import metrics
from keras_defusion.inference.detector import load_detector
from keras_defusion.io import files
from keras_defusion.io import images as image_io

SUMMARY_KEYS = ("images", "max_f", "max_f_threshold", "f_at_0.5", "mae", "iou_at_0.5")


def validation_pairs(run_dir):
    with open(os.path.join(run_dir, "config.json")) as f:
        saved = json.load(f)
    training = saved["training"]
    if saved["data"].get("val"):
        return data.find_pairs(saved["data"]["val"]), training["polarity"]
    _, val_pairs = data.split_pairs(
        data.find_pairs(saved["data"]["train"]), training["val_fraction"], training["seed"]
    )
    return val_pairs, training["polarity"]


def score_sizes(model_file, pairs, polarity, sizes):
    results = {}
    for size in sizes:
        detector = load_detector(model_file, image_size=size)
        accumulator = metrics.ScoreAccumulator()
        for pair in pairs:
            blur = detector.detect(pair.image_path)
            accumulator.add(blur, image_io.load_mask(pair.mask_path, polarity))
        summary = accumulator.result()
        results[size] = {key: summary[key] for key in SUMMARY_KEYS}
        print(size, {k: round(v, 4) for k, v in results[size].items()}, flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--model", help="default: the run's checkpoints/best.keras")
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 192, 256, 320])
    add_out_arguments(parser)
    args = parse_args_keeping_results(parser, argv)
    model_file = args.model or os.path.join(args.run, "checkpoints", "best.keras")
    pairs, polarity = validation_pairs(args.run)
    results = score_sizes(model_file, pairs, polarity, args.sizes)
    report = {"model": model_file, "validation_pairs": len(pairs), "by_size": results}
    files.write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
