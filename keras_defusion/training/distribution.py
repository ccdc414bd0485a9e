"""Choosing a `tf.distribute` strategy for a training run."""

import tensorflow as tf


def _tf_config():
    """`(cluster dict, task type, task index)` of `TF_CONFIG`, as TF reads it."""
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return resolver.cluster_spec().as_dict(), resolver.task_type, resolver.task_id


def cluster_workers():
    """The number of workers `TF_CONFIG` names (1 without it)."""
    cluster, _, _ = _tf_config()
    return len(cluster.get("worker", [])) + len(cluster.get("chief", [])) or 1


def task_index():
    """This process's task index in `TF_CONFIG` (0 without it)."""
    _, _, index = _tf_config()
    return int(index or 0)


def is_chief():
    """Whether this process writes the run's files (the chief or worker 0)."""
    cluster, task_type, index = _tf_config()
    if task_type is None:
        return True
    if "chief" in cluster:
        return task_type == "chief"
    return task_type == "worker" and int(index or 0) == 0


def select_strategy(kind="auto"):
    """Returns the strategy for `kind`.

    Args:
        kind: "auto" picks MultiWorkerMirrored when `TF_CONFIG` names several
            workers, Mirrored over all GPUs when there are two or more, and
            the default strategy otherwise (one GPU or the CPU); or
            "default", "mirrored" (over the GPUs, or over the logical CPUs
            where there is no GPU), "multi_worker" by name.
    """
    if kind == "auto":
        if cluster_workers() > 1:
            kind = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        # Over all GPUs; without GPUs, over the logical CPUs (for tests).
        gpus = tf.config.list_logical_devices("GPU")
        cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(None if gpus else cpus)
    if kind == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown distribution {kind!r}")


def is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
