"""SavedModel export for TF Serving: layout, both signatures, parity, errors."""

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image
from PIL import ImageOps

from keras_defusion import export as export_lib
import keras_defusion
from tests import harness
from tests.conftest import REPO_ROOT

SIZE = 64
# Two batch sizes, odd heights and widths (not multiples of 32).
BATCHES = {"batch1": (1, 45, 67), "batch3": (3, 33, 50)}
PHOTO_SHAPES = [(50, 70), (90, 41), (37, 37)]


def encode(array, image_format):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=image_format)
    return buffer.getvalue()


def photos():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in PHOTO_SHAPES]


def exif6_jpeg(big_endian=False):
    """A 50 x 70 JPEG stored on its side, EXIF orientation 6 (turn 90 clockwise)."""
    stored = np.ascontiguousarray(np.rot90(photos()[0], 1))  # 70 x 50 as stored
    order = b"MM\0*\0\0\0\x08" if big_endian else b"II*\0\x08\0\0\0"
    if big_endian:  # one IFD0 entry: tag 0x0112, SHORT, count 1, value 6
        entry = b"\0\x01" + b"\x01\x12\0\x03\0\0\0\x01\0\x06\0\0" + b"\0\0\0\0"
    else:
        entry = b"\x01\0" + b"\x12\x01\x03\0\x01\0\0\0\x06\0\0\0" + b"\0\0\0\0"
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="JPEG", quality=95,
                                 exif=b"Exif\0\0" + order + entry)
    return buffer.getvalue()


def encoded_photos():
    return [encode(photo, fmt) for photo, fmt in zip(photos(), ("PNG", "JPEG", "PNG"))]


