"""AdamW with linear warm-up then linear decay (BERT's recipe), gradient clipping.

The CRF's transition scores get their own, larger learning rate: they are a handful of
numbers that start at zero and must move far, while the encoder's weights must move little
(pretrained) or at a rate the transformer tolerates (random init). Adam's update does not
change when a gradient is scaled, so a separate optimizer is the honest way to do it.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Variables that BERT's AdamW exempts from weight decay.
NO_DECAY = ["bias", "gamma", "beta", "transitions"]


class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """peak · step/warmup for step < warmup, then linear decay to 0 at total_steps.

    warmup_steps and total_steps live in variables so that a run with a time budget can
    re-fit the schedule while it learns how many steps fit (`fit`, see `train.budget`):
    the decay then ends when the time does, instead of the run being cut off mid-schedule.
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak = float(peak)
        self._warmup = tf.Variable(float(warmup_steps), trainable=False, dtype=tf.float32, name="warmup_steps")
        self._total = tf.Variable(float(max(total_steps, 1)), trainable=False, dtype=tf.float32, name="total_steps")

    @property
    def warmup_steps(self) -> int:
        return int(self._warmup.numpy())

    @property
    def total_steps(self) -> int:
        return int(self._total.numpy())

    def fit(self, warmup_steps: int, total_steps: int) -> None:
        """Moves the end of the schedule (and the warm-up length) to new step counts."""
        self._warmup.assign(float(warmup_steps))
        self._total.assign(float(max(total_steps, 1)))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup, total = self._warmup, self._total
        warm = self.peak * step / tf.maximum(warmup, 1.0)
        decay = self.peak * tf.maximum(0.0, (total - step) / tf.maximum(total - warmup, 1.0))
        return tf.where(step < warmup, warm, decay)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def make_optimizer(
    learning_rate: float,
    warmup_steps: int,
    total_steps: int,
    weight_decay: float = 0.01,
    clip_norm: float = 1.0,
    name: str = "adamw",
):
    """A Keras AdamW driven by `WarmupLinearDecay` (kept as `optimizer.schedule`)."""
    schedule = WarmupLinearDecay(learning_rate, warmup_steps, total_steps)
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=weight_decay,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
        global_clipnorm=clip_norm if clip_norm > 0 else None,
        name=name,
    )
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    optimizer.schedule = schedule  # a time-budgeted run re-fits it (train.budget)
    return optimizer
