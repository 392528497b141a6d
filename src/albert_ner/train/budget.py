"""A wall-clock budget for a training run (`--max-minutes`).

Users and SageMaker jobs (whose MaxRuntime kills the container) work to time budgets. A run
with a budget must end by itself, with the best model evaluated and exported, and its
learning-rate schedule should *end* when the time does — a warm-up/decay schedule planned
for more steps than fit would be cut off at a high learning rate.

So the loop asks the budget, as it goes, how many steps fit (`steps_that_fit`): the time
left, minus what the end of the run needs (a last evaluation and the export), divided by the
measured cost of a step (training plus its share of the periodic evaluations). The loop
re-fits the schedule's end to that number (`WarmupLinearDecay.fit`) and stops when the time
is up (`should_stop`).

Elapsed time includes earlier sessions of a resumed run (`already_spent`), so a job that
SageMaker restarts from its checkpoint keeps to the same budget.

Example:
  budget = TimeBudget(minutes=20)
  ...after each step: budget.record_step(seconds)
  total = budget.steps_that_fit(step)      # re-fit the schedule to this
  if budget.should_stop(): ...evaluate, export
"""

from __future__ import annotations

import time

# What the end of a run needs before the first evaluation has been timed: one evaluation
# and the SavedModel export (measured on 2 CPU cores: ALBERT-tiny export ≈ 15 s).
DEFAULT_RESERVE_SECONDS = 30.0
# Steps timed before the first estimate (the first step of a process includes tracing).
CALIBRATION_STEPS = 10


class TimeBudget:
    """Tracks time spent against a budget and estimates how many steps still fit."""

    def __init__(self, minutes: float, already_spent: float = 0.0, clock=time.monotonic):
        if minutes <= 0:
            raise ValueError(f"--max-minutes must be positive, got {minutes}")
        self.seconds = float(minutes) * 60.0
        self.clock = clock
        self._start = clock() - float(already_spent)
        self._step_seconds: list[float] = []
        self._eval_seconds = 0.0
        self._evals = 0
        self._last_eval = None
        # Export time is only known afterwards; ALBERT-tiny takes ≈15 s on 2 CPU cores, small
        # models a few seconds (small budgets keep a small share for it).
        self.export_seconds = min(15.0, 0.1 * self.seconds)

    def elapsed(self) -> float:
        """Seconds spent so far, earlier sessions included."""
        return self.clock() - self._start

    def record_step(self, seconds: float) -> None:
        self._step_seconds.append(float(seconds))

    def record_eval(self, seconds: float) -> None:
        self._eval_seconds += float(seconds)
        self._evals += 1
        self._last_eval = float(seconds)

    def reserve(self) -> float:
        """Seconds kept for the end of the run: a last evaluation and the export."""
        if self._last_eval is None:  # small budgets (tests, smoke runs) keep a smaller share
            return min(DEFAULT_RESERVE_SECONDS, 0.2 * self.seconds)
        return self._last_eval + self.export_seconds

    def seconds_per_step(self) -> float | None:
        """Measured cost of one step including its share of evaluations; None until calibrated."""
        timed = self._step_seconds[1:]  # the first step of a process includes tracing
        if len(timed) < CALIBRATION_STEPS:
            return None
        recent = timed[-200:]
        per_step = sum(recent) / len(recent)
        if self._evals:
            per_step += self._eval_seconds / max(len(self._step_seconds), 1)
        return per_step

    def remaining(self) -> float:
        """Seconds left for training steps (the reserve already taken off)."""
        return self.seconds - self.elapsed() - self.reserve()

    def steps_that_fit(self, step: int) -> int | None:
        """Total step count that ends when the budget does, or None before calibration."""
        per_step = self.seconds_per_step()
        if per_step is None:
            return None
        return step + max(int(self.remaining() / per_step), 0)

    def should_stop(self) -> bool:
        return self.remaining() <= 0
