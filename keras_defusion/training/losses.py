"""The loss of Eq. 6 as Keras multi-output `loss` and `loss_weights`."""

import keras
from keras import ops

from keras_defusion.models.defusionnet.config import FUSED
from keras_defusion.models.defusionnet.config import output_names


@keras.saving.register_keras_serializable(package="keras_defusion")
class BCEIoULoss(keras.losses.Loss):
    """Binary cross-entropy plus `iou_weight` x (1 - soft IoU), per photo.

    Not in the paper (BASNet's hybrid loss, Qin et al., 2019, has the same
    IoU term). Cross-entropy scores each pixel alone; the IoU term scores
    each photo's map as a whole, so a small wrong region costs as much in a
    photo where the true region is small. Symmetric: the mean of the soft IoU
    of the blurred and of the sharp pixels, each smoothed by one pixel, so a
    photo without one of the two is scored by the other.

    Args:
        iou_weight: the IoU term's weight; 0 gives the cross-entropy alone.
        name: the loss's name.
    """

    def __init__(self, iou_weight=1.0, name="bce_iou", **kwargs):
        super().__init__(name=name, **kwargs)
        self.iou_weight = float(iou_weight)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        # Per pixel, then the mean per photo: [N, H, W] -> [N]. Keras'
        # TensorFlow backend uses the sigmoid's cached logits here, as in
        # keras.losses.BinaryCrossentropy.
        bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=(1, 2))
        axes = tuple(range(1, len(y_pred.shape)))

        def soft_iou(truth, prob):
            intersection = ops.sum(truth * prob, axis=axes)
            union = ops.sum(truth + prob - truth * prob, axis=axes)
            return (intersection + 1.0) / (union + 1.0)

        iou = 0.5 * (soft_iou(y_true, y_pred) + soft_iou(1.0 - y_true, 1.0 - y_pred))
        return bce + self.iou_weight * (1.0 - iou)

    def get_config(self):
        return {"iou_weight": self.iou_weight, "name": self.name}


def deep_supervision_losses(num_steps, lambda_fused=1.0, lambda_side=1.0, iou_weight=0.0):
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
        iou_weight: adds this weight x (1 - soft IoU) to every output's loss
            (`BCEIoULoss`); 0, the default, is Eq. 6's cross-entropy alone.

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
    if iou_weight:
        losses = {name: BCEIoULoss(iou_weight, name=f"{name}_bce_iou") for name in names}
    else:
        losses = {name: keras.losses.BinaryCrossentropy(name=f"{name}_bce") for name in names}
    loss_weights = {FUSED: float(lambda_fused)}
    loss_weights.update({name: side_weight(name) for name in names[1:]})
    return losses, loss_weights
