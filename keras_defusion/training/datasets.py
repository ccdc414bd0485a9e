"""The data sets of a training run: real pairs, the synthetic warm-up, targets."""

import tensorflow as tf

from keras_defusion import data as data_lib
from keras_defusion.data import synthetic


def to_targets(output_names):
    """Maps (images, masks) to (images, {output name: masks})."""
    return lambda images, masks: (images, {name: masks for name in output_names})


def build_datasets(config, data_dir, val_dir=None, per_worker=None):
    """The training and validation `tf.data` pipelines of a run.

    Validation is the whole `val_dir` (or the `val_fraction` carved from
    `data_dir`), each photo resized whole to `val_size` (default: the crop
    size); None when neither is set.

    Args:
        config: the `TrainingConfig`.
        data_dir: training folder (CUHK or DUT layout).
        val_dir: validation folder, optional.
        per_worker: `(input_pipeline_id, num_pipelines)` to shard the
            training pairs for multi-worker runs.

    Returns:
        `(train_pairs, val_pairs, train_dataset, val_dataset)`; datasets
        yield `(images, masks)` with the global batch.
    """
    pairs = data_lib.find_pairs(data_dir)
    if val_dir:
        val_pairs = data_lib.find_pairs(val_dir)
        train_pairs = pairs
    elif config.val_fraction > 0:
        train_pairs, val_pairs = data_lib.split_pairs(pairs, config.val_fraction, config.seed)
    else:
        train_pairs, val_pairs = pairs, []
    # One error naming every missing, empty or mismatched file of both
    # splits, before any training starts; decoding errors are reported by
    # `make_dataset`, which decodes each file once.
    data_lib.validate_pairs(train_pairs + val_pairs, decode=False)
    if per_worker is not None:
        index, count = per_worker
        train_pairs = train_pairs[index::count]
    options = dict(
        max_rotation=config.max_rotation,
        scale_range=config.scale_range,
        flip=config.flip,
        resize_methods=config.resize_methods,
        synthetic_defocus=config.synthetic_defocus_augmentation,
        photometric=config.photometric,
    )
    train = data_lib.make_dataset(
        train_pairs,
        config.image_size,
        config.batch_size,
        training=True,
        polarity=config.polarity,
        seed=config.seed,
        teacher_maps=config.teacher_maps,
        teacher_weight=config.teacher_weight,
        **options,
    )
    val = None
    if val_pairs:
        val = data_lib.make_dataset(
            val_pairs,
            config.val_size or config.image_size,
            config.batch_size,
            training=False,
            polarity=config.polarity,
        )
    return train_pairs, val_pairs, train, val


def pad_to_full_batches(dataset, count, batch_size, output_names):
    """Batches (images, masks) so every batch is full, for multi-replica runs.

    Keras' `fit` and `evaluate` under MirroredStrategy fail on a last batch
    that does not split evenly over the replicas (AddN shape mismatch).
    Instead of dropping the remainder, the set is padded with repeats of its
    first elements at sample weight 0, so every image counts exactly once.
    """
    pad = (-count) % batch_size

    def weighted(weight):
        def add(images, masks):
            targets = {name: masks for name in output_names}
            # [1, 1] per image: Keras matches a [B, 1, 1] weight to the
            # per-pixel loss [B, H, W]; a [B] weight would not broadcast.
            weights = {name: tf.fill([1, 1], weight) for name in output_names}
            return images, targets, weights

        return add

    elements = dataset.unbatch()
    padded = elements.map(weighted(1.0))
    if pad:
        padded = padded.concatenate(elements.repeat().take(pad).map(weighted(0.0)))
    return padded.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def with_synthetic_prefix(train, config, steps_done):
    """Prepends the synthetic warm-up steps not yet done to the real data."""
    remaining = config.synthetic_steps - steps_done
    if remaining <= 0:
        return train
    warmup = synthetic.synthetic_dataset(
        config.image_size, config.batch_size, seed=config.seed + steps_done
    ).take(remaining)
    return warmup.concatenate(train)
