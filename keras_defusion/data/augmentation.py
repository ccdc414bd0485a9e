"""Training augmentation: rotation, scale, flip (section 3.3), resize method,
synthetic defocus, photometric."""

import dataclasses
import math
from typing import Optional

import numpy as np
import tensorflow as tf

from keras_defusion.data import defocus

ROTATION_BORDERS = ("crop", "reflect")


# How a photo can be downscaled before it reaches the network. Phone runtimes
# (MediaPipe's ImageSegmenter), `tf.image.resize`'s default and OpenCV's
# INTER_LINEAR sample without antialiasing; training on all of them makes the
# maps independent of the caller's choice (README, "Phones").
# "corner_bilinear" samples at pixel corners (source x = target x * in / out,
# TF 1's `resize_bilinear`), as MediaPipe's ImageSegmenter does; the mask is
# resized the same way, so the map stays aligned with the shifted photo.
RESIZE_METHODS = ("antialiased", "bilinear", "area", "nearest", "bicubic", "corner_bilinear")


DEFAULT_RESIZE_METHODS = ("antialiased",)


def check_resize_methods(methods):
    """`methods` as a tuple, if it is a non-empty selection of `RESIZE_METHODS`."""
    methods = tuple(methods)
    unknown = [m for m in methods if m not in RESIZE_METHODS]
    if not methods or unknown:
        raise ValueError(
            f"resize_methods must be a non-empty selection of {RESIZE_METHODS}, "
            f"got {list(methods)}"
        )
    return methods


@dataclasses.dataclass(frozen=True)
class Photometric:
    """Photometric augmentation of training crops; the default changes nothing.

    Not in the paper. Defocus shows as missing fine detail, so exposure,
    colour, sensor noise and JPEG compression, which vary between cameras
    and change that detail, should not change the map.

    Attributes:
        color_jitter: largest relative change of brightness (gain), contrast
            and saturation, each drawn uniformly in [-j, j] per crop; 0: off.
        noise_stddev: largest standard deviation of the Gaussian noise added,
            on the 0..255 scale; each crop draws one in [0, noise_stddev].
        jpeg_quality: lowest quality a crop is re-encoded at as a JPEG, each
            crop drawn in [jpeg_quality, 100]; None: not re-encoded.
    """

    color_jitter: float = 0.0
    noise_stddev: float = 0.0
    jpeg_quality: Optional[int] = None

    def __post_init__(self):
        if not 0 <= self.color_jitter < 1:
            raise ValueError(
                f"color_jitter (--color-jitter) must be in [0, 1), got {self.color_jitter}")
        if not 0 <= self.noise_stddev <= 64:
            raise ValueError(
                f"noise_stddev (--noise-stddev) must be in [0, 64] (0..255 scale), "
                f"got {self.noise_stddev}")
        if self.jpeg_quality is not None and not (
                isinstance(self.jpeg_quality, int) and 1 <= self.jpeg_quality <= 100):
            raise ValueError(
                f"jpeg_quality (--jpeg-quality) must be an integer in [1, 100] or None, "
                f"got {self.jpeg_quality!r}")

    @property
    def enabled(self):
        return bool(self.color_jitter or self.noise_stddev or self.jpeg_quality is not None)


