"""Package a trained model as a shipped, named model of keras-defusion.

    python -m training.package --run runs/cuhk --name defusionnet-scratch-cuhk \\
        --calibration ../shared/data/CUHK/train/images

Writes `keras_defusion/assets/<name>/`: config.json and float16 weights (what
`load_pretrained(name)` reads), the full-integer TFLite file
`model_int8.tflite` with its JSON sidecar, and the run's training config,
history and curve, so the shipped model carries how it was made. A weight
average (`python -m training.average`) ships without `--run`, with its list
of ingredients as `average.json`, an ensemble (`python -m training.ensemble`)
with its members as `ensemble.json`:

    python -m training.package --model runs/soups/soup.keras --name NAME \
        --calibration ../shared/data/CUHK/train/images
"""

import argparse
import os
import pathlib
import shutil
import sys
import tempfile

from keras_defusion.models import pretrained

RUN_FILES = {"config.json": "training_config.json", "history.json": "history.json",
             "curve.png": "curve.png", "log.csv": "log.csv"}
SIZE_LIMIT_BYTES = 50 * 1024 * 1024
MODEL_CARD = "MODEL_CARD.md"
AVERAGE_FILE = "average.json"
ENSEMBLE_FILE = "ensemble.json"


def package_run(run_dir, name, calibration, model_file=None, assets_root=None,
                num_calibration=200, inference_size=None, overwrite=False):
    """Writes the shipped form of a run's model; returns the folder.

    Args:
        run_dir: a training run folder, or None to ship `model_file` alone
            (a weight average or an ensemble, say).
        name: a name registered in `keras_defusion.models.pretrained.PRETRAINED_MODELS`.
        calibration: folder of real photos for the int8 TFLite export.
        model_file: the `.keras` file to ship (default: the run's best
            checkpoint by validation MAE, else `final.keras`). Its sidecar
            from `training.average` or `training.ensemble`, if any, ships
            as `average.json` or `ensemble.json`.
        assets_root: where to write (default: the package's assets folder).
        num_calibration: at most this many calibration photos.
        inference_size: the size detect and the TFLite file use (default:
            the model's, i.e. the training size); choose it on validation
            data (`benchmarks/val_inference_size.py`).
        overwrite: replace the model's folder if it exists; without it an
            existing model is refused, so a reproduction cannot silently
            replace what ships.

    Raises:
        FileExistsError: the folder exists and `overwrite` is False.
        ValueError: neither `run_dir` nor `model_file` is given.
    """
    import keras

    from keras_defusion import export as export_lib
    from keras_defusion.models.ensemble import DeFusionEnsemble
    from keras_defusion.training.average import average_sidecar_path
    from keras_defusion.training.run_folder import float32_copy

    if run_dir is None and model_file is None:
        raise ValueError("name the model to ship: a training run (--run) or a .keras "
                         "file (--model)")
    directory = pretrained.pretrained_dir(name, assets_root)
    if directory.exists() and not overwrite:
        raise FileExistsError(
            f"{directory} exists (a shipped model). Pass --assets-root DIR to write "
            "elsewhere, or --overwrite to replace it")
    if model_file is None:
        best = os.path.join(run_dir, "checkpoints", "best.keras")
        model_file = best if os.path.exists(best) else os.path.join(run_dir, "final.keras")
    model_file = os.fspath(model_file)
    model = float32_copy(keras.saving.load_model(model_file, compile=False))
    if inference_size:  # metadata of the model: no rebuild
        model.inference_size = inference_size
    directory.parent.mkdir(parents=True, exist_ok=True)
    # Staged beside the target and renamed into place once complete and
    # within the size limit, so a failed run leaves the shipped model as it was.
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=directory.parent) as tmp:
        staging = pathlib.Path(tmp) / name
        pretrained.save_pretrained(model, staging)
        export_lib.export_tflite(
            model, staging / pretrained.INT8_TFLITE_FILE, "int8",
            calibration_images=calibration, num_calibration=num_calibration,
        )
        for source, target in RUN_FILES.items():
            if run_dir is not None and os.path.exists(os.path.join(run_dir, source)):
                shutil.copyfile(os.path.join(run_dir, source), staging / target)
        sources = average_sidecar_path(model_file)
        if os.path.exists(sources):
            shutil.copyfile(sources, staging / (
                ENSEMBLE_FILE if isinstance(model, DeFusionEnsemble) else AVERAGE_FILE))
        card = directory / MODEL_CARD
        if card.exists():  # written by hand; kept across re-packaging
            shutil.copyfile(card, staging / MODEL_CARD)
        total = sum(path.stat().st_size for path in staging.iterdir())
        if total > SIZE_LIMIT_BYTES:
            raise ValueError(f"{name}: {total / 2**20:.1f} MiB is over the 50 MiB limit")
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    print(f"wrote {directory} ({total / 2**20:.1f} MiB) from {model_file}")
    return directory


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="training run folder (needed unless --model)")
    parser.add_argument("--name", default=pretrained.DEFAULT_MODEL)
    parser.add_argument("--model", help="the .keras file (default: the run's best)")
    parser.add_argument("--calibration", required=True, help="photos for int8 calibration")
    parser.add_argument("--num-calibration", type=int, default=200)
    parser.add_argument("--assets-root", help="write DIR/<name>/ (default: the package's assets)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    parser.add_argument("--inference-size", type=int,
                        help="detect's and the TFLite file's input size (default: the training size)")
    args = parser.parse_args(argv)
    try:
        package_run(args.run, args.name, args.calibration, args.model,
                    assets_root=args.assets_root, num_calibration=args.num_calibration,
                    inference_size=args.inference_size, overwrite=args.overwrite)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
