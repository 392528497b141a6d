"""Readiness across worker processes: /ping is 200 only when every worker has its model.

With `--workers N` each uvicorn worker is a process with its own model, and a /ping reaches
whichever worker takes the connection. A worker that answered only for itself would say 200
while another is still loading, and requests reaching that one would get 503 — the endpoint
would look healthy and fail. So each worker records its outcome as a file in a directory the
parent creates and shares through the settings (`ServeSettings.ready_dir`):

  ready-<pid>    the model is loaded and warmed up
  failed-<pid>   the load failed; the file holds the reason

and a worker's /ping is 200 only when it is ready itself and the directory holds N ready
files and no failed one. A single worker needs no directory (its own status is the answer).

A worker that dies without its shutdown (SIGKILL, the kernel's OOM killer, a crash) cannot
withdraw its file. Its stale ready file would count for the replacement that is still
loading, and a stale failed file would keep every /ping at 503 for good. So the supervising
parent, which knows its workers' pids, calls `prune` with the live ones after every check
(`serving.supervisor`).

Example:
  board = ReadinessBoard(settings.ready_dir, settings.workers)
  board.record(batcher.error)        # on the worker, once its load has ended
  waiting = board.not_ready_reason() # None when all workers are ready
  board.prune({1201, 1202})          # in the parent: drops the files of any other pid
"""

from __future__ import annotations

import os
from pathlib import Path

READY_PREFIX = "ready-"
FAILED_PREFIX = "failed-"


class ReadinessBoard:
    """The shared directory of worker outcomes (see the module docstring).

    Args:
        directory: the directory the parent created; None for a single worker.
        workers: how many workers must be ready.
    """

    def __init__(self, directory: str | None, workers: int):
        self.directory = Path(directory) if directory else None
        self.workers = workers
        self._pid = os.getpid()

    def record(self, error: str | None) -> None:
        """Writes this worker's outcome: ready (error None) or failed with `error`."""
        if self.directory is None:
            return
        name = f"{FAILED_PREFIX if error else READY_PREFIX}{self._pid}"
        # Written under a temporary name and renamed, so a reader never sees half a file.
        partial = self.directory / f".{name}"
        partial.write_text(error or "", encoding="utf-8")
        partial.replace(self.directory / name)

    def withdraw(self) -> None:
        """Removes this worker's outcome (at shutdown: it no longer serves)."""
        if self.directory is None:
            return
        for prefix in (READY_PREFIX, FAILED_PREFIX):
            (self.directory / f"{prefix}{self._pid}").unlink(missing_ok=True)

    def prune(self, live_pids: set[int]) -> list[int]:
        """Removes the outcomes (and half-written ones) of workers not in `live_pids`.

        Returns:
            The pids whose files were removed, for the log.
        """
        if self.directory is None:
            return []
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []  # the directory went away with a stopping server: nothing to prune
        removed = set()
        for name in names:
            pid = _pid_of(name)
            if pid is not None and pid not in live_pids:
                (self.directory / name).unlink(missing_ok=True)
                removed.add(pid)
        return sorted(removed)

    def not_ready_reason(self) -> str | None:
        """None when all workers are ready, else why not (for /ping's 503)."""
        if self.directory is None:
            return None
        try:
            names = os.listdir(self.directory)
        except OSError as err:
            return f"cannot read the workers' readiness directory {self.directory}: {err}"
        failed = sorted(n for n in names if n.startswith(FAILED_PREFIX))
        if failed:
            reason = (self.directory / failed[0]).read_text(encoding="utf-8", errors="replace")
            return f"worker {failed[0][len(FAILED_PREFIX):]} failed: {reason}"
        ready = sum(n.startswith(READY_PREFIX) for n in names)
        if ready < self.workers:
            return f"{ready} of {self.workers} workers have loaded the model; the others are still loading"
        return None


def _pid_of(name: str) -> int | None:
    """The worker pid in an outcome file's name (also ".ready-<pid>" while being written)."""
    bare = name.removeprefix(".")
    for prefix in (READY_PREFIX, FAILED_PREFIX):
        if bare.startswith(prefix) and bare[len(prefix):].isdigit():
            return int(bare[len(prefix):])
    return None
