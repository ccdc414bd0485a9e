"""Shared checks for layers and models, so each module's test stays short.

Modelled on keras-hub's `TestCase`: one place checks output shapes, a `fit`
step, the config round-trip and `.keras` save/load.
"""

import os

import keras
import numpy as np

from keras_defusion.training.build import build_training_state


def tiny_model_kwargs(**overrides):
    """Model arguments for fast tests: a narrow encoder and a thin head."""
    kwargs = dict(
        backbone_weights=None,
        encoder_width=0.0625,
        side_channels=4,
        fusion_channels=4,
    )
    kwargs.update(overrides)
    return kwargs


# The tiny model as training flags (`--model-set`), for tests that train
# through the command line.
TINY_MODEL_FLAGS = ["--model-set=encoder_width=0.0625", "--model-set=side_channels=4",
                    "--model-set=fusion_channels=4", "--model-set=num_steps=1"]


def random_images(batch, height, width, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (batch, height, width, 3)).astype("float32")


def assert_config_round_trip(obj):
    """`from_config(get_config())` gives an equal config."""
    config = obj.get_config()
    clone = obj.__class__.from_config(config)
    assert clone.get_config() == config


def assert_layer_serializes(layer, inputs):
    """Config round-trip of a built layer, with equal outputs once weights copy."""
    outputs = layer(inputs)
    clone = layer.__class__.from_config(layer.get_config())
    clone(inputs)
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == layer.get_config()
    for a, b in zip(keras.tree.flatten(outputs), keras.tree.flatten(clone(inputs))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def assert_saved_model_identical(model, inputs, tmp_dir):
    """Saves to `.keras`, reloads without `custom_objects`, compares outputs."""
    path = os.path.join(tmp_dir, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    expected = model(inputs)
    actual = restored(inputs)
    keras.tree.assert_same_structure(expected, actual)
    for a, b in zip(keras.tree.flatten(expected), keras.tree.flatten(actual)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    return restored


def assert_fit_step(model, inputs, targets, loss="binary_crossentropy"):
    """One compiled `fit` step runs and gives a finite loss."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    build_training_state(model, (inputs, targets))  # one trace of the step, not two
    history = model.fit(inputs, targets, epochs=1, batch_size=len(inputs), verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    return history


# A tiny seeded model on structured photos gives maps with a std of about
# 0.05 (measured: 0.048 to 0.065); a constant or nearly flat map is below this.
MIN_MAP_SPREAD = 0.02


def assert_map_spread(maps, minimum=MIN_MAP_SPREAD):
    """Each map ([H, W], or a batch [N, H, W(, 1)]) varies by more than `minimum` (std).

    A precondition for parity tests: two constant outputs would agree.
    """
    maps = np.asarray(maps, dtype=np.float64)
    assert np.isfinite(maps).all()
    batch = maps[None] if maps.ndim == 2 else maps
    for index, one in enumerate(batch):
        assert one.std() > minimum, (index, float(one.std()))


def assert_quantised_close(maps, reference, max_error_ratio, min_correlation):
    """`maps` follow `reference` (a float map with spread) up to quantisation.

    The mean absolute error is bounded relative to the reference's std (a
    constant map at the reference's mean is off by about 0.8 std), and the
    maps must correlate with the reference.
    """
    maps = np.asarray(maps, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    assert maps.shape == reference.shape
    assert_map_spread(reference)
    error = np.abs(maps - reference).mean()
    spread = reference.std()
    assert error < max_error_ratio * spread, (float(error), float(spread))
    correlation = np.corrcoef(maps.ravel(), reference.ravel())[0, 1]
    assert correlation > min_correlation, float(correlation)


def write_png_header(path, width, height):
    """A PNG that declares width x height pixels but holds none."""
    import struct
    import zlib

    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def calibration_set(count=6):
    """Smooth random RGB photos (uint8) of mixed sizes."""
    rng = np.random.default_rng(5)
    photos = []
    for index in range(count):
        h, w = 60 + 7 * index, 90 - 5 * index
        coarse = rng.uniform(0, 255, (h // 8 + 2, w // 8 + 2, 3))
        photo = np.kron(coarse, np.ones((8, 8, 1)))[:h, :w]
        photos.append(photo.astype(np.uint8))
    return photos


def tiny_model(preset="mobile", seed=0, **overrides):
    """A seeded tiny `DeFusionNet` (one recurrent step unless overridden)."""
    import keras_defusion

    keras_defusion.set_seed(seed)
    return keras_defusion.DeFusionNet(preset, **tiny_model_kwargs(**{"num_steps": 1, **overrides}))
