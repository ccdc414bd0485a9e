"""TFLite export: every mode converts, runs in LiteRT, holds builtin ops only."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_defusion import export as export_lib
import keras_defusion
from keras_defusion.errors import UsageError
from tests import harness
from tests.conftest import REPO_ROOT
from tests.conftest import TINY_TFLITE_SIZE
from tests.harness import calibration_set

SIZE = TINY_TFLITE_SIZE
INPUT_SIZE = SIZE * export_lib.DEFAULT_INPUT_REDUCTION


@pytest.fixture(scope="module")
def model(tiny_tflite_model):
    """The model `files` were exported from (conftest)."""
    return tiny_tflite_model


@pytest.fixture(scope="module")
def files(tiny_tflite_files):
    """One file per mode of `model`'s weights, and an int8 file with int8
    input and output (conftest: shared with tests/test_phone_runtimes.py)."""
    return tiny_tflite_files


@pytest.fixture(scope="module")
def photo_batch():
    """Two photos at the files' input size (twice the inference size)."""
    return np.concatenate([export_lib.preprocess_photo(p, INPUT_SIZE) for p in calibration_set(2)])


ALL_FILES = list(export_lib.TFLITE_MODES) + ["int8-io-int8"]


@pytest.mark.parametrize("key", ALL_FILES)
def test_runs_with_right_shape_and_range(files, photo_batch, key):
    interpreter = export_lib.load_tflite(files[key])
    assert list(interpreter.get_signature_list()) == ["serving_default"]
    signature = interpreter.get_signature_list()["serving_default"]
    assert signature == {"inputs": ["images"], "outputs": ["blur_map"]}
    maps = export_lib.run_tflite(interpreter, photo_batch)
    assert maps.shape == (len(photo_batch), SIZE, SIZE, 1)
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0


def test_float32_matches_keras(model, files, photo_batch):
    expected = model.inference_model()(export_lib.reduce_input(photo_batch, 2)).numpy()
    harness.assert_map_spread(expected)  # a constant map could not pass
    actual = export_lib.run_tflite(export_lib.load_tflite(files["float32"]), photo_batch)
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_reduction_inside_is_the_antialiased_resize(model, files):
    """The file's input is twice the inference size: its map of a photo
    resized there equals the Keras map of the photo resized straight to S,
    as detect resizes (the antialiased kernel, not just any reduction)."""
    photos = calibration_set(2)
    direct = np.concatenate([export_lib.preprocess_photo(p, SIZE) for p in photos])
    twice = np.concatenate([export_lib.preprocess_photo(p, INPUT_SIZE) for p in photos])
    expected = model.inference_model()(direct).numpy()
    harness.assert_map_spread(expected)
    actual = export_lib.run_tflite(export_lib.load_tflite(files["float32"]), twice)
    # Resizing twice is not resizing once: close, not equal (measured 4e-3).
    assert np.abs(actual - expected).mean() < 0.02
    sidecar = json.loads(open(export_lib.tflite_sidecar_path(files["float32"])).read())
    assert sidecar["input_reduction"] == 2
    assert sidecar["input"]["shape"] == [1, INPUT_SIZE, INPUT_SIZE, 3]
    assert sidecar["output"]["shape"] == [1, SIZE, SIZE, 1]


def test_reduce_input_matches_the_antialiased_resize():
    import tensorflow as tf

    images = np.random.default_rng(0).uniform(0, 255, (2, 40, 24, 3)).astype(np.float32)
    expected = tf.image.resize(images, [20, 12], antialias=True).numpy()
    np.testing.assert_allclose(export_lib.reduce_input(images, 2).numpy(), expected, atol=1e-3)
    assert export_lib.reduce_input(images, 1) is images


def test_input_reduction_one_takes_the_inference_size(model, tmp_path):
    path = export_lib.export_tflite(model, tmp_path / "m.tflite", input_reduction=1,
                                    metadata=False)
    photos = np.concatenate([export_lib.preprocess_photo(p, SIZE) for p in calibration_set(2)])
    expected = model.inference_model()(photos).numpy()
    actual = export_lib.run_tflite(export_lib.load_tflite(path), photos)
    np.testing.assert_allclose(actual, expected, atol=1e-4)
    with pytest.raises(UsageError, match="input_reduction must be one of 1, 2"):
        export_lib.export_tflite(model, tmp_path / "m3.tflite", input_reduction=3)