def apply_photometric(image, photometric, seed):
    """Applies `Photometric` to one RGB crop [S, S, 3] (float, 0..255).

    Args:
        image: the crop.
        photometric: a `Photometric`.
        seed: shape [2] integer seed of the stateless draws.

    Returns:
        The crop, clipped to 0..255.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=6)
    jitter = photometric.color_jitter
    if jitter:
        gain, contrast, saturation = (
            1.0 + tf.random.stateless_uniform([], seeds[i], -jitter, jitter) for i in range(3))
        image = image * gain
        mean = tf.reduce_mean(image)
        image = (image - mean) * contrast + mean
        gray = tf.reduce_sum(image * [0.299, 0.587, 0.114], axis=-1, keepdims=True)
        image = (image - gray) * saturation + gray
    if photometric.noise_stddev:
        stddev = tf.random.stateless_uniform([], seeds[3], 0.0, photometric.noise_stddev)
        image = image + stddev * tf.random.stateless_normal(tf.shape(image), seeds[4])
    image = tf.clip_by_value(image, 0.0, 255.0)
    if photometric.jpeg_quality is not None:
        encoded = tf.image.stateless_random_jpeg_quality(
            image / 255.0, photometric.jpeg_quality, 100, seeds[5])
        image = tf.reshape(encoded, tf.shape(image)) * 255.0
    return image


@dataclasses.dataclass(frozen=True)
class SyntheticDefocus:
    """Extra defocused regions on training crops; the default changes nothing.

    Not in the paper. A crop drawn with probability `probability` gets a
    region blurred by a pillbox (the blur disc of a defocused lens) under a
    soft random mask feathered as a defocus edge is, and the region is added
    to its mask (`keras_defusion.data.defocus.add_defocus`): new blur
    boundaries, at new places, from the same photos. Applied after the
    geometry and before `Photometric`, so noise and JPEG cover the new region
    as they do the rest.

    Attributes:
        probability: share of the crops changed, in [0, 1]; 0: off.
        radius_range: (low, high) pillbox radius as a fraction of the crop
            side, drawn uniformly per crop; by default the synthetic
            pairs' (`defocus.RADIUS_FRACTIONS`), 2.9 to 7.7 px on a 192-px
            crop.
    """

    probability: float = 0.0
    radius_range: tuple = defocus.RADIUS_FRACTIONS

    def __post_init__(self):
        if not 0 <= self.probability <= 1:
            raise ValueError(
                f"probability (--synthetic-defocus) must be in [0, 1], got {self.probability}")
        low, high = (float(r) for r in self.radius_range)
        if not 0 < low <= high <= 0.25:
            raise ValueError(
                f"radius_range must be (low, high) fractions of the crop side with "
                f"0 < low <= high <= 0.25, got {self.radius_range}")
        object.__setattr__(self, "radius_range", (low, high))

    @property
    def enabled(self):
        return self.probability > 0


def apply_synthetic_defocus(image, mask, synthetic_defocus, seed):
    """Applies `SyntheticDefocus` to one crop.

    Args:
        image: RGB [S, S, 3], float 0..255.
        mask: [S, S, 1] in {0, 1}, 1 = blurred.
        synthetic_defocus: a `SyntheticDefocus`.
        seed: shape [2] integer seed; the same seed gives the same region.

    Returns:
        `(image, mask)`, the crop unchanged unless drawn.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    drawn = tf.random.stateless_uniform([], seeds[0]) < synthetic_defocus.probability
    low, high = synthetic_defocus.radius_range
    side = tf.cast(tf.shape(image)[0], tf.float32)
    radius = side * tf.random.stateless_uniform([], seeds[1], low, high)
    # The region's shape is drawn by NumPy, seeded from the stateless stream.
    region_seed = tf.random.stateless_uniform(
        [2], seeds[2], 0, tf.int32.max, dtype=tf.int32)

    def paint():
        def numpy_paint(image, mask, radius, region_seed):
            rng = np.random.default_rng([int(s) for s in region_seed])
            return defocus.add_defocus(rng, image, mask, float(radius))

        painted, grown = tf.numpy_function(
            numpy_paint, [image, mask, radius, region_seed], [tf.float32, tf.float32],
            stateful=False)
        return tf.ensure_shape(painted, image.shape), tf.ensure_shape(grown, mask.shape)

    return tf.cond(drawn, paint, lambda: (image, mask))


def _resize_square(stacked, side):
    """Resizes [H, W, 4] (RGB + mask) to [side, side, 4], antialiased bilinear."""
    return resize_photo(stacked, side, "antialiased")


def _finish(stacked):
    """Clips RGB to 0..255 and re-binarises the mask channel at 0.5 (a
    teacher's map, a fifth channel, stays soft)."""
    image = tf.clip_by_value(stacked[..., :3], 0.0, 255.0)
    mask = tf.cast(stacked[..., 3:4] >= 0.5, tf.float32)
    return tf.concat([image, mask, stacked[..., 4:]], axis=-1)


def _blend_teacher(targets, teacher_weight):
    """[S, S, 2] (mask, teacher map) -> (1 - w) * mask + w * map, [S, S, 1]."""
    if teacher_weight is None:
        return targets
    blended = (1.0 - teacher_weight) * targets[..., :1] + teacher_weight * targets[..., 1:2]
    return tf.clip_by_value(blended, 0.0, 1.0)


def _split(stacked):
    return stacked[..., :3], stacked[..., 3:]


def resize_photo(image, side, method):
    """Resizes [H, W, C] to [side, side, C] by a `RESIZE_METHODS` name."""
    size = tf.stack([side, side])
    if method == "antialiased":
        return tf.image.resize(image, size, method="bilinear", antialias=True)
    if method == "corner_bilinear":
        return tf.raw_ops.ResizeBilinear(
            images=image[tf.newaxis], size=size, align_corners=False,
            half_pixel_centers=False)[0]
    return tf.image.resize(image, size, method=method)


