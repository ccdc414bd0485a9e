import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_defusion import data as data_lib
from keras_defusion.data import synthetic
from keras_defusion.errors import DataError
from keras_defusion.io import images as image_io
from keras_defusion.training.losses import BCEIoULoss
from keras_defusion.training.losses import deep_supervision_losses
from tests.conftest import REPO_ROOT

from keras_defusion.cli import train as train_cli
from keras_defusion.models.defusionnet.model import DeFusionNet
from keras_defusion.training import train as train_lib
from keras_defusion.training.build import build_model
from keras_defusion.training.config import TRAINING_PRESETS
from keras_defusion.training.config import get_training_config
from keras_defusion.training.schedules import WarmupSchedule

TINY_MODEL = {"encoder_width": 0.0625, "side_channels": 4, "fusion_channels": 4,
              "num_steps": 1}
TINY_CLI = [f"--model-set={k}={v}" for k, v in TINY_MODEL.items()]


def tiny_config(**overrides):
    values = dict(
        model_overrides=TINY_MODEL,
        backbone_weights=None,
        image_size=32,
        batch_size=4,
        steps=4,
        steps_per_epoch=2,
        warmup_steps=0,
        val_fraction=0.25,
        seed=1,
    )
    values.update(overrides)
    return get_training_config("mobile", **values)


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    synthetic.write_synthetic_folder(root, count=12, size=48, seed=3)
    return root


def test_eq6_loss_weights_cover_every_output():
    losses, weights = deep_supervision_losses(2, lambda_fused=2.0,
                                              lambda_side={"step1_out3": 0.5})
    assert len(losses) == len(weights) == 13
    assert weights["fused"] == 2.0 and weights["step1_out3"] == 0.5
    assert weights["step2_out6"] == 1.0
    with pytest.raises(ValueError, match="step3_out1"):
        deep_supervision_losses(2, lambda_side={"step3_out1": 1.0})


def test_bce_iou_loss_adds_one_minus_the_soft_iou_of_both_classes():
    rng = np.random.default_rng(0)
    masks = (rng.random((3, 8, 8, 1)) < 0.4).astype("float32")
    probs = rng.uniform(0.05, 0.95, (3, 8, 8, 1)).astype("float32")
    bce = float(keras.losses.BinaryCrossentropy()(masks, probs))
    assert float(BCEIoULoss(0.0)(masks, probs)) == pytest.approx(bce, rel=1e-5)

    def iou_term(truth, prob):
        return float(BCEIoULoss(1.0)(truth, prob)) - float(BCEIoULoss(0.0)(truth, prob))

    def soft_iou(truth, prob):  # one photo, smoothed by one pixel
        return ((truth * prob).sum() + 1) / ((truth + prob - truth * prob).sum() + 1)

    expected = np.mean([1 - 0.5 * (soft_iou(t, p) + soft_iou(1 - t, 1 - p))
                        for t, p in zip(masks, probs)])
    assert iou_term(masks, probs) == pytest.approx(expected, rel=1e-4)
    assert iou_term(masks, masks) == pytest.approx(0.0, abs=1e-6)  # perfect map
    assert iou_term(masks, 1 - masks) > 0.9  # inverted map
    assert iou_term(1 - masks, 1 - probs) == pytest.approx(iou_term(masks, probs), rel=1e-4)
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(BCEIoULoss(0.5, name="fused_bce_iou")))
    assert restored.iou_weight == 0.5 and restored.name == "fused_bce_iou"
    losses, _ = deep_supervision_losses(1, iou_weight=0.5)
    assert all(isinstance(loss, BCEIoULoss) and loss.iou_weight == 0.5
               for loss in losses.values())
    with pytest.raises(ValueError, match="--iou-weight"):
        tiny_config(iou_weight=-1.0)


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")  # never built
def test_a_model_compiled_with_the_iou_term_saves_and_loads_it(tmp_path):
    from keras_defusion.training.build import build_model
    from keras_defusion.training.build import compile_model

    config = tiny_config(iou_weight=2.0)
    model = build_model(config)
    compile_model(model, config)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert {type(loss) for loss in loaded.loss.values()} == {BCEIoULoss}
    assert loaded.loss["fused"].iou_weight == 2.0


