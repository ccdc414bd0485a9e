"""benchmarks/ablations.py: the variants it trains and the commands it runs."""

import json
import pathlib

import pytest

from benchmarks import ablations
from keras_defusion.cli import train
from keras_defusion.data import synthetic


def test_variants_cover_tables_3_and_4_and_three_seeds():
    table = ablations.variants()
    assert {(steps, ffrm) for steps, ffrm, _ in table.values()} == {
        (3, False), *((t, True) for t in range(1, 7))}
    assert sorted(seed for steps, ffrm, seed in table.values() if (steps, ffrm) == (3, True)) == [0, 1, 2]


def test_every_command_gives_the_variants_training_config():
    for name, (num_steps, use_ffrm, seed) in ablations.variants().items():
        command = ablations.train_command(pathlib.Path("out") / name, "train", "val",
                                          num_steps, use_ffrm, seed)
        assert command[1:3] == ["-m", "training.train"]
        config = train.config_from_args(train.build_parser().parse_args(command[3:]))
        assert config.model_overrides == {"num_steps": num_steps, "use_ffrm": use_ffrm}
        assert (config.seed, config.steps, config.image_size) == (
            seed, ablations.BUDGET["steps"], ablations.BUDGET["image_size"])
        assert config.model_preset == ablations.BUDGET["preset"]


def test_noise_is_the_spread_of_the_base_seeds():
    runs = {f"t3_seed{seed}": {split: {"max_f": 0.9 + seed / 100, "f_at_0.5": 0.9,
                                       "mae": 0.1} for split in ("val", "test")}
            for seed in (0, 1, 2)}
    summary = ablations.noise(runs)
    assert summary["seeds"] == 3
    assert abs(summary["test_max_f_std"] - 0.01) < 1e-9
    assert summary["test_mae_std"] < 1e-12


@pytest.mark.slow
def test_end_to_end_at_a_tiny_budget(tmp_path, monkeypatch):
    data = tmp_path / "data"
    synthetic.write_synthetic_folder(data / "train", count=10, size=48, seed=1)
    synthetic.write_synthetic_folder(data / "test", count=3, size=48, seed=2)
    monkeypatch.setattr(ablations, "BUDGET", {
        "preset": "scratch", "steps": 2, "steps_per_epoch": 1, "image_size": 32,
        "model_set": ["encoder_width=0.0625", "side_channels=4", "fusion_channels=4"]})
    out = tmp_path / "ablations.json"
    argv = ["--runs", str(tmp_path / "runs"), "--data", str(data), "--only", "t3_seed0",
            "--out", str(out)]
    assert ablations.main(argv) == 0
    report = json.loads(out.read_text())
    run = report["runs"]["t3_seed0"]
    assert run["config"] == {"num_steps": 3, "use_ffrm": True, "seed": 0}
    assert 0 <= run["test"]["mae"] <= 1 and run["training_seconds"] > 0
    assert "fused" in report["t3_outputs_test"] and "step3_out6" in report["t3_outputs_test"]
    # The split is fixed and shared (10% of 10 photos); a second call reuses
    # the finished run instead of training again.
    assert len(list((tmp_path / "runs" / "split" / "val" / "gt").iterdir())) == 1
    monkeypatch.setattr(ablations.subprocess, "run", None)  # would fail if called
    assert ablations.main([*argv, "--overwrite"]) == 0
    assert json.loads(out.read_text())["runs"]["t3_seed0"]["training_seconds"] == run["training_seconds"]
