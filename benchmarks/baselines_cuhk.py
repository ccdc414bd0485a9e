"""Scores the classical baselines (LBP, HiFST-like) on the CUHK test split.

Runs each baseline over `<data>/images`, writes its maps as 8-bit PNGs (the
same files any other method's released results would be), scores them with
`keras_defusion.evaluation.scoring` and writes one JSON with max-F, F at 0.5,
adaptive F, MAE, IoU at 0.5, the curves and the runtime per image.

Usage, from the repository root:
    python benchmarks/baselines_cuhk.py
    python benchmarks/baselines_cuhk.py --data ../shared/data/CUHK/test \
        --out benchmarks/results/baselines_cuhk.json --overwrite --plots benchmarks/results
"""

import argparse
import os
import pathlib
import platform
import sys
import tempfile

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results
from keras_defusion import evaluation  # noqa: E402
from keras_defusion.evaluation import baselines  # noqa: E402
from keras_defusion.evaluation import metrics  # noqa: E402
from keras_defusion.io import images as image_io  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "CUHK" / "test"
# DeFusionNet (CVPR 2019) Table 1, Shi et al.'s dataset; protocol not stated there.
PAPER_TABLE1 = {
    "LBP": {"f_beta": 0.866, "mae": 0.186},
    "HiFST": {"f_beta": 0.856, "mae": 0.232},
    "BTBNet": {"f_beta": 0.892, "mae": 0.105},
    "DeFusionNet": {"f_beta": 0.917, "mae": 0.116},
}
HEADLINE = ("images", "max_f", "max_f_threshold", "f_at_0.5", "adaptive_f", "mae", "iou_at_0.5")


def all_blurred_reference(data):
    """Scores of a constant all-blurred map: the floor set by class imbalance."""
    accumulator = metrics.ScoreAccumulator()
    for mask_path in evaluation.gt_files(data).values():
        gt = image_io.load_mask(mask_path)
        accumulator.add(np.ones_like(gt), gt)
    summary = accumulator.result()
    return {key: summary[key] for key in HEADLINE}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="split folder with images/ and gt/")
    parser.add_argument("--methods", nargs="+", default=list(baselines.METHODS),
                        choices=baselines.METHODS)
    add_out_arguments(parser)
    parser.add_argument("--maps-dir", help="keep the PNG maps here (default: a temporary folder)")
    parser.add_argument("--plots", help="folder for the PR / F-measure curve PNGs")
    args = parse_args_keeping_results(parser, argv)

    data = pathlib.Path(args.data)
    images_dir = evaluation.images_dir_beside(data)
    if images_dir is None:
        print(f"error: {data} must hold images/ and gt/", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        maps_root = pathlib.Path(args.maps_dir or scratch)
        runtimes, pred_dirs = {}, {}
        for method in args.methods:
            print(f"running {method} on {images_dir} ...", file=sys.stderr, flush=True)
            report = baselines.run_on_folder(method, images_dir, maps_root / method)
            if report["failed"]:
                print("\n".join(report["failed"]), file=sys.stderr)
                return 1
            runtimes[method] = {
                "seconds_per_image": report["seconds_per_image"],
                "cpu_seconds_per_image": report["cpu_seconds_per_image"],
            }
            pred_dirs[method] = maps_root / method
        results = evaluation.evaluate_folders(pred_dirs, data)
    reference = all_blurred_reference(data)

    summary = {}
    for method, entry in results.items():
        entry.pop("per_image")
        entry["source"] = f"keras_defusion.evaluation.baselines.{method}, 8-bit PNG maps"
        entry.update(runtimes[method])
        summary[method] = {key: entry[key] for key in HEADLINE}
        summary[method].update(runtimes[method])
    document = evaluation.build_report(results, data, extra={
        "benchmark": "benchmarks/baselines_cuhk.py",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                   f"{platform.python_implementation()} {platform.python_version()}",
        "runtime": "method only, no file I/O; wall-clock and process CPU seconds "
                   "(CPU sums BLAS threads); wall time depends on machine load",
        "load_average_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "summary": summary,
        "reference_all_blurred": reference,
        "paper_table1_shi_dataset": PAPER_TABLE1,
    })
    document["ground_truth"] = os.path.relpath(evaluation.resolve_gt_dir(data), REPO_ROOT)
    evaluation.write_report(args.out, document)
    print(evaluation.format_table(results))
    for method, timing in runtimes.items():
        print(f"{method}: {timing['seconds_per_image']:.3f} s per image (wall), "
              f"{timing['cpu_seconds_per_image']:.3f} CPU s per image")
    print(f"all-blurred map (reference): max-F {reference['max_f']:.4f}, "
          f"MAE {reference['mae']:.4f}")
    print(f"wrote {args.out}")
    if args.plots:
        for path in evaluation.plot_curves(results, args.plots, title="CUHK test"):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
