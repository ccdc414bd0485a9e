"""The paper's ablations (Tables 3 and 4) at a reduced CPU budget.

Trains one model per variant with the `scratch` recipe shortened, identical
for all (same steps, crops, data order and validation split): FFRM against
noFFRM (Table 3), t = 1..6 recurrent steps (Table 4), and the base
configuration (t = 3, FFRM) with three seeds, so that the noise level is
stated beside every difference. Then scores each final model on the fixed
validation split of CUHK train and on CUHK test, and every output of the
t = 3 model on test. Writes JSON:

    nohup python -m benchmarks.ablations --runs runs/ablations \\
        --out runs/ablations/ablations.json > runs/ablations.log 2>&1 &

Resumable: rerun the same command. Finished runs (`final.keras`) are kept,
an interrupted one resumes from its last checkpoint, and the scores are
recomputed from the models. `--only t1,noffrm` runs a subset.
"""

import argparse
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import time

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "CUHK"
SPLIT_SEED = 0
VAL_FRACTION = 0.1
BASE_SEEDS = (0, 1, 2)

# The shortened `scratch` recipe, identical for every variant. At 600 steps of
# batch 8 at 160 px a t = 3 run takes ~15 CPU-minutes on 2 cores (t = 6: ~20).
BUDGET = {"preset": "scratch", "steps": 600, "steps_per_epoch": 150, "image_size": 160}


def variants():
    """name -> (num_steps, use_ffrm, seed): Table 3, Table 4 and the noise."""
    table = {f"t3_seed{seed}": (3, True, seed) for seed in BASE_SEEDS}
    table["noffrm"] = (3, False, 0)
    for steps in (1, 2, 4, 5, 6):
        table[f"t{steps}"] = (steps, True, 0)
    return table


def _split_folders(data_dir, runs_dir):
    """Fixed train / validation folders of symlinks (seed 0, 10%), shared by all
    variants so that their validation scores are comparable."""
    from keras_defusion.data import pairs as data_lib

    train = runs_dir / "split" / "train"
    val = runs_dir / "split" / "val"
    if (val / "gt").is_dir():
        return train, val
    pairs = data_lib.find_pairs(str(data_dir / "train"))
    train_pairs, val_pairs = data_lib.split_pairs(pairs, VAL_FRACTION, seed=SPLIT_SEED)
    for folder, chosen in ((train, train_pairs), (val, val_pairs)):
        for sub in ("images", "gt"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for pair in chosen:
            for sub, source in (("images", pair.image_path), ("gt", pair.mask_path)):
                link = folder / sub / os.path.basename(source)
                if not link.exists():
                    link.symlink_to(os.path.abspath(source))
    return train, val


def train_command(out_dir, train_dir, val_dir, num_steps, use_ffrm, seed):
    """The `python -m training.train` command of one variant."""
    return [
        sys.executable, "-m", "training.train", "--preset", BUDGET["preset"],
        "--data", str(train_dir), "--val", str(val_dir), "--out", str(out_dir),
        "--steps", str(BUDGET["steps"]), "--steps-per-epoch", str(BUDGET["steps_per_epoch"]),
        "--image-size", str(BUDGET["image_size"]), "--seed", str(seed),
        "--model-set", f"num_steps={num_steps}",
        "--model-set", f"use_ffrm={str(use_ffrm).lower()}", "--verbose", "2",
        # Further settings shared by every variant (none in the real budget).
        *[word for setting in BUDGET.get("model_set", ()) for word in ("--model-set", setting)],
    ]


def run_variant(out_dir, command):
    """Trains (or resumes) one variant; returns its training seconds in all."""
    timing = out_dir / "training_seconds.json"
    spent = json.loads(timing.read_text())["seconds"] if timing.exists() else 0.0
    if (out_dir / "final.keras").exists():
        return spent
    resume = ["--resume"] if (out_dir / "checkpoints" / "state.json").exists() else []
    print("running:", shlex.join(command + resume), flush=True)
    start = time.perf_counter()
    subprocess.run(command + resume, check=True, cwd=REPO_ROOT)
    spent += time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    timing.write_text(json.dumps({"seconds": spent}))
    return spent


def _scores(entry):
    return {key: entry[key] for key in ("max_f", "f_at_0.5", "mae")}


def score(detector, split_dir, outputs=None):
    """Scores of a detector on a folder of images/ + gt/ (every output with "all")."""
    from keras_defusion.evaluation import scoring as evaluation

    results = evaluation.evaluate_detector(
        detector, str(split_dir / "images"), str(split_dir / "gt"), outputs=outputs,
        name="model")
    if outputs == "all":
        return {name: _scores(entry) for name, entry in results.items()}
    return _scores(results["model"])


def noise(runs):
    """Mean and sample standard deviation of the base seeds' scores."""
    import numpy as np

    base = [runs[f"t3_seed{seed}"] for seed in BASE_SEEDS if f"t3_seed{seed}" in runs]
    summary = {"seeds": len(base)}
    if len(base) < 2:
        return summary
    for split in ("test", "val"):
        for key in ("max_f", "f_at_0.5", "mae"):
            values = np.array([run[split][key] for run in base])
            summary[f"{split}_{key}_mean"] = float(values.mean())
            summary[f"{split}_{key}_std"] = float(values.std(ddof=1))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_out_arguments(parser)
    parser.add_argument("--runs", default="runs/ablations", help="folder of the runs")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CUHK (train/ and test/)")
    parser.add_argument("--only", help="comma-separated variant names (default: all)")
    args = parse_args_keeping_results(parser, argv)

    import keras

    from keras_defusion.inference.detector import load_detector

    data_dir = pathlib.Path(args.data)
    runs_dir = pathlib.Path(args.runs).resolve()
    table = variants()
    names = args.only.split(",") if args.only else list(table)
    unknown = sorted(set(names) - set(table))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {sorted(table)}")
    train_dir, val_dir = _split_folders(data_dir, runs_dir)
    report = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
              "budget": BUDGET, "val_split": {"fraction": VAL_FRACTION, "seed": SPLIT_SEED},
              "protocol": "README, Evaluation: max-F over 256 thresholds, beta^2 0.3, "
                          "MAE per image; CUHK test (100) for the report, validation "
                          "split of CUHK train (60) for choices",
              "runs": {}}
    for name in names:
        num_steps, use_ffrm, seed = table[name]
        out_dir = runs_dir / name
        command = train_command(out_dir, train_dir, val_dir, num_steps, use_ffrm, seed)
        seconds = run_variant(out_dir, command)
        model_file = out_dir / "final.keras"
        model = keras.saving.load_model(model_file, compile=False)
        detector = load_detector(str(model_file))  # once for every split
        report["runs"][name] = {
            "config": {"num_steps": num_steps, "use_ffrm": use_ffrm, "seed": seed},
            "command": shlex.join(command),
            "training_seconds": seconds,
            "parameters": int(model.count_params()),
            "val": score(detector, val_dir),
            "test": score(detector, data_dir / "test"),
        }
        if name == "t3_seed0":
            report["t3_outputs_test"] = score(detector, data_dir / "test", outputs="all")
        print(name, json.dumps(report["runs"][name]["test"]), flush=True)
    report["noise"] = noise(report["runs"])
    from keras_defusion.io.files import write_json

    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
