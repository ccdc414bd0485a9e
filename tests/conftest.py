import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
CUHK_DIR = REPO_ROOT.parent / "shared" / "data" / "CUHK"


@pytest.fixture
def cuhk_dir():
    """The CUHK benchmark beside the project; skips the test when absent."""
    if not (CUHK_DIR / "test" / "images").is_dir():
        pytest.skip(f"CUHK data not found at {CUHK_DIR}")
    return CUHK_DIR


# The tiny model's TFLite files are exported once: their conversions are the
# suite's slowest setup, and two test modules read them.
TINY_TFLITE_SIZE = 64


@pytest.fixture(scope="session")
def tiny_tflite_model():
    """`harness.tiny_model(inference_size=64)`, the model that
    `tiny_tflite_files` exports; tests must not change it."""
    from tests import harness

    return harness.tiny_model(inference_size=TINY_TFLITE_SIZE)


@pytest.fixture(scope="session")
def tiny_tflite_files(tiny_tflite_model, tmp_path_factory):
    """TFLite files of `tiny_tflite_model`: one per mode, and "int8-io-int8"
    (int8 input and output); with metadata where tflite-support is
    importable."""
    from keras_defusion import export as export_lib
    from tests import harness

    folder = tmp_path_factory.mktemp("tiny_tflite")
    calibration = harness.calibration_set()
    paths = {}
    for mode in export_lib.TFLITE_MODES:
        paths[mode] = export_lib.export_tflite(
            tiny_tflite_model, folder / f"{mode}.tflite", mode,
            calibration_images=calibration if mode == "int8" else None)
    paths["int8-io-int8"] = export_lib.export_tflite(
        tiny_tflite_model, folder / "int8_signed.tflite", "int8",
        calibration_images=calibration, io_dtype="int8")
    return paths
