"""Tests of keras_defusion.evaluation.metrics: hand-computed values and independent checks."""

import numpy as np
import pytest

from keras_defusion.evaluation import metrics

GT = np.array([[1, 1], [0, 0]], dtype=np.float32)
PRED = np.array([[1.0, 0.4], [0.6, 0.0]], dtype=np.float32)


def test_hand_computed_scalars():
    assert metrics.mae(PRED, GT) == pytest.approx(0.3)
    # >= 0.5: TP 1, FP 1, FN 1 -> P = R = 0.5.
    assert metrics.f_measure_at(PRED, GT, 0.5) == pytest.approx(0.5)
    assert metrics.iou_at(PRED, GT, 0.5) == pytest.approx(1 / 3)
    # mean 0.5 -> threshold 0.75: TP 1, FP 0, FN 1 -> P 1, R 0.5.
    assert metrics.adaptive_threshold(PRED) == pytest.approx(0.75)
    assert metrics.adaptive_f_measure(PRED, GT) == pytest.approx(1.3 * 0.5 / (0.3 + 0.5))


def test_hand_computed_pr_curve():
    precision, recall = metrics.precision_recall_curve(PRED, GT)
    assert precision.shape == recall.shape == (256,)
    # k = 0: everything positive.
    assert (precision[0], recall[0]) == pytest.approx((0.5, 1.0))
    # 0.4 = 102/255 is still positive at k = 102 despite float32 rounding.
    assert (precision[102], recall[102]) == pytest.approx((2 / 3, 1.0))
    assert (precision[103], recall[103]) == pytest.approx((0.5, 0.5))
    assert (precision[153], recall[153]) == pytest.approx((0.5, 0.5))
    assert (precision[154], recall[154]) == pytest.approx((1.0, 0.5))
    assert (precision[255], recall[255]) == pytest.approx((1.0, 0.5))


def test_no_predicted_positives_counts_as_precision_zero():
    gt = np.array([[1, 0], [1, 0]], dtype=np.float32)
    pred = np.zeros((2, 2), dtype=np.float32)
    precision, recall = metrics.precision_recall_curve(pred, gt)
    assert precision[0] == pytest.approx(0.5) and recall[0] == 1.0
    assert np.all(precision[1:] == 0) and np.all(recall[1:] == 0)
    assert metrics.f_measure_at(pred, gt) == 0.0
    assert metrics.iou_at(pred, gt) == 0.0


def test_empty_ground_truth_and_prediction():
    gt = np.zeros((3, 3))
    pred = np.zeros((3, 3))
    assert metrics.iou_at(pred, gt) == 1.0  # empty union: perfect agreement
    assert metrics.f_measure_at(pred, gt) == 0.0  # 0/0 precision and recall
    assert metrics.mae(pred, gt) == 0.0


def test_f_beta_formula():
    assert metrics.f_beta(1.0, 1.0) == pytest.approx(1.0)
    assert metrics.f_beta(0.0, 0.0) == 0.0
    assert metrics.f_beta(0.5, 1.0) == pytest.approx(1.3 * 0.5 / (0.15 + 1.0))
    np.testing.assert_allclose(metrics.f_beta([0.5, 0.0], [0.25, 0.0], beta2=1.0), [1 / 3, 0.0])


def test_eight_bit_levels_land_on_their_threshold():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    as_float32 = values.astype(np.float32) / 255.0
    flipped = 1.0 - ((255 - values).astype(np.float32) / 255.0)  # sharp-white flip
    np.testing.assert_array_equal(metrics.threshold_levels(as_float32), values)
    np.testing.assert_array_equal(metrics.threshold_levels(flipped), values)
    np.testing.assert_array_equal(metrics.threshold_levels(values / 255.0), values)