@pytest.mark.parametrize("iou_weight", [0.0, 1.0])
def test_multi_worker_loop_sums_the_losses_fit_uses(iou_weight):
    from keras_defusion.training.multi_worker import _per_example_loss

    rng = np.random.default_rng(1)
    masks = (rng.random((2, 6, 6, 1)) < 0.5).astype("float32")
    outputs = {name: rng.uniform(0.1, 0.9, (2, 6, 6, 1)).astype("float32")
               for name in ("fused", "step1_out1")}
    losses, weights = deep_supervision_losses(1, lambda_fused=2.0, iou_weight=iou_weight)
    weights = {name: weights[name] for name in outputs}
    per_example = _per_example_loss(masks, outputs, losses, weights).numpy()
    for i in range(2):
        expected = sum(weight * float(losses[name](masks[i:i + 1], outputs[name][i:i + 1]))
                       for name, weight in weights.items())
        assert per_example[i] == pytest.approx(expected, rel=1e-5)


def test_schedules():
    step = WarmupSchedule(1.0, 100, kind="step", drop_at=0.5, drop_factor=0.1)
    assert float(step(49)) == pytest.approx(1.0)
    assert float(step(50)) == pytest.approx(0.1)
    cosine = WarmupSchedule(1.0, 100, kind="cosine", warmup_steps=10)
    assert float(cosine(0)) == pytest.approx(0.1)
    assert float(cosine(10)) == pytest.approx(1.0)
    assert float(cosine(100)) == pytest.approx(0.0, abs=1e-6)
    assert WarmupSchedule(**cosine.get_config()).get_config() == cosine.get_config()


def test_paper_preset_rescales_caffe_rates():
    paper = TRAINING_PRESETS["paper"]
    pixels = paper.batch_size * paper.image_size**2
    assert paper.learning_rate == pytest.approx(1e-8 * pixels)
    assert paper.weight_decay == pytest.approx(5e-4 / pixels)
    assert (paper.optimizer, paper.momentum, paper.steps, paper.drop_at) == ("sgd", 0.9, 10000, 0.5)
    assert paper.learning_rate == pytest.approx(4.096e-3)


def test_paper_rate_follows_batch_and_crop_unless_given():
    small = get_training_config("paper", batch_size=2, image_size=64)
    assert small.learning_rate == pytest.approx(1e-8 * 2 * 64 * 64)
    assert small.weight_decay == pytest.approx(5e-4 / (2 * 64 * 64))
    args = train_cli.build_parser().parse_args(
        ["--preset", "paper", "--data", "d", "--out", "o", "--batch-size", "2",
         "--image-size", "64"])
    assert train_cli.config_from_args(args).learning_rate == pytest.approx(8.192e-5)
    explicit = get_training_config("paper", batch_size=2, learning_rate=0.5)
    assert explicit.learning_rate == 0.5 and explicit.summed_learning_rate is None
    assert explicit.weight_decay == pytest.approx(5e-4 / (2 * 320 * 320))


def test_steps_must_fill_whole_epochs():
    with pytest.raises(ValueError, match="multiple of steps_per_epoch"):
        tiny_config(steps=5, steps_per_epoch=2)
    assert tiny_config(steps=3, steps_per_epoch=150).steps_per_epoch == 3


