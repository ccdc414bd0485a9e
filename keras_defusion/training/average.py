"""Uniform weight averaging of models fine-tuned from one start (a "model soup").

Models fine-tuned from the same weights with different recipes often average
into one model that ranks pixels better than each (Wortsman et al., 2022,
"Model soups"); models trained from different random starts do not. The
average costs nothing at inference: it is the same network.
"""

import os

import numpy as np

from keras_defusion.io.files import atomic_write, write_json
from keras_defusion.models.defusionnet.model import DeFusionNet, network_config
from keras_defusion.models.loading import load_model_file
from keras_defusion.training.run_folder import float32_copy


def average_sidecar_path(out_path):
    """The JSON sidecar naming an average's sources: `<out_path>.json` (packaging
    ships it as the model's `average.json`)."""
    return os.fspath(out_path) + ".json"


def average_weights(sources, out_path):
    """Writes a `.keras` model whose weights are the mean of the sources' weights.

    Every variable is averaged, batch-norm moving statistics included. The
    result is float32, has no optimizer state, and keeps the first source's
    inference size. A sidecar `<out_path>.json` lists the sources as given.

    Args:
        sources: two or more `.keras` files (or shipped model names) of one
            network, e.g. fine-tunes of one model.
        out_path: the `.keras` file to write; written under a temporary name
            and renamed, so a failure leaves no partial file.

    Returns:
        The averaged `DeFusionNet`.

    Raises:
        ValueError: fewer than two sources, an `out_path` that is not a
            `.keras` file, or sources of different networks (named).
        keras_defusion.errors.ModelLoadError: a source does not load (named).
    """
    sources = [os.fspath(source) for source in sources]
    out_path = os.fspath(out_path)
    if len(sources) < 2:
        raise ValueError(f"averaging needs two or more models, got {len(sources)}")
    if not out_path.endswith(".keras"):
        raise ValueError(f"{out_path}: the averaged model is written as a .keras file; "
                         "end the name with .keras")
    models = [load_model_file(source) for source in sources]
    for source, model in zip(sources, models):
        if not isinstance(model, DeFusionNet):
            raise ValueError(f"{source}: a {type(model).__name__} does not average; "
                             "average DeFusionNets, then ensemble the average")
    models = [float32_copy(model) for model in models]
    reference = network_config(models[0].get_config())
    for source, model in zip(sources[1:], models[1:]):
        network = network_config(model.get_config())
        if network != reference:
            differ = sorted(key for key in set(reference) | set(network)
                            if reference.get(key) != network.get(key))
            raise ValueError(f"{source} is another network than {sources[0]} "
                             f"(config differs in {', '.join(differ)}): only models of one "
                             "network, fine-tuned from one start, average into a model")
    weights = [model.get_weights() for model in models]
    mean = [np.mean([np.asarray(w[index], np.float64) for w in weights], axis=0)
            for index in range(len(weights[0]))]
    averaged = DeFusionNet.from_config(models[0].get_config())
    averaged.set_weights([m.astype(w.dtype) for m, w in zip(mean, weights[0])])
    atomic_write(out_path, averaged.save)
    write_json(average_sidecar_path(out_path), {
        "averaged": "uniform mean of every variable (weights and batch-norm statistics)",
        "sources": sources,
    })
    return averaged
