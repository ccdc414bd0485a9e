"""Writing an output ensemble of trained DeFusionNets as one `.keras` model."""

import os

from keras_defusion.io.files import atomic_write, write_json
from keras_defusion.models.ensemble import DeFusionEnsemble
from keras_defusion.models.loading import load_model_file
from keras_defusion.training.average import average_sidecar_path
from keras_defusion.training.run_folder import float32_copy


def ensemble_models(sources, out_path, member_weights=None, inference_size=None):
    """Writes a `.keras` `DeFusionEnsemble` of the source models.

    A sidecar `<out_path>.json` lists the sources and their weights as given
    (packaging ships it as the model's `ensemble.json`).

    Args:
        sources: two or more `.keras` files or shipped model names, each a
            `DeFusionNet` (a weight average is one).
        out_path: the `.keras` file to write; written under a temporary name
            and renamed, so a failure leaves no partial file.
        member_weights: one positive weight per source (default: equal).
        inference_size: the size detect runs it at (default: the first
            source's); choose it on validation data.

    Returns:
        The `DeFusionEnsemble`.

    Raises:
        ValueError: fewer than two sources, bad weights, an `out_path` that is
            not a `.keras` file, or a source that is not a DeFusionNet (named).
        keras_defusion.errors.ModelLoadError: a source does not load (named).
    """
    sources = [os.fspath(source) for source in sources]
    out_path = os.fspath(out_path)
    if not out_path.endswith(".keras"):
        raise ValueError(f"{out_path}: the ensemble is written as a .keras file; "
                         "end the name with .keras")
    models = [load_model_file(source) for source in sources]
    for source, model in zip(sources, models):
        if isinstance(model, DeFusionEnsemble):
            raise ValueError(f"{source} is an ensemble already; list its members instead")
    ensemble = DeFusionEnsemble.from_members([float32_copy(model) for model in models],
                                             member_weights, inference_size)
    atomic_write(out_path, ensemble.save)
    write_json(average_sidecar_path(out_path), {
        "ensemble": "sigmoid of the weighted mean of the members' fused logits",
        "sources": sources,
        "member_weights": ensemble.member_weights,
    })
    return ensemble