# Mode -> (mean error / reference std, correlation) bounds. Measured on this
# seeded tiny model: float16 0.0012 / 0.999998, dynamic 0.025 / 0.9995,
# int8 0.53 / 0.76 (its 1/256 output step is large against a 0.05 std).
QUANTISATION_BOUNDS = {"float16": (0.02, 0.999), "dynamic": (0.1, 0.99), "int8": (0.75, 0.6)}


@pytest.mark.parametrize("key", ["float16", "dynamic", "int8"])
def test_quantized_maps_stay_close(files, photo_batch, key):
    reference = export_lib.run_tflite(export_lib.load_tflite(files["float32"]), photo_batch)
    maps = export_lib.run_tflite(export_lib.load_tflite(files[key]), photo_batch)
    # The reference must vary, or a constant map would pass.
    harness.assert_map_spread(reference)
    # Loose: a random tiny model; the benchmark measures the trained one.
    assert np.abs(maps - reference).mean() < 0.1
    harness.assert_quantised_close(maps, reference, *QUANTISATION_BOUNDS[key])


@pytest.mark.parametrize("key", ALL_FILES)
def test_builtin_ops_only(files, key):
    ops = export_lib.tflite_op_names(files[key])
    assert "CONV_2D" in ops
    assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
    assert export_lib.check_builtin_ops(files[key]) == ops


@pytest.mark.parametrize("key", ["float16", "dynamic", "int8"])
def test_quantized_file_is_smaller(files, key):
    assert os.path.getsize(files[key]) < os.path.getsize(files["float32"])


def test_int8_io_types_and_quantization(files):
    for key, dtype in (("int8", np.uint8), ("int8-io-int8", np.int8)):
        interpreter = export_lib.load_tflite(files[key])
        input_details, output_details = export_lib.tflite_io_details(interpreter)
        assert input_details["dtype"] == dtype and output_details["dtype"] == dtype
    # Calibration pins the input range to 0..255: a uint8 input is the pixel.
    sidecar = json.loads(open(export_lib.tflite_sidecar_path(files["int8"])).read())
    assert sidecar["input"]["quantization"] == {"scale": 1.0, "zero_point": 0}
    assert sidecar["output"]["quantization"]["scale"] == pytest.approx(1 / 256)


@pytest.mark.parametrize("key", ALL_FILES)
def test_sidecar(files, key):
    path = files[key]
    sidecar = json.loads(open(export_lib.tflite_sidecar_path(path)).read())
    assert sidecar["model_name"] == "defusionnet"
    assert sidecar["keras_defusion_version"] == keras_defusion.__version__
    assert sidecar["mode"] == key.split("-")[0]
    assert sidecar["input"]["shape"] == [1, INPUT_SIZE, INPUT_SIZE, 3]
    assert sidecar["input"]["name"] == "images" and sidecar["output"]["name"] == "blur_map"
    assert "0..255" in sidecar["input"]["range"]
    assert "1 = blurred" in sidecar["output"]["meaning"]
    assert sidecar["file_bytes"] == os.path.getsize(path)
    if sidecar["input"]["dtype"] == "float32":
        assert sidecar["input"]["quantization"] is None