def _resize_random(stacked, side, methods, seed):
    """`_resize_square` with the photo resized by a method drawn from `methods`."""
    if methods == ("antialiased",):
        return _resize_square(stacked, side)

    def resize(method):
        if method == "corner_bilinear":  # the mask must follow the photo's shift
            return resize_photo(stacked, side, method)
        mask = _resize_square(stacked[..., 3:], side)
        return tf.concat([resize_photo(stacked[..., :3], side, method), mask], axis=-1)

    index = tf.random.stateless_uniform([], seed, 0, len(methods), dtype=tf.int32)
    return tf.switch_case(index, [(lambda m=method: resize(m)) for method in methods])


def _make_augment(size, max_rotation, scale_range, flip, rotation_border, resize_methods,
                  synthetic_defocus, photometric, teacher_weight=None):
    """Builds the per-element training transform (see `make_dataset`).

    Photo and mask travel as one [H, W, 4] tensor (5 with a teacher's map),
    so every geometric step is the same for all. Steps: one resize of the
    whole photo to a random square side n = S * scale, by a method drawn from
    `resize_methods`; then a single projective warp that rotates by a random
    angle about the centre, takes an S x S window at a random integer offset
    and mirrors it (bilinear sampling); then the mask is re-binarised at 0.5
    (and blended with the teacher's map by `teacher_weight`), `synthetic_defocus`
    may blur a new region and add it to the mask, and `photometric` changes
    the photo (each draws from its own seed, so turning one on leaves the
    geometry of every crop, and the other's draws, as they were). With
    `rotation_border="crop"` the window stays inside the rotated photo (n is
    raised as far as needed, so large angles zoom in); with `"reflect"` the
    corners are filled by reflection.
    """
    max_angle = math.radians(max_rotation)
    scale_low, scale_high = scale_range
    crop = rotation_border == "crop"
    side = float(size)

    def augment(stacked, element_seed):
        seeds = tf.random.experimental.stateless_split(element_seed, num=4)
        angle = tf.random.stateless_uniform([], seeds[0], -max_angle, max_angle)
        scale = tf.random.stateless_uniform([], seeds[1], scale_low, scale_high)
        mirror = tf.random.stateless_uniform([], seeds[2]) < 0.5
        if not flip:
            mirror = tf.constant(False)
        position = tf.random.stateless_uniform([2], seeds[3])

        cos, sin = tf.cos(angle), tf.sin(angle)
        # Side of the largest axis-aligned square inside a square rotated by
        # `angle`, as a fraction of that square's side (pixel-centre spans).
        fit = cos + tf.abs(sin)
        n = side * scale
        if crop:
            n = tf.maximum(n, 1.0 + (side - 1.0) * fit)
            n = tf.math.ceil(n - 1e-4)
        else:
            n = tf.maximum(tf.round(n), 1.0)
        resize_seed = tf.random.experimental.stateless_fold_in(element_seed, 4)
        resized = _resize_random(
            stacked, tf.cast(n, tf.int32), resize_methods, resize_seed
        )

        center = (n - 1.0) / 2.0
        if crop:
            half = (n - 1.0) / (2.0 * fit)
            low, high = center - half, center + half - (side - 1.0)
        else:
            low = tf.minimum(0.0, (n - side) / 2.0)
            high = tf.maximum(n - side, (n - side) / 2.0)
        offset = tf.round(low + position * (high - low))
        offset_x, offset_y = offset[0], offset[1]

        # Output pixel (x, y) -> window point u = fx*x + tx + offset_x,
        # v = y + offset_y -> rotated about the centre into the resized photo.
        fx = tf.where(mirror, -1.0, 1.0)
        tx = tf.where(mirror, side - 1.0, 0.0)
        du = tx + offset_x - center
        dv = offset_y - center
        transform = tf.stack([
            cos * fx, -sin, cos * du - sin * dv + center,
            sin * fx, cos, sin * du + cos * dv + center,
            0.0, 0.0,
        ])[None]
        # Not keras.ops.image.affine_transform (the same kernel): its output
        # has the input's shape, while this window (size x size) may be larger
        # than the resized photo (scale < 1, filled by reflection) or smaller.
        warped = tf.raw_ops.ImageProjectiveTransformV3(
            images=resized[None],
            transforms=transform,
            output_shape=tf.constant([size, size], tf.int32),
            fill_value=0.0,
            interpolation="BILINEAR",
            # "crop" never samples outside but for rounding at the very edge.
            fill_mode="NEAREST" if crop else "REFLECT",
        )[0]
        warped.set_shape([size, size, stacked.shape[-1]])
        image, targets = _split(_finish(warped))
        mask = _blend_teacher(targets, teacher_weight)
        if synthetic_defocus.enabled:
            image, mask = apply_synthetic_defocus(
                image, mask, synthetic_defocus,
                tf.random.experimental.stateless_fold_in(element_seed, 6))
        if photometric.enabled:
            image = apply_photometric(
                image, photometric, tf.random.experimental.stateless_fold_in(element_seed, 5))
        return image, mask

    return augment