# Loads the export in a fresh Python, calls both signatures and stores the
# outputs (or the error message) as files.
FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import tensorflow as tf

    export_dir, work = sys.argv[1], sys.argv[2]
    loaded = tf.saved_model.load(export_dir)
    serve = loaded.signatures["serving_default"]
    encoded_fn = loaded.signatures["detect_encoded"]
    inputs = np.load(os.path.join(work, "inputs.npz"))
    for key in inputs.files:
        out = serve(images=tf.constant(inputs[key]))["blur_map"].numpy()
        np.save(os.path.join(work, key + "_out.npy"), out)
    with open(os.path.join(work, "encoded.json")) as f:
        blobs = [bytes.fromhex(h) for h in json.load(f)]
    result = encoded_fn(encoded=tf.constant(blobs))
    for key, value in result.items():
        np.save(os.path.join(work, "encoded_" + key + ".npy"), value.numpy())
    # The second batch size of detect_encoded: one image.
    for key, value in encoded_fn(encoded=tf.constant(blobs[:1])).items():
        np.save(os.path.join(work, "encoded1_" + key + ".npy"), value.numpy())
    with open(os.path.join(work, "extra.json")) as f:
        extra = {key: bytes.fromhex(h) for key, h in json.load(f).items()}
    for key, value in encoded_fn(encoded=tf.constant([extra["exif6"]])).items():
        np.save(os.path.join(work, "exif6_" + key + ".npy"), value.numpy())
    errors = {}
    for name, bad in [("garbage", blobs[:1] + [b"not an image"]), ("empty", [b""]),
                      ("truncated", [blobs[0][:60]]), ("no_image", []),
                      ("cut_jpeg", blobs[:1] + [blobs[1][:-300]]),
                      ("cut_exif_jpeg", [extra["exif6"][:-2]]),
                      ("huge", blobs[:1] + [extra["huge"]])]:
        try:
            encoded_fn(encoded=tf.constant(bad, dtype=tf.string))
            errors[name] = None
        except tf.errors.InvalidArgumentError as error:
            errors[name] = error.message
    with open(os.path.join(work, "errors.json"), "w") as f:
        json.dump(errors, f)
    """
)


@pytest.fixture(scope="module")
def model():
    return harness.tiny_model(inference_size=SIZE)


@pytest.fixture(scope="module")
def export_dir(model, tmp_path_factory):
    base = tmp_path_factory.mktemp("serving")
    return export_lib.export_saved_model(model, base, name="blur", version=7)


@pytest.fixture(scope="module")
def fresh_outputs(export_dir, tmp_path_factory):
    """Outputs of both signatures computed by a separate Python process."""
    work = tmp_path_factory.mktemp("fresh")
    inputs = {
        key: harness.random_images(*shape, seed=index)
        for index, (key, shape) in enumerate(BATCHES.items())
    }
    np.savez(work / "inputs.npz", **inputs)
    (work / "encoded.json").write_text(json.dumps([b.hex() for b in encoded_photos()]))
    harness.write_png_header(work / "huge.png", 12000, 12000)
    (work / "extra.json").write_text(json.dumps({
        "huge": (work / "huge.png").read_bytes().hex(), "exif6": exif6_jpeg().hex()}))
    script = work / "run_export.py"
    script.write_text(FRESH_PROCESS_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, str(script), export_dir, str(work)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return work, inputs


def test_layout_is_tf_serving(export_dir):
    assert export_dir.endswith(os.path.join("blur", "7"))
    assert os.path.isfile(os.path.join(export_dir, "saved_model.pb"))
    assert os.path.isdir(os.path.join(export_dir, "variables"))
    siblings = os.listdir(os.path.dirname(export_dir))
    assert siblings == ["7"], "no temporary folder may be left beside the version"
    metadata = export_lib.load_saved_model_metadata(export_dir)
    assert metadata["inference_size"] == SIZE
    assert "inference_size" not in metadata["config"]  # not architecture
    assert metadata["keras_defusion_version"] == keras_defusion.__version__
    assert set(metadata["signatures"]) == {"serving_default", "detect_encoded"}


def test_variables_stored_once(model, export_dir):
    weights = sum(int(np.prod(w.shape)) * 4 for w in model.inference_model().weights)
    folder = os.path.join(export_dir, "variables")
    stored = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))
    # The index and the object graph add a little; a second copy would be 2x.
    assert weights <= stored < 1.3 * weights, (stored, weights)


@pytest.mark.parametrize("key", sorted(BATCHES))
def test_fresh_process_matches_keras(model, fresh_outputs, key):
    work, inputs = fresh_outputs
    expected = model.inference_model()(inputs[key]).numpy()
    harness.assert_map_spread(expected)  # a constant map could not pass
    actual = np.load(work / f"{key}_out.npy")
    assert actual.shape == inputs[key].shape[:3] + (1,)
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_encoded_maps_at_original_sizes(model, fresh_outputs):
    import tensorflow as tf

    work, _ = fresh_outputs
    blur_map = np.load(work / "encoded_blur_map.npy")
    heights = np.load(work / "encoded_height.npy")
    widths = np.load(work / "encoded_width.npy")
    assert heights.dtype == np.int32 and widths.dtype == np.int32
    assert list(zip(heights, widths)) == PHOTO_SHAPES
    max_h, max_w = max(h for h, _ in PHOTO_SHAPES), max(w for _, w in PHOTO_SHAPES)
    assert blur_map.shape == (len(PHOTO_SHAPES), max_h, max_w, 1)
    inference = model.inference_model()
    for index, blob in enumerate(encoded_photos()):
        h, w = PHOTO_SHAPES[index]
        decoded = tf.io.decode_image(blob, channels=3, expand_animations=False).numpy()
        small = export_lib.preprocess_photo(decoded, SIZE)
        expected = export_lib.resize_maps(inference(small), h, w).numpy()[0]
        np.testing.assert_allclose(blur_map[index, :h, :w], expected, atol=1e-5)
        assert not blur_map[index, h:].any() and not blur_map[index, :, w:].any()
        assert 0.0 <= blur_map[index, :h, :w].min() and blur_map[index, :h, :w].max() <= 1.0


def test_encoded_batch_of_one(model, fresh_outputs):
    """detect_encoded at batch 1: no padding, the same map as in the batch of 3."""
    import tensorflow as tf

    work, _ = fresh_outputs
    h, w = PHOTO_SHAPES[0]
    heights = np.load(work / "encoded1_height.npy")
    widths = np.load(work / "encoded1_width.npy")
    assert list(zip(heights, widths)) == [(h, w)]
    single = np.load(work / "encoded1_blur_map.npy")
    assert single.shape == (1, h, w, 1)
    decoded = tf.io.decode_image(encoded_photos()[0], channels=3, expand_animations=False)
    small = export_lib.preprocess_photo(decoded.numpy(), SIZE)
    expected = export_lib.resize_maps(model.inference_model()(small), h, w).numpy()[0]
    harness.assert_map_spread(expected)
    np.testing.assert_allclose(single[0], expected, atol=1e-5)
    batch = np.load(work / "encoded_blur_map.npy")
    np.testing.assert_allclose(single[0], batch[0, :h, :w], atol=1e-5)


def test_malformed_bytes_fail_with_a_clear_message(fresh_outputs):
    work, _ = fresh_outputs
    errors = json.loads((work / "errors.json").read_text())
    assert "detect_encoded: encoded[1] (12 bytes) is not a JPEG/PNG/GIF/BMP/WebP file" in errors["garbage"]
    assert "encoded[0] (0 bytes)" in errors["empty"]
    assert "detect_encoded: encoded is empty; send at least one image" in errors["no_image"]
    # Truncated files are named before the decoder sees them.
    assert "detect_encoded: encoded[0] (60 bytes) is cut short" in errors["truncated"]
    assert "detect_encoded: encoded[1]" in errors["cut_jpeg"]
    assert "is cut short" in errors["cut_jpeg"]
    assert "detect_encoded: encoded[0]" in errors["cut_exif_jpeg"]
    assert "is cut short" in errors["cut_exif_jpeg"]


@pytest.mark.parametrize("file_format", ["JPEG", "PNG", "BMP", "WEBP"])
def test_cut_short_files_are_told_from_whole_ones(file_format):
    from keras_defusion.export.encoded import is_cut_short

    whole = encode(photos()[1], file_format)
    assert not bool(is_cut_short(whole))
    # Bytes after the end (a phone's motion photo appends a video) are fine.
    assert not bool(is_cut_short(whole + b"\0trailing video" * 50))
    for cut in (len(whole) - 1, len(whole) // 2, 30):
        assert bool(is_cut_short(whole[:cut])), cut


def test_huge_image_refused_from_its_header(fresh_outputs):
    work, _ = fresh_outputs
    message = json.loads((work / "errors.json").read_text())["huge"]
    assert ("detect_encoded: encoded[1] is 12000 x 12000 = 144000000 pixels, over the "
            f"limit of {export_lib.DEFAULT_MAX_PIXELS} set at export") in message


def test_exif_orientation_applied_as_detect_does(model, fresh_outputs):
    """An orientation-6 JPEG: the map of the upright photo, at its upright size."""
    import tensorflow as tf

    work, _ = fresh_outputs
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(exif6_jpeg())))
    heights, widths = np.load(work / "exif6_height.npy"), np.load(work / "exif6_width.npy")
    assert (heights[0], widths[0]) == (upright.height, upright.width) == PHOTO_SHAPES[0]
    stored = tf.io.decode_image(exif6_jpeg(), channels=3, expand_animations=False).numpy()
    turned = np.rot90(stored, -1)  # what PIL does for orientation 6
    small = export_lib.preprocess_photo(turned, SIZE)
    expected = export_lib.resize_maps(model.inference_model()(small), *PHOTO_SHAPES[0]).numpy()
    harness.assert_map_spread(expected)
    np.testing.assert_allclose(np.load(work / "exif6_blur_map.npy"), expected, atol=1e-5)


@pytest.mark.parametrize("big_endian", [False, True])
def test_exif_orientation_read_in_both_byte_orders(big_endian):
    from keras_defusion.export import encoded

    data = exif6_jpeg(big_endian)
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size == (70, 50)
    assert int(encoded.exif_orientation(data)) == 6
    assert int(encoded.exif_orientation(encode(photos()[0], "JPEG"))) == 1
    assert [int(v) for v in encoded.header_size(data)] == [70, 50]  # as stored


@pytest.mark.parametrize("image_format,options", [
    ("JPEG", {}), ("PNG", {}), ("GIF", {}), ("BMP", {}), ("WEBP", {"lossless": False}),
    ("WEBP", {"lossless": True}), ("WEBP", {"exif": b"Exif\0\0II*\0\x08\0\0\0\0\0"}),
])
def test_header_size_of_every_format(image_format, options):
    from keras_defusion.export import encoded

    buffer = io.BytesIO()
    Image.fromarray(photos()[1]).save(buffer, format=image_format, **options)
    assert [int(v) for v in encoded.header_size(buffer.getvalue())] == list(PHOTO_SHAPES[1])


@pytest.mark.slow  # a TensorFlow subprocess (8 s); keeps the default suite under 5 minutes
def test_saved_model_cli_shows_both_signatures(export_dir):
    # Run as a module of the installed TensorFlow, so it never depends on PATH.
    cli = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    done = subprocess.run(
        [*cli, "show", "--dir", export_dir, "--all"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for text in (
        "signature_def['serving_default']",
        "signature_def['detect_encoded']",
        "inputs['images'] tensor_info",
        "shape: (-1, -1, -1, 3)",
        "inputs['encoded'] tensor_info",
        "outputs['blur_map'] tensor_info",
        "outputs['height'] tensor_info",
    ):
        assert text in done.stdout


def test_predict_requests_for_both_signatures(export_dir):
    """A TF Serving gRPC PredictRequest per signature, decoded and run."""
    predict_pb2 = pytest.importorskip(
        "tensorflow_serving.apis.predict_pb2",
        reason="pip install --no-deps tensorflow-serving-api",
    )
    import tensorflow as tf

    images = harness.random_images(2, 40, 56, seed=3)
    blobs = encoded_photos()[:2]
    requests = []
    for signature, key, value in (
        ("serving_default", "images", tf.make_tensor_proto(images)),
        ("detect_encoded", "encoded", tf.make_tensor_proto(blobs, dtype=tf.string)),
    ):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "blur"
        request.model_spec.signature_name = signature
        request.inputs[key].CopyFrom(value)
        requests.append(predict_pb2.PredictRequest.FromString(request.SerializeToString()))

    loaded = tf.saved_model.load(export_dir)
    direct = {
        "serving_default": loaded.signatures["serving_default"](images=tf.constant(images)),
        "detect_encoded": loaded.signatures["detect_encoded"](
            encoded=tf.constant(blobs, dtype=tf.string)
        ),
    }
    assert direct["serving_default"]["blur_map"].shape == (2, 40, 56, 1)
    assert set(direct["detect_encoded"]) == {"blur_map", "height", "width"}
    for request in requests:
        name = request.model_spec.signature_name
        function = loaded.signatures[name]
        arguments = {
            key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()
        }
        assert set(arguments) == set(function.structured_input_signature[1])
        outputs = function(**arguments)
        assert "blur_map" in outputs
        assert set(outputs) == set(direct[name])
        harness.assert_map_spread(direct[name]["blur_map"].numpy()[:, :37, :37])
        for key, value in outputs.items():
            # The same graph on the same inputs: identical outputs.
            np.testing.assert_array_equal(value.numpy(), direct[name][key].numpy(), err_msg=key)


def test_existing_version_is_not_overwritten(model, export_dir):
    base = os.path.dirname(os.path.dirname(export_dir))
    with pytest.raises(FileExistsError, match="already exists"):
        export_lib.export_saved_model(model, base, name="blur", version=7)


@pytest.mark.parametrize("name,version", [("a/b", 1), ("", 1), ("m", 0), ("m", "1")])
def test_bad_name_or_version(name, version, tmp_path):
    with pytest.raises(ValueError):
        export_lib.saved_model_dir(tmp_path, name, version)


def test_rejects_a_plain_keras_model(tmp_path):
    import keras

    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(1, 1)])
    with pytest.raises(TypeError, match="DeFusionNet"):
        export_lib.export_saved_model(plain, tmp_path)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "export.saved_model", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=300,
    )


def test_cli_missing_model_file(tmp_path):
    from export import saved_model as cli

    missing = tmp_path / "nope.keras"
    assert cli.main(["--model", str(missing), "--out", str(tmp_path / "out")]) == 2


def test_cli_missing_model_message(tmp_path, capsys):
    from export import saved_model as cli

    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a zip archive")
    for path, message in ((tmp_path / "nope.keras", "no such model file"),
                          (bad, "cannot load this .keras file"),
                          (tmp_path, "is a folder")):
        assert cli.main(["--model", str(path), "--out", str(tmp_path / "out")]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_cli_end_to_end(model, tmp_path):
    model_path = tmp_path / "model.keras"
    model.save(model_path)
    done = run_cli("--model", str(model_path), "--out", str(tmp_path / "serving"), "--version", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    export_dir = tmp_path / "serving" / "defusionnet" / "2"
    assert (export_dir / "saved_model.pb").is_file()
    again = run_cli("--model", str(model_path), "--out", str(tmp_path / "serving"), "--version", "2")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_cli_unwritable_out_is_an_error(model, tmp_path, capsys):
    from export import saved_model as cli

    model_path = tmp_path / "model.keras"
    model.save(model_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")  # a file where --out needs a folder
    status = cli.main(["--model", str(model_path), "--out", str(blocker / "serving")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and "Traceback" not in err
    assert str(blocker) in err


def test_shipped_model_loads_by_name_for_export():
    from keras_defusion.models import pretrained

    if not pretrained.available_models():
        pytest.skip("no shipped model in this checkout")
    model = export_lib.load_model_file(pretrained.DEFAULT_MODEL)
    assert model.get_config() == pretrained.load_pretrained().get_config()


def test_max_pixels_is_configurable_and_recorded(model, tmp_path):
    import tensorflow as tf

    path = export_lib.export_saved_model(model, tmp_path, max_pixels=3000)
    metadata = export_lib.load_saved_model_metadata(path)
    assert metadata["signatures"]["detect_encoded"]["max_pixels"] == 3000
    detect_encoded = tf.saved_model.load(path).signatures["detect_encoded"]
    small, large = encoded_photos()[2], encoded_photos()[0]  # 37 x 37, 50 x 70
    assert detect_encoded(encoded=tf.constant([small]))["height"].numpy().tolist() == [37]
    with pytest.raises(tf.errors.InvalidArgumentError, match="50 x 70 = 3500 pixels"):
        detect_encoded(encoded=tf.constant([large]))
    with pytest.raises(ValueError, match="max_pixels must be a positive whole number"):
        export_lib.export_saved_model(model, tmp_path / "x", max_pixels=0)


def test_serving_default_refuses_bad_images_with_a_message(export_dir):
    import tensorflow as tf

    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    images = harness.random_images(1, 40, 48)
    harness.assert_map_spread(serve(images=tf.constant(images))["blur_map"].numpy())
    images[0, 3, 4, 1] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="hold NaN or infinite values"):
        serve(images=tf.constant(images))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="images are 20 x 48; send images of at least 32 x 32"):
        serve(images=tf.constant(harness.random_images(1, 20, 48)))


def test_warmup_file_holds_requests_the_signatures_accept(export_dir):
    """TF Serving's warm-up records, parsed with TF Serving's own protos and
    run the way the server runs them at load."""
    prediction_log_pb2 = pytest.importorskip(
        "tensorflow_serving.apis.prediction_log_pb2",
        reason="pip install --no-deps tensorflow-serving-api",
    )
    import tensorflow as tf

    path = os.path.join(export_dir, "assets.extra", "tf_serving_warmup_requests")
    records = [prediction_log_pb2.PredictionLog.FromString(record.numpy())
               for record in tf.data.TFRecordDataset(path)]
    signatures = tf.saved_model.load(export_dir).signatures
    seen = []
    for log in records:
        request = log.predict_log.request
        assert request.model_spec.name == "blur"  # the export's name
        name = request.model_spec.signature_name
        inputs = {key: tf.make_ndarray(value) for key, value in request.inputs.items()}
        outputs = signatures[name](**{key: tf.constant(v) for key, v in inputs.items()})
        batch = next(iter(inputs.values())).shape[0]
        assert outputs["blur_map"].shape[0] == batch
        seen.append((name, batch))
    assert sorted(seen) == [("detect_encoded", 1), ("detect_encoded", 4),
                            ("serving_default", 1), ("serving_default", 4)]


# --- The REST contract, read as TF Serving's json_tensor.cc reads it ---------------


def _rest_inputs(body, signature):
    """A REST predict body in row format ("instances") as the signature's
    input tensors: instances stacked on a new batch axis; an instance is the
    one input's value or an object of input values; {"b64": ...} is bytes."""
    import base64

    import tensorflow as tf

    _, specs = signature.structured_input_signature
    names = sorted(specs)

    def value(item):
        if isinstance(item, dict) and set(item) == {"b64"}:
            return base64.b64decode(item["b64"])
        return item

    columns = {name: [] for name in names}
    for instance in body["instances"]:
        if isinstance(instance, dict) and set(instance) <= set(names) and "b64" not in instance:
            for name in names:
                columns[name].append(value(instance[name]))
        else:
            assert len(names) == 1, "a bare instance needs a one-input signature"
            columns[names[0]].append(value(instance))
    return {name: tf.constant(np.array(rows) if specs[name].dtype != tf.string else rows,
                              dtype=specs[name].dtype) for name, rows in columns.items()}


