"""The GPU user's path, run on CPUs: packaging, strategies and mixed precision.

Slow (minutes): CI runs them with `-m slow`. Each training runs in a fresh
process, as a user's would, since strategies and logical devices are fixed
once TensorFlow starts.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.test_training import TINY_CLI
from tests.test_training import _free_ports
from tests.test_training import synthetic_dir  # noqa: F401 (a fixture)
from tests.test_training import wait_for

pytestmark = pytest.mark.slow

STEPS = ["--image-size", "32", "--batch-size", "4", "--steps-per-epoch", "2",
         "--val-fraction", "0.25"]


def _start_training(argv, logical_cpus=1, tf_config=None):
    """Starts `python -m training.train ARGV` in a fresh process."""
    code = f"""
        import sys
        import tensorflow as tf
        if {logical_cpus} > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * {logical_cpus})
        from training import train
        sys.exit(train.main({argv!r}))
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _train(distribution, argv):
    """Runs one training command under `distribution`; returns each output."""
    argv = [*argv, "--distribution", distribution]
    if distribution == "multi_worker":
        ports = _free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        processes = [
            _start_training(argv, tf_config={"cluster": cluster,
                                             "task": {"type": "worker", "index": index}})
            for index in range(2)
        ]
    else:
        processes = [_start_training(argv, logical_cpus=2 if distribution == "mirrored" else 1)]
    outputs = wait_for(processes)
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    return outputs


def _assert_float32_model(path):
    model = keras.saving.load_model(path)
    assert model.dtype_policy.name == "float32"
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    maps = model(np.zeros((1, 40, 40, 3), "float32"))
    assert all(value.dtype == "float32" for value in maps.values())
    return model


# Each strategy with mixed precision (where the crash of issue 17 was). Float32
# under the mirrored and multi-worker strategies is what
# tests/test_training.py's two strategy tests train; the default strategy in
# float32 is what every other training test runs. Sized so that CI stays
# within its 30 minutes.
@pytest.mark.parametrize("distribution", ["default", "mirrored", "multi_worker"])
def test_paper_recipe_trains_and_resumes_in_mixed_precision(synthetic_dir, tmp_path, distribution):
    out = tmp_path / "run"
    argv = ["--preset", "paper", "--data", str(synthetic_dir), "--out", str(out),
            "--weights", "none", *TINY_CLI, *STEPS, "--mixed-precision"]
    for output in _train(distribution, [*argv, "--steps", "4"]):
        assert "trained 4 steps" in output, output[-3000:]
    for output in _train(distribution, [*argv, "--steps", "6", "--resume"]):
        assert "trained 6 steps" in output, output[-3000:]

    saved = json.loads((out / "config.json").read_text())
    assert saved["training"]["mixed_precision"] is True
    assert saved["training"]["steps"] == 6
    # The paper's rate follows the batch and the crop (4 x 32 x 32 pixels).
    assert saved["training"]["learning_rate"] == pytest.approx(1e-8 * 4 * 32 * 32)
    if distribution == "mirrored":
        assert saved["replicas"] == 2
    log = (out / "log.csv").read_text().splitlines()
    assert len(log) == 1 + 3, log  # a header and one row per 2-step epoch
    model = _assert_float32_model(out / "final.keras")
    _detect_and_export(model, out / "final.keras", tmp_path)


def _detect_and_export(model, path, tmp_path):
    """What a user does next with a mixed-precision run's final model."""
    import keras_defusion
    from keras_defusion import export as export_lib

    photo = np.random.default_rng(0).uniform(0, 255, (50, 70, 3)).astype("uint8")
    blur = keras_defusion.load_detector(str(path)).detect(photo)
    assert blur.shape == (50, 70) and blur.dtype == np.float32 and np.isfinite(blur).all()
    tflite = export_lib.export_tflite(model, tmp_path / "model.tflite", image_size=32,
                                      metadata=False)
    interpreter = export_lib.load_tflite(tflite)
    images = export_lib.preprocess_photo(photo, 64)  # the file's input: twice its 32
    maps = export_lib.run_tflite(interpreter, images)
    assert np.isfinite(maps).all()
    export_lib.export_saved_model(model, tmp_path / "serving")
    assert (tmp_path / "serving").exists()


def _resolve(requirement, tmp_path):
    """The distributions pip would install for `requirement` (nothing downloaded)."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
         "--report", str(report), requirement],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    installs = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"].lower().replace("_", "-") for item in installs}


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the CPU wheel is x86-64 only")
def test_gpu_install_holds_one_tensorflow_with_cuda(tmp_path):
    names = _resolve(".[gpu]", tmp_path)
    assert "tensorflow" in names and "tensorflow-cpu" not in names
    assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12"} <= names, sorted(names)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the CPU wheel is x86-64 only")
def test_cpu_install_holds_one_small_tensorflow(tmp_path):
    names = _resolve(".[cpu]", tmp_path)
    assert "tensorflow-cpu" in names and "tensorflow" not in names
    assert not [name for name in names if name.startswith("nvidia-")], sorted(names)
