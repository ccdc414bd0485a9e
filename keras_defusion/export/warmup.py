"""TF Serving's warm-up file: requests it runs before a version takes traffic.

TF Serving reads `assets.extra/tf_serving_warmup_requests` (a TFRecord of
`tensorflow.serving.PredictionLog`) when it loads a version and runs each
request once, so the first real request does not pay for building the
graph. The records are written here without the `tensorflow-serving-api`
package: a `PredictionLog` holding a `PredictRequest` is a few nested
length-delimited protobuf fields around TensorFlow's own `TensorProto`
(field numbers from `tensorflow_serving/apis/{prediction_log,predict,model}.proto`).
"""

import io
import os

import numpy as np

WARMUP_FOLDER = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
# One request per signature and batch size callers commonly send.
WARMUP_BATCH_SIZES = (1, 4)


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, payload):
    """A length-delimited protobuf field (wire type 2)."""
    if isinstance(payload, str):
        payload = payload.encode()
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def predict_request(model_name, signature_name, inputs):
    """A serialized `PredictRequest`: model_spec (name 1, signature_name 3),
    inputs (map<string, TensorProto> 2)."""
    import tensorflow as tf

    spec = _field(1, model_name) + _field(3, signature_name)
    request = _field(1, spec)
    for key, value in inputs.items():
        tensor = tf.make_tensor_proto(value).SerializeToString()
        request += _field(2, _field(1, key) + _field(2, tensor))
    return request


def prediction_log(request):
    """A serialized `PredictionLog` whose predict_log (6) holds `request` (1)."""
    return _field(6, _field(1, request))


def _sample_png(height=48, width=64):
    from PIL import Image

    rows = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    grey = ((rows + cols) / 2).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.stack([grey, grey[::-1], 255 - grey], axis=-1)).save(buffer, "PNG")
    return buffer.getvalue()


def warmup_requests(model_name, serving_signature, images_input, image_size,
                    encoded_signature=None, encoded_input=None):
    """The serialized `PredictionLog` records: each signature at each of
    `WARMUP_BATCH_SIZES`, images at `image_size` (the inference size)."""
    records = []
    for batch in WARMUP_BATCH_SIZES:
        images = np.full((batch, image_size, image_size, 3), 128.0, np.float32)
        records.append(prediction_log(
            predict_request(model_name, serving_signature, {images_input: images})))
        if encoded_signature:
            blobs = np.array([_sample_png()] * batch, dtype=object)
            records.append(prediction_log(
                predict_request(model_name, encoded_signature, {encoded_input: blobs})))
    return records


def write_warmup_file(export_dir, records):
    """Writes the records to `<export_dir>/assets.extra/tf_serving_warmup_requests`."""
    import tensorflow as tf

    folder = os.path.join(os.fspath(export_dir), WARMUP_FOLDER)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path
