"""Choosing a `tf.distribute` strategy for a training run."""

import json
import os

import tensorflow as tf


def cluster_workers():
    """The number of workers `TF_CONFIG` names (1 without it)."""
    spec = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    return len(spec.get("worker", [])) + len(spec.get("chief", [])) or 1


def is_chief():
    """Whether this process writes the run's files (the chief or worker 0)."""
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    if not task:
        return True
    spec = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
    if "chief" in spec:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def select_strategy(kind="auto"):
    """Returns the strategy for `kind`.

    Args:
        kind: "auto" picks MultiWorkerMirrored when `TF_CONFIG` names several
            workers, Mirrored over all GPUs when there are two or more, and
            the default strategy otherwise (one GPU or the CPU); or
            "default", "mirrored", "multi_worker" by name.
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
        return tf.distribute.MirroredStrategy()
    if kind == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown distribution {kind!r}")


def is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
