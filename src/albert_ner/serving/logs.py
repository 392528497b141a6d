"""The server's log: one line per event on stderr, which SageMaker sends to CloudWatch."""

from __future__ import annotations

import os
import sys


def log(message: str) -> None:
    """Writes `[albert-ner serve <pid>] message` to stderr (the pid tells workers apart)."""
    print(f"[albert-ner serve {os.getpid()}] {message}", file=sys.stderr, flush=True)