def test_offline_imagenet_gives_a_message_not_a_traceback(synthetic_dir, tmp_path,
                                                          monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    status = train_cli.main(["--preset", "mobile", "--data", str(synthetic_dir), "--out",
                             str(tmp_path / "run"), "--weights", "imagenet", "--steps", "2"])
    assert status == 2
    assert "--weights PATH" in capsys.readouterr().err


def test_cli_arguments_map_to_config():
    args = train_cli.build_parser().parse_args(
        ["--preset", "paper", "--data", "d", "--out", "o", "--batch-size", "8",
         "--weights", "none", "--model-set", "num_steps=2", "--model-set",
         "normalization=group", "--lambda-fused", "2", "--lambda-side",
         '{"step1_out1": 0.5}', "--deterministic", "--val-size", "384",
         "--color-jitter", "0.2", "--noise-stddev", "4", "--jpeg-quality", "60",
         "--synthetic-defocus", "0.3", "--iou-weight", "0.5", "--teacher-maps", "t",
         "--teacher-weight", "0.3"])
    config = train_cli.config_from_args(args)
    assert config.deterministic and config.val_size == 384
    assert config.photometric == data_lib.Photometric(0.2, 4.0, 60)
    assert train_cli.config_from_args(args).to_dict()["jpeg_quality"] == 60
    assert config.synthetic_defocus_augmentation == data_lib.SyntheticDefocus(0.3)
    assert config.iou_weight == 0.5
    assert config.teacher_maps == "t" and config.teacher_weight == 0.3
    assert config.lambda_fused == 2.0 and config.lambda_side == {"step1_out1": 0.5}
    assert config.batch_size == 8 and config.backbone_weights is None
    assert config.model_overrides == {"num_steps": 2, "normalization": "group"}
    assert config.model_preset == "paper"


def test_bad_lambda_side_names_the_flag(capsys):
    status = train_cli.main(["--preset", "paper", "--data", "d", "--out", "o",
                             "--lambda-side", "{step1: 1"])
    assert status == 2
    assert "--lambda-side '{step1: 1' is neither a number nor JSON" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_reports_only_the_flags_given(synthetic_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--preset", "mobile", "--data", str(synthetic_dir), "--out", str(out),
            "--weights", "none", *TINY_CLI, "--image-size", "32", "--batch-size", "4",
            "--steps", "2", "--steps-per-epoch", "2", "--val-fraction", "0", "--verbose", "0"]
    assert train_cli.main(argv) == 0
    capsys.readouterr()
    resumed = ["--preset", "mobile", "--data", str(synthetic_dir), "--out", str(out),
               "--steps", "4", "--lr", "0.5", "--resume", "--verbose", "0"]
    assert train_cli.main(resumed) == 0
    err = capsys.readouterr().err
    assert "ignoring: learning_rate\n" in err, err


def _fixed_batch_loss(model, directory):
    from keras_defusion import data

    pairs = data.find_pairs(directory)
    images, masks = next(iter(data.make_dataset(pairs, 32, 12, training=False)))
    outputs = model(images)
    return float(np.mean(keras.losses.binary_crossentropy(masks, outputs["fused"])))


def test_few_steps_lower_the_loss(synthetic_dir, tmp_path, monkeypatch):
    config = tiny_config(steps=30, steps_per_epoch=15, learning_rate=3e-3, val_fraction=0.0)
    keras.utils.set_random_seed(config.seed)
    initial = build_model(config)
    traces = []
    original_step = DeFusionNet.train_step

    def counted_step(self, data):
        traces.append(data)
        return original_step(self, data)

    monkeypatch.setattr(DeFusionNet, "train_step", counted_step)
    result = train_lib.train(config, synthetic_dir, tmp_path / "run", verbose=0)
    # The step is traced once: its variables exist before `fit`
    # (build_training_state); a second trace doubled a short run's start-up.
    assert len(traces) == 1, len(traces)
    trained = keras.saving.load_model(result.final_model)
    assert _fixed_batch_loss(trained, synthetic_dir) < _fixed_batch_loss(initial, synthetic_dir)
    for name in ("config.json", "log.csv", "history.json", "curve.png", "final.keras"):
        assert (tmp_path / "run" / name).exists(), name
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["training"]["steps"] == 30 and saved["model"]["inference_size"] == 32
    # Checkpoints hold the optimizer (schedule, metrics): they must reload in
    # a process that imports only the package, not `training`.
    code = (f"import keras, keras_defusion; "
            f"keras.saving.load_model({str(tmp_path / 'run' / 'checkpoints' / 'last.keras')!r})")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert loaded.returncode == 0, loaded.stderr[-2000:]


@pytest.mark.slow  # 40 s; tests/test_fault_injection.py resumes killed runs too
def test_resume_continues_from_the_saved_step(synthetic_dir, tmp_path):
    out = tmp_path / "run"
    train_lib.train(tiny_config(), synthetic_dir, out, verbose=0)
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["steps_done"] == 4 and (out / "checkpoints" / "best.keras").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        train_lib.train(tiny_config(), synthetic_dir, out, verbose=0)
    before = keras.saving.load_model(out / "checkpoints" / "last.keras").get_weights()
    config = tiny_config(steps=6, schedule="cosine")
    result = train_lib.train(config, synthetic_dir, out, resume=True, verbose=0)
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["steps_done"] == 6 and result.steps_done == 6
    assert result.history["epoch"] == [0, 1, 2]
    last = keras.saving.load_model(out / "checkpoints" / "last.keras")
    assert int(last.optimizer.iterations.numpy()) == 6
    # The resumed steps trained: the first run's 4-step cosine is 0 from step
    # 4 on, so the weights only move if the schedule now spans 6 steps.
    assert any(not np.array_equal(a, b) for a, b in zip(before, last.get_weights()))


def test_augmentation_options_reach_the_training_crops(synthetic_dir):
    from keras_defusion.training.datasets import build_datasets

    def first_batch(**overrides):
        _, _, train, _ = build_datasets(tiny_config(**overrides), synthetic_dir)
        return [t.numpy() for t in next(iter(train))]

    (images, masks), (jittered, same_masks) = first_batch(), first_batch(color_jitter=0.3)
    np.testing.assert_array_equal(masks, same_masks)
    assert np.abs(images - jittered).mean() > 1.0
    _, grown = first_batch(synthetic_defocus=1.0)
    assert (grown >= masks).all() and grown.sum() > masks.sum()
    with pytest.raises(ValueError, match="--jpeg-quality"):
        tiny_config(jpeg_quality=101)


def test_teacher_maps_reach_the_training_targets_only(synthetic_dir, tmp_path):
    """A teacher that maps each photo to its mask's inverse, at full weight,
    inverts the training targets; validation keeps the masks."""
    from keras_defusion.training.datasets import build_datasets

    (tmp_path / "maps").mkdir()
    for pair in data_lib.find_pairs(synthetic_dir):
        mask = image_io.load_mask(pair.mask_path)
        image_io.save_png(tmp_path / "maps" / f"{pair.stem}.png",
                          ((1 - mask) * 255).astype(np.uint8))
    _, _, train, val = build_datasets(tiny_config(), synthetic_dir)
    _, _, taught, taught_val = build_datasets(
        tiny_config(teacher_maps=str(tmp_path), teacher_weight=1.0), synthetic_dir)
    (images, masks), (same_images, inverted) = (
        [t.numpy() for t in next(iter(dataset))] for dataset in (train, taught))
    np.testing.assert_array_equal(images, same_images)
    assert np.abs(inverted - (1 - masks)).mean() < 0.05
    for (_, val_masks), (_, same_val_masks) in zip(val, taught_val):
        np.testing.assert_array_equal(val_masks.numpy(), same_val_masks.numpy())
    with pytest.raises(ValueError, match=r"--teacher-weight\) must be in \(0, 1\]"):
        tiny_config(teacher_weight=1.5)


def test_validation_runs_at_val_size(synthetic_dir, tmp_path):
    from keras_defusion.training.datasets import build_datasets

    config = tiny_config(steps=2, steps_per_epoch=2, val_size=64)
    _, _, train, val = build_datasets(config, synthetic_dir)
    assert train.element_spec[0].shape[1:3] == (32, 32)
    assert val.element_spec[0].shape[1:3] == (64, 64)
    assert next(iter(val))[0].shape[1:3] == (64, 64)
    assert tiny_config().val_size is None  # the crop size, as before
    with pytest.raises(ValueError, match="--val-size"):
        tiny_config(val_size=0)
    # The model, built on 32-px crops, is checked on 64-px photos.
    result = train_lib.train(config, synthetic_dir, tmp_path / "run", verbose=0)
    assert len(result.history["val_fused_mae"]) == 1
    assert (tmp_path / "run" / "checkpoints" / "best.keras").exists()


@pytest.mark.slow  # three short runs, 30 s
def test_the_same_seed_trains_the_same_weights(synthetic_dir, tmp_path):
    def trained(seed, name):
        config = tiny_config(seed=seed, steps=2, steps_per_epoch=2, val_fraction=0.0)
        result = train_lib.train(config, synthetic_dir, tmp_path / name, verbose=0)
        return keras.saving.load_model(result.final_model).get_weights()

    first, again, other = trained(1, "a"), trained(1, "b"), trained(2, "c")
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_resume_without_a_checkpoint_is_an_error(synthetic_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_lib.train(tiny_config(), synthetic_dir, tmp_path / "empty", resume=True)


def test_bad_data_stops_before_training_naming_the_file(synthetic_dir, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(synthetic_dir, broken)
    os.remove(broken / "gt" / "synth_0004.png")
    (broken / "images" / "synth_0005.jpg").write_bytes(b"")
    status = train_cli.main(["--preset", "mobile", "--data", str(broken), "--out",
                             str(tmp_path / "run"), "--weights", "none", *TINY_CLI])
    message = capsys.readouterr().err
    assert status == 2
    assert "synth_0004" in message and "synth_0005.jpg" in message
    assert not (tmp_path / "run").exists()  # a failed start leaves no empty folders


def test_out_that_is_a_file_is_an_error_line(synthetic_dir, tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    status = train_cli.main(["--preset", "mobile", "--data", str(synthetic_dir), "--out",
                             str(tmp_path / "taken"), "--weights", "none", *TINY_CLI])
    assert status == 2
    assert f"--out {tmp_path / 'taken'} is a file; give a folder" in capsys.readouterr().err


@pytest.mark.parametrize("broken", ["empty_state", "truncated_last"])
def test_resume_names_a_broken_checkpoint_file(synthetic_dir, tmp_path, broken):
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (tmp_path / "run" / "config.json").write_text("{}")
    (checkpoints / "state.json").write_text("" if broken == "empty_state" else
                                            '{"epochs_done": 1, "steps_done": 2}')
    (checkpoints / "last.keras").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(DataError) as raised:
        train_lib.train(tiny_config(), synthetic_dir, tmp_path / "run", resume=True)
    name = "state.json: not a readable run state" if broken == "empty_state" else (
        "last.keras: not a readable .keras file (truncated?)")
    assert name in str(raised.value)


def _run_python(code, env=None, timeout=300):
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow  # a second process: minutes on 2 cores; CI runs -m slow
def test_mirrored_strategy_over_two_logical_cpus(synthetic_dir, tmp_path):
    code = f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tests.test_training import tiny_config
        from keras_defusion.training import train
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        # 9 training and 3 validation pairs: the last validation batch (3)
        # splits unevenly over the replicas.
        result = train.train(tiny_config(), {str(synthetic_dir)!r}, {str(tmp_path / 'run')!r},
                             strategy=strategy, verbose=0)
        print("STEPS", result.steps_done)
    """
    process = _run_python(code)
    try:
        output, _ = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 0, output
    assert "STEPS 4" in output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["replicas"] == 2


def wait_for(processes, timeout=600):
    """Each process's output once it ends; none is left running."""
    outputs = []
    for process in processes:
        try:
            output, _ = process.communicate(timeout=timeout)
        finally:
            process.kill()
        outputs.append(output)
    return outputs


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow  # a second process: minutes on 2 cores; CI runs -m slow
def test_two_local_workers_train_together(synthetic_dir, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    out = tmp_path / "run"
    code = f"""
        from tests.test_training import tiny_config
        from keras_defusion.training import train
        # The optional loss term and augmentation ride along (the default
        # path runs under multi_worker in tests/test_gpu_path.py).
        config = tiny_config(iou_weight=1.0, synthetic_defocus=0.5)
        result = train.train(config, {str(synthetic_dir)!r}, {str(out)!r}, verbose=0)
        print("STEPS", result.steps_done, "MODEL", result.final_model)
    """
    workers = [
        _run_python(code, env={"TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})})
        for index in range(2)
    ]
    outputs = wait_for(workers)
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output
        assert "STEPS 4" in output, output
    chief = keras.saving.load_model(out / "final.keras")
    other = keras.saving.load_model(out / "workers" / "worker-1" / "final.keras")
    # Both workers applied the same all-reduced updates.
    for a, b in zip(chief.get_weights(), other.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    log = (out / "log.csv").read_text()
    assert log.startswith("epoch,learning_rate,loss,val_fused_mae")  # Keras' CSVLogger
    assert list((out / "tensorboard").rglob("events.out.tfevents*"))  # Keras' TensorBoard
    assert json.loads((out / "history.json").read_text())["epochs"]["val_fused_mae"]


@pytest.mark.slow  # 20-35 s; the README's and the cards' package commands run too (slow)
def test_package_writes_the_shipped_form(synthetic_dir, tmp_path):
    from keras_defusion.models import pretrained
    from keras_defusion.inference.detector import load_detector
    from keras_defusion.training.average import average_weights
    from training.package import package_run

    run = tmp_path / "run"
    train_lib.train(tiny_config(steps=2, steps_per_epoch=2), synthetic_dir, run, verbose=0)
    assets = tmp_path / "assets"
    folder = package_run(run, pretrained.DEFAULT_MODEL, synthetic_dir / "images",
                         assets_root=assets, num_calibration=2, inference_size=64)
    for name in ("config.json", "model.weights.h5", "model_int8.tflite",
                 "training_config.json", "log.csv"):
        assert (folder / name).exists(), name
    model = pretrained.load_pretrained(pretrained.DEFAULT_MODEL, assets_root=assets)
    assert model.inference_size == 64
    assert load_detector(folder / "model_int8.tflite").image_size == 64
    assert [p.name for p in assets.iterdir()] == [pretrained.DEFAULT_MODEL]  # no staging left
    with pytest.raises(FileExistsError, match="--overwrite"):
        package_run(run, pretrained.DEFAULT_MODEL, synthetic_dir / "images", assets_root=assets)
    package_run(run, pretrained.DEFAULT_MODEL, synthetic_dir / "images", assets_root=assets,
                num_calibration=2, inference_size=64, overwrite=True)
    # A weight average ships without a run, with its ingredients.
    soup = tmp_path / "soup.keras"
    average_weights([run / "final.keras", run / "final.keras"], soup)
    folder = package_run(None, pretrained.DEFAULT_MODEL, synthetic_dir / "images",
                         model_file=soup, assets_root=assets, num_calibration=2,
                         inference_size=64, overwrite=True)
    assert json.loads((folder / "average.json").read_text())["sources"] == [
        str(run / "final.keras")] * 2
    assert not (folder / "training_config.json").exists()
    assert pretrained.load_pretrained(pretrained.DEFAULT_MODEL, assets_root=assets)


def test_package_cli_refuses_to_replace_the_shipped_model(tmp_path, capsys):
    from keras_defusion.models import pretrained
    from training import package

    assert pretrained.DEFAULT_MODEL in pretrained.available_models()
    status = package.main(["--run", str(tmp_path), "--calibration", str(tmp_path)])
    assert status == 2
    assert "--overwrite" in capsys.readouterr().err
    assert pretrained.load_pretrained(pretrained.DEFAULT_MODEL) is not None
    assert package.main(["--calibration", str(tmp_path)]) == 2
    assert "a training run (--run) or a .keras file (--model)" in capsys.readouterr().err


def test_resize_methods_are_a_closed_set():
    assert tiny_config(resize_methods=["nearest", "area"]).resize_methods == ("nearest", "area")
    for bad in ([], ["lanczos"]):
        with pytest.raises(ValueError, match="resize_methods must be a non-empty selection"):
            tiny_config(resize_methods=bad)