def test_input_conversions_and_errors():
    np.testing.assert_allclose(metrics.as_unit_map(np.array([[0, 255]], np.uint8)), [[0, 1]])
    np.testing.assert_allclose(metrics.as_unit_map(np.array([[0, 65535]], np.uint16)), [[0, 1]])
    np.testing.assert_allclose(metrics.as_unit_map(np.array([[-0.5, 1.5]])), [[0, 1]])
    assert metrics.as_unit_map(np.ones((4, 5, 1))).shape == (4, 5)
    with pytest.raises(ValueError, match="NaN"):
        metrics.as_unit_map(np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="2-D"):
        metrics.as_unit_map(np.zeros((2, 2, 3)))


def test_resize_bilinear():
    constant = np.full((5, 7), 0.25)
    np.testing.assert_allclose(metrics.resize_bilinear(constant, (11, 3)), 0.25)
    ramp = np.array([[0.0, 1.0]])
    # Half-pixel centres: 2 -> 4 columns gives 0, 0.25, 0.75, 1.
    np.testing.assert_allclose(metrics.resize_bilinear(ramp, (1, 4)), [[0, 0.25, 0.75, 1.0]])
    # A map at another size is resized to the mask's before scoring.
    big = np.kron(PRED, np.ones((3, 3)))
    small_gt = GT
    assert metrics.resize_bilinear(big, (2, 2)).shape == (2, 2)
    assert metrics.mae(np.kron(GT, np.ones((4, 4))), small_gt) == pytest.approx(0.0)


def _random_pairs(seed, count=5, shape=(40, 50), quantised=True):
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        gt = (rng.random(shape) < rng.uniform(0.2, 0.8)).astype(np.float32)
        noise = rng.random(shape)
        pred = np.clip(0.45 * gt + 0.55 * noise, 0, 1)
        if quantised:
            pred = np.round(pred * 255).astype(np.float32) / np.float32(255)
        pairs.append((pred, gt))
    return pairs


def test_pr_curve_matches_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    for pred, gt in _random_pairs(0):
        precision, recall = metrics.precision_recall_curve(pred, gt)
        sk_precision, sk_recall, sk_thresholds = sklearn_metrics.precision_recall_curve(
            gt.ravel().astype(int), pred.ravel()
        )
        levels = np.round(sk_thresholds.astype(np.float64) * 255).astype(int)
        for k in range(256):
            # sklearn's point for score >= smallest score level >= k.
            candidates = np.nonzero(levels >= k)[0]
            if len(candidates) == 0:
                assert precision[k] == 0 and recall[k] == 0
                continue
            index = candidates[0]
            assert precision[k] == pytest.approx(sk_precision[index])
            assert recall[k] == pytest.approx(sk_recall[index])


def test_curves_and_max_f_match_brute_force_on_continuous_maps():
    pairs = _random_pairs(1, quantised=False)
    # No pixel sits inside the comparison tolerance, so a plain >= must agree.
    for pred, _ in pairs:
        distance = pred.astype(np.float64) * 255 - np.round(pred.astype(np.float64) * 255)
        assert not np.any((distance < 0) & (distance > -2 * metrics.LEVEL_TOLERANCE))
    precision_sum = np.zeros(256)
    recall_sum = np.zeros(256)
    for pred, gt in pairs:
        positive = gt >= 0.5
        for k in range(256):
            predicted = pred >= k / 255.0
            tp = np.sum(predicted & positive)
            fp = np.sum(predicted & ~positive)
            precision_sum[k] += tp / (tp + fp) if tp + fp else 0.0
            recall_sum[k] += tp / positive.sum()
    precision = precision_sum / len(pairs)
    recall = recall_sum / len(pairs)
    f_curve = [(1.3 * p * r) / (0.3 * p + r) if p + r else 0.0 for p, r in zip(precision, recall)]

    result = metrics.evaluate_maps(pairs)
    np.testing.assert_allclose(result["precision"], precision, atol=1e-12)
    np.testing.assert_allclose(result["recall"], recall, atol=1e-12)
    np.testing.assert_allclose(result["f_measure"], f_curve, atol=1e-12)
    assert result["max_f"] == pytest.approx(max(f_curve))
    assert result["max_f_threshold"] == pytest.approx(int(np.argmax(f_curve)) / 255)
    assert result["images"] == len(pairs)


