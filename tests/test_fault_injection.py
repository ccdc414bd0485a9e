"""Training survives being killed anywhere: resume ends at the same step count.

A run writes, each epoch, `last.keras` and then `state.json`; a kill can land
between the two. These tests kill `python -m training.train` (a fresh
process, as a user's run) and resume until it finishes, then check the step
count of the last checkpoint's optimizer and that `final.keras` loads.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import keras
import pytest

from keras_defusion.data import synthetic
from tests import harness
from tests.conftest import REPO_ROOT

STEPS, STEPS_PER_EPOCH = 6, 2
TINY = harness.TINY_MODEL_FLAGS


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fault_data")
    synthetic.write_synthetic_folder(root, count=8, size=48, seed=2)
    return root


def _command(data_dir, out_dir, resume):
    return [sys.executable, "-m", "training.train", "--preset", "mobile",
            "--data", str(data_dir), "--out", str(out_dir), "--weights", "none",
            "--steps", str(STEPS), "--steps-per-epoch", str(STEPS_PER_EPOCH),
            "--batch-size", "2", "--image-size", "32", "--val-fraction", "0.25",
            "--verbose", "0", *TINY, *(["--resume"] if resume else [])]


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _run(data_dir, out_dir, resume):
    result = subprocess.run(_command(data_dir, out_dir, resume), cwd=REPO_ROOT, env=_env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _assert_finished_at_the_right_step(out_dir):
    last = keras.saving.load_model(out_dir / "checkpoints" / "last.keras")
    assert int(last.optimizer.iterations) == STEPS
    state = json.loads((out_dir / "checkpoints" / "state.json").read_text())
    assert state["steps_done"] == STEPS
    final = keras.saving.load_model(out_dir / "final.keras", compile=False)
    assert final.count_params() == last.count_params()


@pytest.mark.slow
def test_a_kill_between_the_checkpoint_files_does_not_overshoot(data_dir, tmp_path):
    """last.keras at epoch 2, state.json still at epoch 1: resume must go by
    the checkpoint's optimizer, not train epoch 2 again."""
    out = tmp_path / "run"
    _run(data_dir, out, resume=False)
    state_path = out / "checkpoints" / "state.json"
    state = json.loads(state_path.read_text())
    # As a kill after the last epoch's last.keras and before its state.json
    # leaves it: the checkpoint at step 6, state.json one epoch behind.
    state.update(epochs_done=state["epochs_done"] - 1,
                 steps_done=state["steps_done"] - STEPS_PER_EPOCH,
                 optimizer_iterations=STEPS - STEPS_PER_EPOCH)
    state_path.write_text(json.dumps(state))
    os.remove(out / "final.keras")
    _run(data_dir, out, resume=True)
    _assert_finished_at_the_right_step(out)


@pytest.mark.slow
def test_random_kills_then_resume_always_finish_at_the_same_step(data_dir, tmp_path):
    rng = random.Random(0)
    # One run killed twice at random moments (seeded): about a CPU-minute.
    out = tmp_path / "run"
    kills = 0
    finished = False
    # Until a run ends by itself: a kill can land after final.keras, while
    # history.json is written, and only a resume then cleans up.
    while not finished:
        resume = (out / "checkpoints" / "state.json").exists()
        process = subprocess.Popen(_command(data_dir, out, resume), cwd=REPO_ROOT,
                                   env=_env(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        if kills < 2:
            # Past the start-up (imports, data checks), into the epochs.
            time.sleep(rng.uniform(8, 20))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
        _, stderr = process.communicate(timeout=600)
        assert process.returncode in (0, -signal.SIGKILL), stderr[-3000:]
        finished = process.returncode == 0
    _assert_finished_at_the_right_step(out)
    # A resume removes the temporaries of the killed runs' writes at once.
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".tmp")]
    assert leftovers == [], leftovers
