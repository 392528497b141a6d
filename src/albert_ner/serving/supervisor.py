"""The parent of several uvicorn workers: uvicorn's supervisor plus what readiness needs.

Uvicorn (checked in 0.55) already replaces a worker that dies or stops answering its health
check: `Multiprocess.keep_subprocess_alive` runs every half second, reaps the dead worker and
starts a new one on the same listening socket. `Supervisor` keeps that and adds:

- the dead worker's readiness file is removed (`ReadinessBoard.prune`). Left in place, its
  ready file would count for the replacement, so /ping would say 200 while the replacement is
  still loading; a failed file would hold every /ping at 503 for good.
- one log line per replaced worker: which pid ended, how, and which pid took its place
  (uvicorn logs this at INFO level, which `albert-ner serve` does not show).
- on SIGTERM or SIGINT the parent closes its own copy of the listening socket. The workers
  close theirs as they start draining, but the parent's copy would keep the port open: the
  kernel would go on completing connections that no worker will ever read, and those clients
  would hang until the parent exits. Closed, new connections are refused at once while the
  workers finish their in-flight requests.

A replacement does not take connections while it loads: with several workers the app's
lifespan waits for the model before uvicorn starts accepting (`serving.app`).

Example (what `serving.server.serve` does for --workers N > 1):
  config = uvicorn.Config("albert_ner.serving.app:app_from_environ", factory=True, workers=2)
  Supervisor(config, [config.bind_socket()], ReadinessBoard(ready_dir, 2)).run()
"""

from __future__ import annotations

import signal
import socket

from uvicorn.config import Config
from uvicorn.supervisors.multiprocess import Multiprocess

from albert_ner.serving.logs import log
from albert_ner.serving.readiness import ReadinessBoard


class Supervisor(Multiprocess):
    """Uvicorn's `Multiprocess` that also keeps the readiness directory true (module docstring).

    Args:
        config: the uvicorn configuration (an import string app, `workers` > 1).
        sockets: the bound listening sockets the workers share.
        board: the workers' readiness directory (`ServeSettings.ready_dir`).
    """

    def __init__(self, config: Config, sockets: list[socket.socket], board: ReadinessBoard):
        super().__init__(config, sockets)
        self.board = board

    def keep_subprocess_alive(self) -> None:
        """Uvicorn's check-and-replace pass, then the files of workers that are gone removed."""
        before = list(self.processes)
        super().keep_subprocess_alive()  # replaces a dead worker at the same index
        for old, new in zip(before, self.processes):
            if new is not old:
                log(f"worker {old.pid} ended ({_how_it_ended(old.exitcode)}); started worker {new.pid} in its place")
        live = {process.pid for process in self.processes}
        # Pruned on every pass, not only after a replacement: a worker stopped by SIGTTOU or
        # replaced by SIGHUP withdraws its own file, but one killed meanwhile could not.
        for pid in self.board.prune(live):
            log(f"dropped the readiness record of worker {pid}, which no longer runs; "
                "/ping waits for its replacement's model")

    def handle_term(self) -> None:
        self._stop_accepting("SIGTERM")
        super().handle_term()

    def handle_int(self) -> None:
        self._stop_accepting("SIGINT")
        super().handle_int()

    def _stop_accepting(self, name: str) -> None:
        """Closes the parent's copy of the listening sockets (see the module docstring)."""
        if self.should_exit.is_set():
            return  # a second signal: already stopping
        log(f"{name}: no new connections; {len(self.processes)} worker(s) finish their in-flight requests")
        for sock in self.sockets:
            sock.close()


def _how_it_ended(exitcode: int | None) -> str:
    """"killed by SIGKILL", "exit status 1", ... for a log line."""
    if exitcode is None:
        return "no exit status"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"
