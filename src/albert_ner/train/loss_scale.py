"""Dynamic loss scaling for fp16 training, shared by `train` and `pretrain`.

fp16 has a 5-bit exponent: a gradient below about 6e-8 flushes to zero, one above 65504
overflows to inf. Multiplying the loss by a scale S before differentiation lifts the gradients
S times out of the underflow range; dividing them by S afterwards, in float32 (where the
variables live), gives the true gradients back. No fixed S suits every batch of a run (a static
1024 let some batches overflow, and one overflowing step applied put NaN in the weights), so S
follows the gradients:

  * a step whose gradients hold an inf or NaN (of any variable, for any optimizer, on any
    replica) is skipped: no optimizer applies anything and their step counters stay; S halves;
  * after `growth_steps` consecutive finite steps S doubles, to find out whether the gradients
    fit a larger scale again (a wrong guess costs one skipped step).

That is the rule of Keras' LossScaleOptimizer, which is not used because it wraps one
optimizer: NER training has two (the encoder's and the CRF's) fed by one scaled loss, and two
wrappers would keep two scales and could skip a step for one optimizer but not the other.

The state is two tf.Variables, the scale and the count of finite steps since it last changed:
the graph reads and updates them, so a compiled step is traced once, and `.variables` lists
them, so resume checkpoints (train.checkpoint) carry them.
"""

from __future__ import annotations

import functools
from typing import Callable

import tensorflow as tf

from albert_ner.train.runtime import (
    FP16_INITIAL_LOSS_SCALE,
    FP16_LOSS_SCALE_GROWTH_STEPS,
    unscale,
)


class DynamicLossScale:
    """The loss scale of one fp16 run, shared by all of its optimizers.

    Use inside the compiled training step:

        scaled = loss_scale.scale_loss(loss)               # under the GradientTape
        grads = tape.gradient(scaled, variables)
        applied = loss_scale.apply_if_finite(grads, apply)  # apply(unscaled_grads) or skip

    Create it under the `tf.distribute` strategy's scope when the step runs in `strategy.run`,
    so that every replica holds a copy of the state.
    """

    def __init__(self, initial_scale: float = FP16_INITIAL_LOSS_SCALE,
                 growth_steps: int = FP16_LOSS_SCALE_GROWTH_STEPS):
        if not initial_scale > 0:
            raise ValueError(f"initial_scale must be positive, got {initial_scale}")
        if growth_steps < 1:
            raise ValueError(f"growth_steps must be at least 1, got {growth_steps}")
        self.growth_steps = int(growth_steps)
        self.scale = tf.Variable(float(initial_scale), trainable=False, dtype=tf.float32, name="loss_scale")
        self.good_steps = tf.Variable(0, trainable=False, dtype=tf.int64, name="loss_scale_good_steps")

    # A checkpoint without this state (written by an fp32 or bf16 run, or before dynamic
    # scaling existed) still resumes: the scale starts afresh, which costs at most a few
    # skipped steps (`train.checkpoint` reads this flag).
    may_be_absent_from_checkpoint = True

    @property
    def variables(self) -> list:
        """The state a checkpoint saves and restores, in a fixed order: [scale, good_steps]."""
        return [self.scale, self.good_steps]

    def scale_loss(self, loss):
        """loss · scale (the loss the gradients are taken of)."""
        return loss * tf.cast(self.scale, loss.dtype)

    def apply_if_finite(self, grads: list, apply_fn: Callable[[list], object]):
        """Unscales `grads`, calls `apply_fn(unscaled)` only if all are finite, updates the scale.

        Call it in a tf.function where the gradients would be applied: on one device, or in
        the function given to `strategy.run`. With several replicas the decision is all-reduced
        first, so an overflow on any replica skips the step on all of them, and `apply_fn`
        applies through the optimizers as usual (they all-reduce the gradients themselves).

        `apply_fn` must update every optimizer of the step (a skipped step updates none), and
        take everything replica-specific from its argument: with several replicas the first
        replica's `apply_fn` runs on each of them, with that replica's gradients.

        Returns:
          a scalar bool tensor, True when the gradients were applied.
        """
        grads = [None if g is None else unscale(g, self.scale) for g in grads]
        finite = _all_finite(grads)
        context = tf.distribute.get_replica_context()
        if context is None:
            raise RuntimeError("apply_if_finite must be called in a replica context (e.g. in strategy.run)")
        if context.num_replicas_in_sync > 1:
            overflows = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(finite), tf.float32))
            finite = tf.equal(overflows, 0.0)
        if _needs_merge_call():
            # Applying gradients is a synchronisation point (merge_call), which tf.distribute
            # refuses inside a tf.cond in replica context: branch in cross-replica context
            # instead, as Keras' LossScaleOptimizer does.
            merge_fn = functools.partial(self._apply_or_skip_cross_replica, apply_fn=apply_fn)
            return context.merge_call(merge_fn, args=(finite, grads))
        return self._apply_or_skip(finite, lambda: apply_fn(grads))

    def _apply_or_skip_cross_replica(self, strategy, finite, grads, apply_fn):
        finite = strategy.experimental_local_results(finite)[0]  # every replica's is the same
        return self._apply_or_skip(
            finite, lambda: strategy.extended.call_for_each_replica(apply_fn, args=(grads,))
        )

    def _apply_or_skip(self, finite, apply):
        def applied():
            apply()
            return tf.constant(True)

        tf.cond(finite, applied, lambda: tf.constant(False))
        self._update(finite)
        return finite

    def _update(self, finite) -> None:
        """Halves the scale after an overflow; doubles it after `growth_steps` finite steps."""
        good = tf.where(finite, self.good_steps + 1, tf.zeros_like(self.good_steps))
        grow = good >= self.growth_steps
        factor = tf.where(finite, tf.where(grow, 2.0, 1.0), 0.5)
        self.scale.assign(self.scale * factor)
        self.good_steps.assign(tf.where(grow, tf.zeros_like(good), good))


def reporting_skips(step: Callable, loss_scale: DynamicLossScale, log: Callable[[str], None]) -> Callable:
    """The training step as the loops call it: returns the loss alone, and logs skipped steps.

    `step` returns (loss, applied), `applied` as from `DynamicLossScale.apply_if_finite`. The
    compiled step stays reachable as `.step_function`.
    """

    def run(*args):
        loss, applied = step(*args)
        if not bool(applied):
            log(f"fp16: gradients overflowed (inf/NaN), step skipped; loss scale lowered to "
                f"{float(loss_scale.scale.numpy()):g}")
        return loss

    run.step_function = step
    return run


def _all_finite(grads: list):
    """True when no gradient holds an inf or NaN (IndexedSlices: their values)."""
    checks = [tf.reduce_all(tf.math.is_finite(g.values if isinstance(g, tf.IndexedSlices) else g))
              for g in grads if g is not None]
    return tf.reduce_all(tf.stack(checks))


def _needs_merge_call() -> bool:
    """Whether the current strategy synchronises replicas with merge_call (not the default one)."""
    return not tf.__internal__.distribute.strategy_supports_no_merge_call()
