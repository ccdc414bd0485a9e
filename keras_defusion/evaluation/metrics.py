"""Defocus blur detection scores as in DeFusionNet (CVPR 2019), section 4.2.

Conventions, shared by every function here:

- Blur is the positive class. A predicted map is a float array in [0, 1]
  (1 = blurred); it is resized bilinearly to the ground truth's own size.
  The ground truth is binarised at 0.5 (after its polarity has been applied
  by the loader).
- PR curve: at each of the 256 thresholds k/255 (k = 0..255) a pixel is
  predicted blurred when `map >= k/255`. The comparison is made on 255 * map
  with a tolerance of 1e-4 grey levels, so an 8-bit map read as floats (or
  flipped as 1 - map) lands on its own level despite float rounding.
  Precision and recall are computed per image and averaged over images per
  threshold; the F-measure curve is F-beta (beta^2 = 0.3) of those mean
  precision and recall values, and max-F is its maximum.
- 0/0 counts as 0: at a threshold where an image has no predicted blurred
  pixel its precision is 0 (and its recall is 0 too); an image with no
  blurred ground-truth pixel has recall 0. This is the convention of the
  usual saliency / DBD evaluation code (precision = TP / (TP + FP + eps)); it
  never rewards a method for predicting nothing, so the high-threshold end of
  the mean PR curve is not lifted by images whose map never reaches the
  threshold. F-beta is 0 when precision and recall are both 0.
- IoU of the blurred class at 0.5; an image where neither the prediction
  nor the ground truth has a blurred pixel has IoU 1 (empty union: perfect
  agreement).

The numpy functions work on arrays only; `BlurFBeta` is the Keras form of
the F-beta score, used as a training metric.
"""

import keras
import numpy as np

BETA2 = 0.3
NUM_THRESHOLDS = 256
THRESHOLDS = np.arange(NUM_THRESHOLDS) / 255.0
FIXED_THRESHOLD = 0.5
DEFAULT_ADAPTIVE_FACTOR = 1.5
# Tolerance, in grey levels (units of 1/255), of the map >= k/255 comparison.
LEVEL_TOLERANCE = 1e-4


def as_unit_map(prediction):
    """Returns `prediction` as a float64 array in [0, 1].

    Floats are clipped to [0, 1]; uint8 is divided by 255, uint16 by 65535,
    bool becomes 0/1.

    Raises:
        ValueError: the map is empty, not 2-D, or holds NaN or infinity.
    """
    array = np.asarray(prediction)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"a map must be a non-empty 2-D array, got shape {array.shape}")
    if array.dtype == np.bool_:
        return array.astype(np.float64)
    if array.dtype == np.uint8:
        return array / 255.0
    if array.dtype == np.uint16:
        return array / 65535.0
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError("the map holds NaN or infinite values")
    return np.clip(array, 0.0, 1.0)


def binarize_gt(gt):
    """Ground truth as bool [H, W], True = blurred (values >= 0.5)."""
    gt = np.asarray(gt)
    if gt.ndim == 3 and gt.shape[-1] == 1:
        gt = gt[..., 0]
    if gt.ndim != 2 or gt.size == 0:
        raise ValueError(f"a mask must be a non-empty 2-D array, got shape {gt.shape}")
    if gt.dtype == np.uint8:
        return gt >= 128
    return gt >= 0.5


def resize_bilinear(prediction, shape):
    """Resizes a 2-D map to `shape` (H, W) by bilinear interpolation.

    Pixel centres are aligned (half-pixel convention, as in
    `tf.image.resize` and OpenCV's INTER_LINEAR); no antialiasing.
    """
    prediction = np.asarray(prediction, dtype=np.float64)
    out_h, out_w = int(shape[0]), int(shape[1])
    if prediction.shape == (out_h, out_w):
        return prediction

    def axis_weights(in_size, out_size):
        coords = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
        coords = np.clip(coords, 0.0, in_size - 1)
        low = np.floor(coords).astype(np.int64)
        high = np.minimum(low + 1, in_size - 1)
        return low, high, coords - low

    y0, y1, wy = axis_weights(prediction.shape[0], out_h)
    x0, x1, wx = axis_weights(prediction.shape[1], out_w)
    rows = prediction[y0] * (1.0 - wy)[:, None] + prediction[y1] * wy[:, None]
    return rows[:, x0] * (1.0 - wx) + rows[:, x1] * wx


