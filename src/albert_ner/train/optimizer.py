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
    """peak · step/warmup for step < warmup, then linear decay to 0 at total_steps."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), 1)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * step / max(self.warmup_steps, 1)
        decay_span = max(self.total_steps - self.warmup_steps, 1)
        decay = self.peak * tf.maximum(0.0, (self.total_steps - step) / decay_span)
        return tf.where(step < self.warmup_steps, warm, decay)

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
    """A Keras AdamW driven by `WarmupLinearDecay`."""
    optimizer = keras.optimizers.AdamW(
        learning_rate=WarmupLinearDecay(learning_rate, warmup_steps, total_steps),
        weight_decay=weight_decay,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
        global_clipnorm=clip_norm if clip_norm > 0 else None,
        name=name,
    )
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    return optimizer