def test_task_library_metadata(files):
    if not export_lib.tflite_metadata_available():
        pytest.skip("tflite-support not importable: pip install --no-deps tflite-support==0.4.4")
    for key in ("float32", "int8"):
        text = export_lib.read_tflite_metadata_json(files[key])
        assert text is not None, key
        metadata = json.loads(text)
        assert metadata["name"] == "defusionnet"
        assert metadata["version"] == keras_defusion.__version__
        graph = metadata["subgraph_metadata"][0]
        image = graph["input_tensor_metadata"][0]
        assert image["name"] == "images"
        assert image["process_units"][0]["options"] == {"mean": [0.0] * 3, "std": [1.0] * 3}
        output = graph["output_tensor_metadata"][0]
        assert output["name"] == "blur_map"
        assert output["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
        sidecar = json.loads(open(export_lib.tflite_sidecar_path(files[key])).read())
        assert sidecar["tflite_metadata"]["embedded"] is True


def test_flex_ops_are_detected(tmp_path):
    """A file that needs Select-TF ops is reported by name and refused."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def cumprod(x):
        return tf.math.cumprod(x, axis=1)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [cumprod.get_concrete_function()], tf.Module()
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with pytest.raises(Exception):
        converter.convert()
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    flex = converter.convert()
    assert "FlexCumprod" in export_lib.tflite_op_names(flex)
    with pytest.raises(export_lib.ExportError, match="FlexCumprod"):
        export_lib.check_builtin_ops(flex)


def test_no_five_dimensional_tensors(files):
    """LiteRT's GPU accelerator refuses tensors of five dimensions."""
    for key, path in files.items():
        interpreter = export_lib.load_tflite(path)
        ranks = {len(t["shape"]) for t in interpreter.get_tensor_details()}
        assert max(ranks) <= 4, (key, ranks)


@pytest.mark.parametrize("key", ["int8", "int8-io-int8"])
def test_int8_data_movement_ops_keep_their_quantization(files, key):
    names = export_lib.tflite_op_names(files[key])
    assert "CONCATENATION" in names and "REVERSE_V2" not in names
    assert export_lib.requantizing_data_ops(files[key]) == []


def test_requantizing_data_op_is_detected():
    """The check finds what broke int8 before: a flip quantized anew."""
    import tensorflow as tf

    kernel = tf.constant(np.random.default_rng(0).normal(0, 0.1, (3, 3, 3, 4)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
    def flip_then_conv(images):
        flipped = tf.reverse(images, axis=[-1]) * 1.5 - 100.0
        return tf.nn.conv2d(tf.reverse(flipped, axis=[-1]), kernel, 1, "SAME")

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [flip_then_conv.get_concrete_function()], tf.Module())
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(1)
    converter.representative_dataset = lambda: (
        [rng.uniform(0, 255, (1, 16, 16, 3)).astype("float32")] for _ in range(4))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    model_bytes = converter.convert()
    assert "REVERSE_V2" in export_lib.tflite_op_names(model_bytes)
    problems = export_lib.requantizing_data_ops(model_bytes)
    assert problems and {p["op"] for p in problems} == {"REVERSE_V2"}


def test_modes_are_a_closed_set():
    from keras_defusion.cli import export as cli

    assert export_lib.TFLITE_MODES == ("float32", "float16", "dynamic", "int8")
    assert cli.TFLITE_MODES is export_lib.TFLITE_MODES  # imported, not a copy
    assert export_lib.parse_tflite_mode("int8") is export_lib.TFLiteMode.INT8
    with pytest.raises(ValueError, match="float32, float16, dynamic, int8"):
        export_lib.parse_tflite_mode("int4")


def test_int8_needs_calibration(model, tmp_path):
    with pytest.raises(ValueError, match="calibration"):
        export_lib.export_tflite(model, tmp_path / "m.tflite", "int8")
    with pytest.raises(export_lib.ExportError, match="does not exist"):
        export_lib.export_tflite(
            model, tmp_path / "m.tflite", "int8", calibration_images=tmp_path / "none"
        )
    with pytest.raises(ValueError, match="io_dtype"):
        export_lib.export_tflite(model, tmp_path / "m.tflite", "int8", io_dtype="int16")
    assert not os.listdir(tmp_path)


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "model.keras"
    model.save(path)
    return path


@pytest.mark.slow  # a TensorFlow subprocess (9 s); the CLI's errors are tested in-process
def test_cli_end_to_end(model_file, tmp_path):
    out = tmp_path / "out" / "blur.tflite"
    done = subprocess.run(
        [sys.executable, "-m", "export.tflite", "--model", str(model_file),
         "--mode", "dynamic", "--out", str(out), "--size", "96", "--input-reduction", "1"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert str(out) in done.stdout
    interpreter = export_lib.load_tflite(out)
    input_details, _ = export_lib.tflite_io_details(interpreter)
    assert list(input_details["shape"]) == [1, 96, 96, 3]
    sidecar = json.loads(open(export_lib.tflite_sidecar_path(out)).read())
    assert sidecar["mode"] == "dynamic" and sidecar["input"]["shape"] == [1, 96, 96, 3]
    assert sorted(os.listdir(out.parent)) == ["blur.tflite", "blur.tflite.json"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--mode", "int4"], "invalid choice: 'int4'"),
        (["--mode", "int8"], "--mode int8 needs --calibration DIR"),
        (["--mode", "int8", "--calibration", "/nonexistent/photos"], "no such folder"),
        (["--mode", "float32", "--calibration", "."], "only used by --mode int8"),
        (["--mode", "float32", "--size", "8"], "--inference-size must be at least 32"),
        (["--mode", "float32", "--inference-size", "8"], "--inference-size must be at least 32"),
        (["--mode", "float32", "--input-reduction", "3"], "--input-reduction: invalid choice: 3"),
    ],
)
def test_cli_bad_arguments(model_file, tmp_path, capsys, extra, message):
    from export import tflite as cli

    try:  # argparse's own errors exit; the others return the same status
        status = cli.main(["--model", str(model_file), "--out", str(tmp_path / "m.tflite"), *extra])
    except SystemExit as exit_info:
        status = exit_info.code
    assert status == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m.tflite").exists()


def test_cli_bad_model_file(tmp_path, capsys):
    from export import tflite as cli

    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip archive")
    for path, message in (
        (tmp_path / "missing.keras", "no such model file"),
        (broken, "cannot load this .keras file"),
        (tmp_path / "weights.h5", "expected a .keras file"),
    ):
        if path.suffix == ".h5":
            path.write_bytes(b"x")
        status = cli.main(["--model", str(path), "--mode", "float32", "--out", str(tmp_path / "m.tflite")])
        assert status == 2
        assert message in capsys.readouterr().err


def test_cli_unreadable_calibration_photo_is_named_and_skipped(model_file, tmp_path, capsys):
    from export import tflite as cli
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for index, photo in enumerate(calibration_set(2)):
        Image.fromarray(photo).save(photos / f"good{index}.png")
    (photos / "broken.jpg").write_text("not a photo\n")
    out = tmp_path / "m.tflite"
    status = cli.main([
        "--model", str(model_file), "--mode", "int8", "--calibration", str(photos),
        "--out", str(out),
    ])
    err = capsys.readouterr().err
    assert status == 0 and out.exists()  # skipped, as detect skips bad photos
    assert f"warning: {photos / 'broken.jpg'}: not a readable image" in err
    assert "skipped from the calibration photos" in err and "Traceback" not in err


def test_cli_unwritable_out_is_an_error(model_file, tmp_path, capsys):
    from export import tflite as cli

    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where --out needs a folder
    status = cli.main([
        "--model", str(model_file), "--mode", "float32", "--out", str(blocker / "m.tflite"),
    ])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and "Traceback" not in err


def test_unreadable_calibration_photos_are_skipped(tmp_path):
    from PIL import Image

    from keras_defusion.errors import DataWarning

    folder = tmp_path / "calibration"
    folder.mkdir()
    for index, photo in enumerate(calibration_set(3)):
        Image.fromarray(photo).save(folder / f"p{index}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a photo")
    with pytest.warns(DataWarning, match="broken.jpg"):
        batches = export_lib.calibration_photos(folder, 32)
    assert len(batches) == 3 and batches[0].shape == (1, 32, 32, 3)
    for path in folder.glob("p*.png"):
        path.unlink()
    with pytest.raises(export_lib.ExportError, match="no usable calibration photo: .*broken.jpg"), \
            pytest.warns(DataWarning):
        export_lib.calibration_photos(folder, 32)


def test_uint16_array_of_8_bit_values_warns():
    from keras_defusion.errors import DataWarning
    from keras_defusion.inference import detector as detector_lib

    with pytest.warns(DataWarning, match="uint16 array whose values are all 0..255"):
        detector_lib.to_rgb(np.full((8, 8, 3), 200, np.uint16))
