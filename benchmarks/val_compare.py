"""Compare two models photo by photo on a run's validation split, with intervals.

Both models score the same validation photos at one inference size; the
differences (second model minus first) in max-F, F@0.5 and MAE come with a
paired bootstrap 95% interval over the photos, so a gain can be told from
the luck of a 60-photo split. Writes JSON:

    python -m benchmarks.val_compare --run runs/long-ft --models defusionnet-scratch-cuhk-320 runs/soups/NAME.keras --size 320 --out FILE
"""

import argparse

import numpy as np

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results
from benchmarks.val_inference_size import validation_pairs
from keras_defusion.evaluation import metrics
from keras_defusion.inference.detector import load_detector
from keras_defusion.io import files
from keras_defusion.io import images as image_io

RESAMPLES = 2000


def per_image_scores(model, pairs, polarity, size):
    """Each photo's MAE, F@0.5 and precision / recall curves.

    Returns:
        dict of arrays: "mae" and "f_at_0.5" [photos], "precision" and
        "recall" [photos, 256].
    """
    detector = load_detector(model, image_size=size)
    rows = [metrics.image_scores(detector.detect(pair.image_path),
                                 image_io.load_mask(pair.mask_path, polarity))
            for pair in pairs]
    return {key: np.array([row[key] for row in rows])
            for key in ("mae", "f_at_0.5", "precision", "recall")}


def dataset_scores(scores, index):
    """max-F, F@0.5 and MAE of the photos at `index` (repeats allowed), as
    `metrics.ScoreAccumulator` gives them for a data set."""
    f_curve = metrics.f_beta(scores["precision"][index].mean(axis=0),
                             scores["recall"][index].mean(axis=0))
    return {"max_f": float(metrics.max_f_measure(f_curve)[0]),
            "f_at_0.5": float(scores["f_at_0.5"][index].mean()),
            "mae": float(scores["mae"][index].mean())}


def compare(first, second, resamples=RESAMPLES, seed=0):
    """Differences second - first, each with a paired bootstrap 95% interval.

    Args:
        first, second: `per_image_scores` of the same photos, in one order.

    Returns:
        dict per metric: "first", "second", "difference", "interval" (2.5th
        and 97.5th percentiles) and, per photo, "photos_better" (MAE and
        F@0.5 only; ties count for neither).
    """
    count = len(first["mae"])
    everything = np.arange(count)
    rng = np.random.default_rng(seed)
    draws = {key: [] for key in ("max_f", "f_at_0.5", "mae")}
    for _ in range(resamples):
        index = rng.integers(0, count, count)
        a, b = dataset_scores(first, index), dataset_scores(second, index)
        for key in draws:
            draws[key].append(b[key] - a[key])
    a, b = dataset_scores(first, everything), dataset_scores(second, everything)
    report = {}
    for key, values in draws.items():
        low, high = np.percentile(values, [2.5, 97.5])
        report[key] = {"first": a[key], "second": b[key], "difference": b[key] - a[key],
                       "interval": [float(low), float(high)]}
    report["mae"]["photos_better"] = int(np.sum(second["mae"] < first["mae"]))
    report["f_at_0.5"]["photos_better"] = int(np.sum(second["f_at_0.5"] > first["f_at_0.5"]))
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the run whose validation split is used")
    parser.add_argument("--models", nargs=2, required=True, metavar=("FIRST", "SECOND"),
                        help=".keras files or shipped model names")
    parser.add_argument("--size", type=int, required=True, help="the inference size")
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    add_out_arguments(parser)
    args = parse_args_keeping_results(parser, argv)
    pairs, polarity = validation_pairs(args.run)
    first, second = (per_image_scores(model, pairs, polarity, args.size) for model in args.models)
    report = {"models": list(args.models), "size": args.size, "validation_pairs": len(pairs),
              "resamples": args.resamples,
              "metrics": compare(first, second, args.resamples)}
    for key, entry in report["metrics"].items():
        print(key, {k: np.round(v, 4).tolist() for k, v in entry.items()}, flush=True)
    files.write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