def test_accumulator_means_per_image_scores():
    pairs = _random_pairs(2)
    accumulator = metrics.ScoreAccumulator(adaptive_factor=1.2)
    for index, (pred, gt) in enumerate(pairs):
        accumulator.add(pred, gt, name=f"image{index}")
    result = accumulator.result()
    assert set(accumulator.per_image) == {f"image{i}" for i in range(len(pairs))}
    assert result["mae"] == pytest.approx(np.mean([metrics.mae(p, g) for p, g in pairs]))
    assert result["f_at_0.5"] == pytest.approx(
        np.mean([metrics.f_measure_at(p, g, 0.5) for p, g in pairs])
    )
    assert result["adaptive_f"] == pytest.approx(
        np.mean([metrics.adaptive_f_measure(p, g, factor=1.2) for p, g in pairs])
    )
    assert result["iou_at_0.5"] == pytest.approx(np.mean([metrics.iou_at(p, g) for p, g in pairs]))
    assert len(result["thresholds"]) == 256 and result["thresholds"][-1] == 1.0


def test_perfect_prediction_scores():
    gt = np.zeros((8, 8), dtype=np.float32)
    gt[:, :5] = 1
    result = metrics.evaluate_maps([(gt, gt)])
    assert result["max_f"] == pytest.approx(1.0)
    assert result["f_at_0.5"] == pytest.approx(1.0)
    assert result["iou_at_0.5"] == pytest.approx(1.0)
    assert result["mae"] == 0.0


def test_empty_accumulator_raises():
    with pytest.raises(ValueError, match="no image"):
        metrics.ScoreAccumulator().result()


def test_scoring_is_fast():
    import time

    rng = np.random.default_rng(3)
    pred = rng.random((480, 640)).astype(np.float32)
    gt = rng.random((480, 640)) < 0.7
    accumulator = metrics.ScoreAccumulator()
    start = time.perf_counter()
    for _ in range(5):
        accumulator.add(pred, gt)
    assert (time.perf_counter() - start) / 5 < 0.5


def test_keras_blur_f_beta():
    import keras

    from keras_defusion.evaluation.metrics import BlurFBeta

    metric = BlurFBeta()
    y_true = np.array([[[1.0], [1.0]], [[0.0], [0.0]]])[None]  # [1, 2, 2, 1]
    y_pred = np.array([[[1.0], [0.4]], [[0.6], [0.0]]])[None]
    metric.update_state(y_true, y_pred)
    assert float(metric.result()) == pytest.approx(0.5)  # TP 1, FP 1, FN 1
    # Counts pool over batches: add a batch with TP 1, FP 0, FN 0.
    metric.update_state(np.ones((1, 1, 1, 1)), np.ones((1, 1, 1, 1)))
    tp, fp, fn = 2, 1, 1
    assert float(metric.result()) == pytest.approx(1.3 * tp / (1.3 * tp + 0.3 * fn + fp))
    metric.reset_state()
    assert float(metric.result()) == 0.0

    weighted = BlurFBeta()
    weighted.update_state(y_true, y_pred, sample_weight=np.array([[[[1.0], [1.0]], [[0.0], [1.0]]]]))
    # The false positive has weight 0: TP 1, FP 0, FN 1.
    assert float(weighted.result()) == pytest.approx(1.3 / (1.3 + 0.3))

    # [B, H, W] targets with [B, H, W, 1] maps, and per-sample weights [B].
    flat = BlurFBeta()
    flat.update_state(y_true[..., 0], y_pred, sample_weight=np.array([2.0]))
    assert float(flat.result()) == pytest.approx(0.5)

    custom = BlurFBeta(threshold=0.3, beta2=1.0, name="f1")
    config = custom.get_config()
    assert config == {"threshold": 0.3, "beta2": 1.0, "name": "f1", "dtype": "float32"}
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(custom))
    assert isinstance(rebuilt, BlurFBeta) and rebuilt.get_config() == config
    assert keras.saving.get_registered_name(BlurFBeta) == "keras_defusion>BlurFBeta"
    names = [m.name for m in metrics.training_metrics()]
    assert names == ["blur_f_beta", "mae"]
