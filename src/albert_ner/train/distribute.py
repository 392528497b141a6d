"""Which `tf.distribute` strategy a run uses.

  * several GPUs on one machine → MirroredStrategy;
  * TF_CONFIG naming several workers (a multi-node job) → MultiWorkerMirroredStrategy;
  * otherwise the default strategy (one device: the GPU or the CPU).

The training loop feeds every replica its share of each batch itself, so the same loop code
runs under all three.
"""

from __future__ import annotations

import json
import os


def _workers_in_tf_config() -> int:
    try:
        config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    except json.JSONDecodeError:
        raise ValueError("TF_CONFIG is set but is not valid JSON") from None
    return len(config.get("cluster", {}).get("worker", []))


def default_strategy():
    """The strategy for this process, with an `is_chief` attribute (only the chief writes)."""
    import tensorflow as tf

    if _workers_in_tf_config() > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = strategy.cluster_resolver
        strategy.is_chief = resolver.task_type in (None, "chief") or (
            resolver.task_type == "worker" and resolver.task_id == 0
        )
        return strategy
    gpus = tf.config.list_logical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    strategy.is_chief = True
    return strategy