def prepare_pair(prediction, gt):
    """Map resized to the mask's size and in [0, 1], and the bool mask."""
    gt = binarize_gt(gt)
    prediction = as_unit_map(prediction)
    if prediction.shape != gt.shape:
        prediction = resize_bilinear(prediction, gt.shape)
    return prediction, gt


def f_beta(precision, recall, beta2=BETA2):
    """F-beta of precision and recall (arrays or floats); 0 where both are 0."""
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    denominator = beta2 * precision + recall
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, (1 + beta2) * precision * recall / safe, 0.0)


def _ratio(numerator, denominator):
    """numerator / denominator with 0/0 (and x/0) counted as 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


def mae(prediction, gt):
    """Mean absolute error between the map and the binary mask, one image."""
    prediction, gt = prepare_pair(prediction, gt)
    return float(np.mean(np.abs(prediction - gt)))


def threshold_levels(prediction):
    """For each pixel, the largest k in 0..255 with map >= k/255 (tolerant).

    Args:
        prediction: float map in [0, 1].

    Returns:
        int64 array of the map's shape.
    """
    scaled = np.asarray(prediction, dtype=np.float64) * 255.0 + LEVEL_TOLERANCE
    return np.clip(np.floor(scaled), 0, NUM_THRESHOLDS - 1).astype(np.int64)


def threshold_counts(prediction, gt):
    """True and false positives at the 256 thresholds, one image.

    One histogram pass per class and a reverse cumulative sum: no loop over
    thresholds.

    Args:
        prediction: map, already at the mask's size, values in [0, 1].
        gt: bool mask, True = blurred.

    Returns:
        (tp, fp, positives): int64 arrays [256] and the number of blurred
        ground-truth pixels.
    """
    levels = threshold_levels(prediction)
    gt = np.asarray(gt, dtype=bool)
    hist_pos = np.bincount(levels[gt], minlength=NUM_THRESHOLDS)
    hist_neg = np.bincount(levels[~gt], minlength=NUM_THRESHOLDS)
    tp = np.cumsum(hist_pos[::-1])[::-1]
    fp = np.cumsum(hist_neg[::-1])[::-1]
    return tp, fp, int(gt.sum())


def precision_recall_curve(prediction, gt):
    """Precision and recall at the thresholds k/255, k = 0..255, one image.

    A threshold with no predicted blurred pixel has precision 0 (see the
    module docstring).

    Returns:
        (precision, recall): float64 arrays [256], index k = threshold k/255.
    """
    prediction, gt = prepare_pair(prediction, gt)
    tp, fp, positives = threshold_counts(prediction, gt)
    return _ratio(tp, tp + fp), _ratio(tp, np.full_like(tp, positives))


def _binary_counts(predicted, gt):
    tp = int(np.count_nonzero(predicted & gt))
    fp = int(np.count_nonzero(predicted & ~gt))
    fn = int(np.count_nonzero(~predicted & gt))
    return tp, fp, fn


def f_measure_at(prediction, gt, threshold=FIXED_THRESHOLD, beta2=BETA2):
    """F-beta of the map thresholded at `threshold` (map >= threshold), one image."""
    prediction, gt = prepare_pair(prediction, gt)
    tp, fp, fn = _binary_counts(prediction >= threshold, gt)
    return float(f_beta(_ratio(tp, tp + fp), _ratio(tp, tp + fn), beta2))


def adaptive_threshold(prediction, factor=DEFAULT_ADAPTIVE_FACTOR):
    """The adaptive threshold min(factor * mean(map), 1) of one map."""
    return float(min(factor * float(np.mean(as_unit_map(prediction))), 1.0))


def adaptive_f_measure(prediction, gt, factor=DEFAULT_ADAPTIVE_FACTOR, beta2=BETA2):
    """F-beta at the adaptive threshold min(factor * mean(map), 1), one image.

    The mean is taken over the map after resizing to the mask's size.
    """
    prediction, gt = prepare_pair(prediction, gt)
    return f_measure_at(prediction, gt, adaptive_threshold(prediction, factor), beta2)


def iou_at(prediction, gt, threshold=FIXED_THRESHOLD):
    """IoU of the blurred class with the map thresholded at `threshold`.

    Returns 1 when both the prediction and the mask have no blurred pixel.
    """
    prediction, gt = prepare_pair(prediction, gt)
    tp, fp, fn = _binary_counts(prediction >= threshold, gt)
    union = tp + fp + fn
    return 1.0 if union == 0 else tp / union


def max_f_measure(f_curve):
    """(max-F, threshold where it first occurs) of an F-measure curve [256]."""
    f_curve = np.asarray(f_curve)
    best = int(np.argmax(f_curve))
    return float(f_curve[best]), float(THRESHOLDS[best])


def image_scores(prediction, gt, adaptive_factor=DEFAULT_ADAPTIVE_FACTOR, beta2=BETA2):
    """Every per-image score of one (map, mask) pair.

    Returns:
        dict with "mae", "f_at_0.5", "adaptive_f", "adaptive_threshold",
        "iou_at_0.5" (floats) and "precision", "recall" (arrays [256]).
    """
    prediction, gt = prepare_pair(prediction, gt)
    tp, fp, positives = threshold_counts(prediction, gt)
    fixed = prediction >= FIXED_THRESHOLD
    tp5, fp5, fn5 = _binary_counts(fixed, gt)
    threshold = min(adaptive_factor * float(prediction.mean()), 1.0)
    tpa, fpa, fna = _binary_counts(prediction >= threshold, gt)
    union = tp5 + fp5 + fn5
    return {
        "mae": float(np.mean(np.abs(prediction - gt))),
        "f_at_0.5": float(f_beta(_ratio(tp5, tp5 + fp5), _ratio(tp5, tp5 + fn5), beta2)),
        "adaptive_f": float(f_beta(_ratio(tpa, tpa + fpa), _ratio(tpa, tpa + fna), beta2)),
        "adaptive_threshold": threshold,
        "iou_at_0.5": 1.0 if union == 0 else tp5 / union,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, np.full_like(tp, positives)),
    }


def protocol_description(adaptive_factor=DEFAULT_ADAPTIVE_FACTOR, beta2=BETA2):
    """The evaluation protocol in words, for reports and JSON files."""
    return {
        "positive_class": "blurred (1 = blurred in maps and masks)",
        "resize": "prediction resized bilinearly (half-pixel centres) to the "
        "ground truth's size; ground truth binarised at 0.5",
        "beta2": beta2,
        "pr_thresholds": "256 thresholds k/255, k = 0..255; pixel positive when "
        f"map >= k/255 (tolerance {LEVEL_TOLERANCE} grey levels); precision and "
        "recall per image, averaged over images per threshold",
        "f_curve": "F-beta of the mean precision and mean recall per threshold",
        "max_f": "maximum of the F-measure curve",
        "f_at_0.5": "per image F-beta of map >= 0.5, averaged over images",
        "adaptive_f": f"per image F-beta of map >= min({adaptive_factor} x "
        "mean(map), 1), averaged over images",
        "adaptive_factor": adaptive_factor,
        "iou_at_0.5": "per image IoU of the blurred class at map >= 0.5, "
        "averaged over images; 1 when both are empty",
        "mae": "per image mean |map - gt|, averaged over images",
        "no_predicted_positives": "precision 0 (0/0 counts as 0; recall 0 when "
        "the ground truth has no blurred pixel)",
    }


class ScoreAccumulator:
    """Streams (map, mask) pairs and gives dataset-level scores.

    Holds only running sums (and a few floats per image), so a dataset never
    needs to be in memory at once.

    Example:
        scores = ScoreAccumulator()
        for name, (prediction, gt) in pairs:
            scores.add(prediction, gt, name=name)
        summary = scores.result()
    """

    def __init__(self, adaptive_factor=DEFAULT_ADAPTIVE_FACTOR, beta2=BETA2):
        self.adaptive_factor = adaptive_factor
        self.beta2 = beta2
        self.count = 0
        self._precision_sum = np.zeros(NUM_THRESHOLDS)
        self._recall_sum = np.zeros(NUM_THRESHOLDS)
        self._scalar_sums = {"mae": 0.0, "f_at_0.5": 0.0, "adaptive_f": 0.0, "iou_at_0.5": 0.0}
        self.per_image = {}

    def add(self, prediction, gt, name=None):
        """Scores one image and adds it to the sums.

        Args:
            prediction: map in [0, 1] (any size; resized to the mask's).
            gt: mask, 1 = blurred.
            name: optional key (e.g. the file stem) for `per_image`.

        Returns:
            The image's scalar scores (dict).
        """
        scores = image_scores(prediction, gt, self.adaptive_factor, self.beta2)
        self._precision_sum += scores.pop("precision")
        self._recall_sum += scores.pop("recall")
        for key in self._scalar_sums:
            self._scalar_sums[key] += scores[key]
        self.count += 1
        self.per_image[name if name is not None else str(self.count - 1)] = scores
        return scores

    def result(self):
        """Dataset scores.

        Returns:
            dict with "images", "mae", "max_f", "max_f_threshold", "f_at_0.5",
            "adaptive_f", "iou_at_0.5" and the curves "thresholds",
            "precision", "recall", "f_measure" (lists of 256 floats).

        Raises:
            ValueError: no image was added.
        """
        if self.count == 0:
            raise ValueError("no image was scored")
        precision = self._precision_sum / self.count
        recall = self._recall_sum / self.count
        f_curve = f_beta(precision, recall, self.beta2)
        best_f, best_threshold = max_f_measure(f_curve)
        summary = {"images": self.count}
        summary["mae"] = self._scalar_sums["mae"] / self.count
        summary["max_f"] = best_f
        summary["max_f_threshold"] = best_threshold
        for key in ("f_at_0.5", "adaptive_f", "iou_at_0.5"):
            summary[key] = self._scalar_sums[key] / self.count
        summary["thresholds"] = THRESHOLDS.tolist()
        summary["precision"] = precision.tolist()
        summary["recall"] = recall.tolist()
        summary["f_measure"] = f_curve.tolist()
        return summary


def evaluate_maps(pairs, adaptive_factor=DEFAULT_ADAPTIVE_FACTOR, beta2=BETA2):
    """Dataset scores of an iterable of (map, mask) pairs; see `ScoreAccumulator`."""
    accumulator = ScoreAccumulator(adaptive_factor, beta2)
    for prediction, gt in pairs:
        accumulator.add(prediction, gt)
    return accumulator.result()


# --- Keras form, for training ------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_defusion")
class BlurFBeta(keras.metrics.Metric):
    """F-beta of the blurred class over all pixels seen in an epoch.

    Thresholds the prediction at `threshold` (pixel blurred when
    y_pred >= threshold) and the target at 0.5, counts TP, FP and FN over
    the flattened maps of every batch, and reports
    (1 + beta2) TP / ((1 + beta2) TP + beta2 FN + FP), which equals F-beta
    of the pooled precision and recall (0 when nothing is blurred in
    either). Use it on the fused output.

    Args:
        threshold: prediction threshold.
        beta2: beta squared (0.3 as in the paper).
        name: metric name.
        dtype: dtype of the counts.
    """

    def __init__(self, threshold=FIXED_THRESHOLD, beta2=BETA2, name="blur_f_beta", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = float(threshold)
        self.beta2 = float(beta2)
        self.true_positives = self.add_variable(shape=(), initializer="zeros", name="tp")
        self.false_positives = self.add_variable(shape=(), initializer="zeros", name="fp")
        self.false_negatives = self.add_variable(shape=(), initializer="zeros", name="fn")

    def update_state(self, y_true, y_pred, sample_weight=None):
        ops = keras.ops
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        # Flattened, so [B, H, W] targets pair with [B, H, W, 1] maps.
        predicted = ops.reshape(ops.cast(y_pred >= self.threshold, self.dtype), (-1,))
        actual = ops.reshape(ops.cast(y_true >= 0.5, self.dtype), (-1,))
        if sample_weight is not None:
            # Per-sample [B] or per-pixel weights, broadcast to the map.
            weight = ops.convert_to_tensor(sample_weight, dtype=self.dtype)
            while len(weight.shape) < len(y_pred.shape):
                weight = ops.expand_dims(weight, -1)
            weight = ops.reshape(ops.broadcast_to(weight, ops.shape(y_pred)), (-1,))
        else:
            weight = ops.ones_like(predicted)
        self.true_positives.assign_add(ops.sum(predicted * actual * weight))
        self.false_positives.assign_add(ops.sum(predicted * (1.0 - actual) * weight))
        self.false_negatives.assign_add(ops.sum((1.0 - predicted) * actual * weight))

    def result(self):
        ops = keras.ops
        tp = self.true_positives
        numerator = (1.0 + self.beta2) * tp
        denominator = numerator + self.beta2 * self.false_negatives + self.false_positives
        return ops.where(denominator > 0, numerator / ops.maximum(denominator, 1e-12), 0.0)

    def reset_state(self):
        for variable in (self.true_positives, self.false_positives, self.false_negatives):
            variable.assign(0.0)

    def get_config(self):
        return {
            "threshold": self.threshold,
            "beta2": self.beta2,
            "name": self.name,
            "dtype": self.dtype,
        }


def training_metrics():
    """Keras metrics for the fused output: [BlurFBeta(), MeanAbsoluteError("mae")]."""
    return [BlurFBeta(), keras.metrics.MeanAbsoluteError(name="mae")]
