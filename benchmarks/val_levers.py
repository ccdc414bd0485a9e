"""Score inference-time levers of a trained model on its run's validation split.

Issue 15's ladder: each lever is measured against the plain map of the same
model on the validation photos the run carved from training (test is for
the report alone). The levers:

- `size S`: the network at S x S instead of the model's own size;
- `flip`: the mean of the map and the map of the mirrored photo;
- `sizes A+B`: the mean, at the photo's size, of the maps made at the
  model's size A and at S = B (a multi-scale ensemble); `sizes all` averages
  the model's size and every S;
- `guided r=R eps=E`: a guided filter (He et al., 2013) on the map at the
  photo's size, guided by the photo's grey values, so edges follow the photo;
- `sharpen k=K`: the map's logits times K (a monotone remap: the ranking of
  pixels, hence max-F, and the 0.5 threshold, hence F@0.5, are unchanged;
  only MAE and the log loss move; K < 1 softens the map);
- `shift b=B`: B added to the map's logits (a monotone remap that keeps
  max-F but moves the 0.5 threshold: B < 0 calls fewer pixels blurred, so
  F@0.5, MAE and the log loss all move).

Each variant records max-F, F@0.5, MAE, the log loss (the mean over photos
of the pixels' binary cross-entropy against the mask: how well the map's
values work as probabilities, lower is better) and the network runs it
costs per photo (relative to one run at the model's size). Writes JSON:

    python -m benchmarks.val_levers --run runs/robust-ft \\
        --model defusionnet-scratch-cuhk --out FILE
"""

import argparse

import numpy as np

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results
from benchmarks.val_inference_size import SUMMARY_KEYS
from benchmarks.val_inference_size import validation_pairs
from keras_defusion.evaluation import metrics
from keras_defusion.evaluation.baselines.lbp import to_gray
from keras_defusion.inference.contract import resize_map_array
from keras_defusion.inference.detector import load_detector
from keras_defusion.inference.detector import to_rgb
from keras_defusion.io import files
from keras_defusion.io import images as image_io

GUIDED = ((4, 1e-3), (4, 1e-2), (8, 1e-3), (8, 1e-2), (16, 1e-3))
SHARPEN = (0.5, 0.75, 1.5, 2.0, 3.0, 4.0, 6.0)
SHIFT = (-2.0, -1.5, -1.0, -0.5, -0.25, 0.25, 0.5)


def box_mean(values, radius):
    """Mean over (2r+1)^2 windows, the photo mirrored at its borders."""
    from scipy import ndimage

    return ndimage.uniform_filter(values, size=2 * radius + 1, mode="reflect")


def guided_filter(guide, blur_map, radius, eps):
    """He et al.'s grey-guided filter of `blur_map` [H, W], clipped to 0..1."""
    mean_guide, mean_map = box_mean(guide, radius), box_mean(blur_map, radius)
    covariance = box_mean(guide * blur_map, radius) - mean_guide * mean_map
    variance = box_mean(guide * guide, radius) - mean_guide * mean_guide
    a = covariance / (variance + eps)
    b = mean_map - a * mean_guide
    return np.clip(box_mean(a, radius) * guide + box_mean(b, radius), 0.0, 1.0)


