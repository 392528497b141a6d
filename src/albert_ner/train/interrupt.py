"""Stopping a training loop cleanly on SIGTERM: spot interruptions, StopTrainingJob, `docker stop`.

SageMaker sends SIGTERM and kills the job about two minutes later (a spot reclaim may leave
less). The loops (`train.loop.Trainer`, `pretrain.loop.Pretrainer`) run inside
`StopSignals()`, whose handler only records the signal: a Python signal handler runs between
two bytecodes of the main thread, where no I/O or TensorFlow call is safe to start. After
each step the loop asks `stop.received`; once set, it finishes that step (its evaluation and
scheduled checkpoint included) and calls `stop.interrupt(...)`, which writes a checkpoint of
exactly that step (unless one was just written), logs one line and raises
`TrainingInterrupted`. A step takes a fraction of a second to a few seconds; an evaluation
due at that step adds its own time (seconds on a typical dev set), well inside SageMaker's
two minutes. It is not skipped: the resumed run would then never evaluate that step, and its
metrics would differ from an uninterrupted run's. The rerun with `--resume` continues
bit-identically (on CPU with deterministic ops), since the batch order and the masks are pure
functions of (seed, epoch) and the checkpoint holds everything else.

Exit status: the CLI and the SageMaker entrypoints exit with `INTERRUPTED_EXIT_STATUS`, 143
(128 + SIGTERM), what a shell reports for a process SIGTERM ended. Not 0: the run did not
finish — no export, no final metrics — and `albert-ner train ... && next-step` must not go on
as if it had. Not 1: that is a failure, and this is a clean, resumable stop. On SageMaker the
status changes nothing for the platform — a spot job is restarted by SageMaker itself (with
the same checkpoint_s3_uri, so the job resumes), and a stopped job is shown as Stopped.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Callable, NoReturn

INTERRUPTED_EXIT_STATUS = 128 + signal.SIGTERM


class TrainingInterrupted(Exception):
    """The loop stopped on a signal after writing a checkpoint; str() is the one log line.

    Attributes:
      signal_name: e.g. "SIGTERM".
      step: the last step trained.
      checkpoint_step: the step of the checkpoint a resume starts from, or None (none yet).
      checkpoint_dir: where that checkpoint is.
    """

    def __init__(self, signal_name: str, step: int, checkpoint_step: int | None, checkpoint_dir):
        self.signal_name, self.step = signal_name, step
        self.checkpoint_step, self.checkpoint_dir = checkpoint_step, Path(checkpoint_dir)
        super().__init__(self._message())

    def _message(self) -> str:
        head = f"interrupted by {self.signal_name} at step {self.step}"
        if self.checkpoint_step is None:
            return f"{head}: no checkpoint written yet; a rerun starts from step 0"
        where = f"checkpoint written to {self.checkpoint_dir}"
        if self.checkpoint_step != self.step:
            where = f"the checkpoint of step {self.checkpoint_step} in {self.checkpoint_dir} is kept"
        return (f"{head}: {where}; rerun with --resume (SageMaker: the same checkpoint_s3_uri) "
                "to continue")


class StopSignals:
    """Context manager: while active, SIGTERM (or the given signals) only sets a flag.

    The previous handlers are restored on exit, so the rest of the process (the container's
    entrypoint, a notebook) keeps its own behaviour outside the loop. Python lets only the
    main thread install handlers: in another thread this does nothing and `received` stays
    None (the signal then does what it did before).
    """

    def __init__(self, signals: tuple = (signal.SIGTERM,)):
        self.signals = signals
        self._received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _record(self, signum, frame) -> None:
        # Only the flag: no I/O, no locks, nothing that can deadlock or raise mid-step.
        self._received = signum

    @property
    def received(self) -> str | None:
        """The name of the signal received ("SIGTERM"), or None."""
        return None if self._received is None else signal.Signals(self._received).name

    def interrupt(self, step: int, checkpoint_dir, save: Callable[[], None] | None,
                  saved_step: int | None, log: Callable[[str], None] = print) -> NoReturn:
        """Ends the loop after a signal: writes the checkpoint, logs the line, raises.

        Args:
          step: the last step trained.
          checkpoint_dir: where checkpoints go.
          save: writes a checkpoint of `step`; None when there is none to write (one was just
            written at this step, or the run cannot write one off its schedule).
          saved_step: the step of the newest checkpoint already written, or None.
          log: where the line goes.
        Raises:
          TrainingInterrupted: always.
        """
        if save is not None and saved_step != step:
            save()
            saved_step = step
        err = TrainingInterrupted(self.received or "a signal", step, saved_step, checkpoint_dir)
        log(str(err))
        raise err