def _rest_predictions(outputs):
    """Row-format "predictions": every output needs the same batch size."""
    sizes = {name: int(tensor.shape[0]) for name, tensor in outputs.items()}
    assert len(set(sizes.values())) == 1, f"outputs of unequal batch sizes: {sizes}"
    (batch,) = set(sizes.values())
    return [{name: tensor[i].numpy().tolist() for name, tensor in outputs.items()}
            for i in range(batch)]


def _readme_rest_bodies():
    """The README's two REST bodies, each elided base64 string ("/9j/...")
    replaced by a real file whose base64 starts that way (a JPEG, a PNG)."""
    import base64
    import re

    text = (REPO_ROOT / "README.md").read_text()
    encodings = [base64.b64encode(encode(photos()[1], "JPEG")).decode(),
                 base64.b64encode(encode(photos()[0], "PNG")).decode()]

    def complete(match):
        prefix = match.group(1)
        (full,) = [e for e in encodings if e.startswith(prefix)]  # one file fits
        return f'"{full}"'

    bodies = {}
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        if '"instances"' in block:
            body = json.loads(re.sub(r'"([A-Za-z0-9+/]+)\.\.\."', complete, block))
            bodies[body["signature_name"]] = body
    return bodies


def test_readme_rest_bodies_run_as_tf_serving_reads_them(export_dir):
    import tensorflow as tf

    bodies = _readme_rest_bodies()
    assert sorted(bodies) == ["detect_encoded", "serving_default"]
    signatures = tf.saved_model.load(export_dir).signatures
    pixels = np.array(bodies["serving_default"]["instances"], np.float32)
    assert pixels.shape == (1, 2, 2, 3)
    bodies["serving_default"]["instances"] = np.tile(pixels, (1, 16, 16, 1)).tolist()
    for name, body in bodies.items():
        inputs = _rest_inputs(body, signatures[name])
        predictions = _rest_predictions(signatures[name](**inputs))
        assert len(predictions) == len(body["instances"])
        assert set(predictions[0]) == ({"blur_map"} if name == "serving_default"
                                       else {"blur_map", "height", "width"})
    heights = [p["height"] for p in predictions]
    assert heights == [PHOTO_SHAPES[1][0], PHOTO_SHAPES[0][0]]  # the JPEG, then the PNG


@pytest.mark.slow
def test_saved_model_cli_runs_both_signatures(export_dir, tmp_path):
    """`saved_model_cli run`: the graph-only load path the server takes,
    with a .npy of image bytes for detect_encoded."""
    np.save(tmp_path / "images.npy", harness.random_images(2, 40, 36))
    np.save(tmp_path / "encoded.npy", np.array(encoded_photos(), dtype="S"))
    cli = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "run",
           "--dir", export_dir, "--tag_set", "serve"]
    for signature, inputs, expected in (
            ("serving_default", f"images={tmp_path / 'images.npy'}", (2, 40, 36, 1)),
            ("detect_encoded", f"encoded={tmp_path / 'encoded.npy'}", (3, 90, 70, 1))):
        out = tmp_path / signature
        done = subprocess.run(
            [*cli, "--signature_def", signature, "--inputs", inputs, "--outdir", str(out)],
            capture_output=True, text=True, timeout=300,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert done.returncode == 0, done.stderr[-2000:]
        blur_map = np.load(out / "blur_map.npy")
        assert blur_map.shape == expected
        harness.assert_map_spread(blur_map[0, :30, :30])