def _logit(blur_map):
    p = np.clip(blur_map.astype(np.float64), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def sharpen(blur_map, factor):
    """sigmoid(factor * logit(map)), with the map clipped off 0 and 1."""
    return (1.0 / (1.0 + np.exp(-factor * _logit(blur_map)))).astype(np.float32)


def shift(blur_map, bias):
    """sigmoid(logit(map) + bias), with the map clipped off 0 and 1."""
    return (1.0 / (1.0 + np.exp(-(_logit(blur_map) + bias)))).astype(np.float32)


def log_loss(blur_map, gt):
    """Mean binary cross-entropy of the map's pixels against the mask."""
    if blur_map.shape[:2] != gt.shape[:2]:
        blur_map = resize_map_array(blur_map, *gt.shape[:2])
    p = np.clip(blur_map.astype(np.float64), 1e-6, 1 - 1e-6)
    return float(-np.mean(np.where(np.asarray(gt) > 0.5, np.log(p), np.log1p(-p))))


def _small_map(detector, rgb, mirrored=False):
    photo, _ = detector.prepare(rgb)
    if mirrored:
        photo = photo[:, ::-1]
    blur_map = detector.run_prepared(photo[np.newaxis])[0]
    return blur_map[:, ::-1] if mirrored else blur_map


def score_levers(model, pairs, polarity, sizes):
    """{variant: {scores..., "network_runs": cost}} over `pairs`."""
    base = load_detector(model)
    own = base.inference_size
    others = {size: load_detector(model, inference_size=size) for size in sizes if size != own}
    accumulators, costs, log_losses = {}, {}, {}

    def add(name, cost, blur_map, gt):
        accumulators.setdefault(name, metrics.ScoreAccumulator()).add(blur_map, gt)
        costs[name] = cost
        log_losses.setdefault(name, []).append(log_loss(blur_map, gt))

    for pair in pairs:
        rgb = to_rgb(pair.image_path)
        height, width = rgb.shape[:2]
        gt = image_io.load_mask(pair.mask_path, polarity)
        small = _small_map(base, rgb)
        plain = resize_map_array(small, height, width)
        add("plain", 1.0, plain, gt)
        flipped = (small + _small_map(base, rgb, mirrored=True)) / 2
        add("flip", 2.0, resize_map_array(flipped, height, width), gt)
        scaled = {}
        for size, detector in others.items():
            scaled[size] = resize_map_array(_small_map(detector, rgb), height, width)
            add(f"size {size}", (size / own) ** 2, scaled[size], gt)
            add(f"sizes {own}+{size}", 1.0 + (size / own) ** 2, (plain + scaled[size]) / 2, gt)
        if len(scaled) > 1:
            add("sizes all", 1.0 + sum((size / own) ** 2 for size in scaled),
                (plain + sum(scaled.values())) / (1 + len(scaled)), gt)
        grey = to_gray(rgb)
        for radius, eps in GUIDED:
            add(f"guided r={radius} eps={eps:g}", 1.0,
                guided_filter(grey, plain, radius, eps), gt)
        for factor in SHARPEN:
            add(f"sharpen k={factor:g}", 1.0, sharpen(plain, factor), gt)
        for bias in SHIFT:
            add(f"shift b={bias:g}", 1.0, shift(plain, bias), gt)
    results = {}
    reference = accumulators["plain"].result()
    for name, accumulator in accumulators.items():
        summary = accumulator.result()
        results[name] = {key: summary[key] for key in SUMMARY_KEYS}
        results[name]["log_loss"] = float(np.mean(log_losses[name]))
        results[name]["network_runs"] = costs[name]
        results[name]["delta_max_f"] = summary["max_f"] - reference["max_f"]
        results[name]["delta_mae"] = summary["mae"] - reference["mae"]
        print(f"{name:24s} max-F {summary['max_f']:.4f} F@0.5 {summary['f_at_0.5']:.4f} "
              f"MAE {summary['mae']:.4f} log loss {results[name]['log_loss']:.4f}", flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the training run (its validation split)")
    parser.add_argument("--model", help="default: the run's checkpoints/best.keras")
    parser.add_argument("--sizes", type=int, nargs="*", default=[288, 320])
    add_out_arguments(parser)
    args = parse_args_keeping_results(parser, argv)
    model = args.model or f"{args.run}/checkpoints/best.keras"
    pairs, polarity = validation_pairs(args.run)
    report = {"model": model, "validation_pairs": len(pairs),
              "levers": score_levers(model, pairs, polarity, args.sizes)}
    files.write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
