"""The loss of Eq. 6 as Keras multi-output `loss` and `loss_weights`."""

import keras

from keras_defusion.models.defusionnet.config import FUSED
from keras_defusion.models.defusionnet.config import output_names


def deep_supervision_losses(num_steps, lambda_fused=1.0, lambda_side=1.0):
    """Pixel-wise binary cross-entropy on every output, weighted per Eq. 6.

    L = lambda_f L_f + sum_i sum_j lambda_i^j L_i^j. The model's outputs are
    probabilities, so the loss takes probabilities (`from_logits=False`);
    Keras' TensorFlow backend recovers the logits cached by the sigmoid, so
    this is as stable as a logits loss. Keras averages each L over pixels
    where the paper's Caffe loss sums them: see the training presets for how
    the learning rate is scaled.

    Args:
        num_steps: t, the model's recurrent steps.
        lambda_fused: lambda_f, the weight of the fused map's loss.
        lambda_side: lambda_i^j: one float for every side output, or a dict
            from output name (`"step{j}_out{i}"`) to weight; missing names
            weigh 1.

    Returns:
        `(losses, loss_weights)`: dicts keyed by output name, for
        `model.compile(loss=losses, loss_weights=loss_weights)`.
    """
    names = output_names(num_steps)
    if isinstance(lambda_side, dict):
        unknown = set(lambda_side) - set(names[1:])
        if unknown:
            raise ValueError(
                f"lambda_side names outputs the model lacks: {sorted(unknown)}"
            )
        side_weight = lambda name: float(lambda_side.get(name, 1.0))
    else:
        side_weight = lambda name: float(lambda_side)
    losses = {name: keras.losses.BinaryCrossentropy(name=f"{name}_bce") for name in names}
    loss_weights = {FUSED: float(lambda_fused)}
    loss_weights.update({name: side_weight(name) for name in names[1:]})
    return losses, loss_weights
