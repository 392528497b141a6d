"""Writing files that survive a killed process, a power loss and a full disk.

The checkpoints, model-directory files and metrics the training and pretraining loops write
go through here:

  * `replacing(path, needed)` yields a temporary sibling to write; when the block succeeds
    the data is fsynced, renamed over `path` and the directory entry fsynced. A process killed
    at any moment (SIGKILL, power loss) therefore leaves the old file or the new one, never a
    truncated or empty one (a rename without the fsync can be persisted before the data).
  * `append_jsonl` adds one line to a JSON-lines log and takes a failed append back, so a full
    disk never leaves half a line that would break the next reader.
  * A write that fails for lack of space raises `DiskFullError`: one message naming the path,
    the bytes the write needed (estimated from what was being written) and the space free
    there, instead of a bare `OSError: [Errno 28]` traceback. The temporary file is removed,
    so the previous version of the file stays intact and no space is left taken.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

# A quota that is exhausted reads to the user exactly like a full disk.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}

# What np.savez adds to the raw array bytes: a zip entry and an .npy header per array. The
# estimate only has to be in the right range for the message, not exact.
NPZ_OVERHEAD_PER_ARRAY = 256


class DiskFullError(OSError):
    """A write failed because the filesystem (or the user's quota) has no space left.

    An `OSError` with errno ENOSPC, so code that handles OSError keeps working; `str()` is
    one line meant for the user.

    Attributes:
      path: what was being written.
      needed: bytes the write needed (an estimate), or None when unknown.
      free: bytes free on that filesystem when the write failed, or None when unknown.
    """

    def __init__(self, path, needed: int | None, note: str = ""):
        self.path = Path(path)
        self.needed = needed
        self.free = free_bytes(self.path)
        self.note = note
        super().__init__(errno.ENOSPC, self._message(), str(self.path))

    def _message(self) -> str:
        parts = [f"no space left on the device while writing {self.path}"]
        if self.needed is not None:
            parts.append(f"it needs about {format_bytes(self.needed)} ({self.needed:,} bytes)")
        if self.free is not None:
            parts.append(f"{format_bytes(self.free)} free there")
        message = "; ".join(parts)
        return f"{message}. {self.note}" if self.note else message

    def __str__(self) -> str:
        return self._message()


def format_bytes(n: int) -> str:
    """1536 → '1.5 KiB': a size for a message."""
    if n < 1024:
        return f"{n} bytes"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def free_bytes(path) -> int | None:
    """Bytes available to this user on the filesystem holding `path` (or its nearest existing
    parent), or None when that cannot be found out."""
    path = Path(path).absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def npz_bytes(arrays: Iterable) -> int:
    """The size np.savez will write for these arrays, roughly."""
    return sum(int(a.nbytes) + NPZ_OVERHEAD_PER_ARRAY for a in arrays)


def variable_bytes(variables: Iterable) -> int:
    """The bytes of a list of TensorFlow/Keras variables, from their shapes and dtypes."""
    import numpy as np

    total = 0
    for var in variables:
        dtype = getattr(var.dtype, "as_numpy_dtype", var.dtype)  # tf.DType or Keras' dtype name
        try:
            itemsize = np.dtype(dtype).itemsize
        except TypeError:
            itemsize = 4
        total += int(np.prod(var.shape)) * itemsize
    return total


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in _NO_SPACE


@contextlib.contextmanager
def explain_disk_full(path, needed: int | None, note: str = "") -> Iterator[None]:
    """Turns a no-space OSError raised inside the block into a `DiskFullError` about `path`.

    Callers remove their temporary files in an inner `try` first, so the free space the
    message reports is what the user really has.
    """
    try:
        yield
    except DiskFullError:
        raise
    except OSError as err:
        if not is_disk_full(err):
            raise
        raise DiskFullError(path, needed, note) from err


def fsync_path(path) -> None:
    """Flushes one file's data (or a directory's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Filesystems that cannot fsync a directory say so with these; a rename there is as durable as
# the filesystem makes it, and failing the run over it would help no one.
_NO_DIRECTORY_FSYNC = {errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES, errno.EPERM, errno.EISDIR}


def fsync_dir(directory) -> None:
    """Makes the entries of `directory` (files created or renamed in it) durable, where the
    filesystem supports it."""
    try:
        fsync_path(directory)
    except OSError as err:
        if err.errno not in _NO_DIRECTORY_FSYNC:
            raise


def fsync_tree(directory) -> None:
    """fsyncs every file and directory under `directory`, then `directory` itself."""
    for root, dirs, files in os.walk(directory):
        for name in files:
            fsync_path(os.path.join(root, name))
    for root, dirs, files in os.walk(directory, topdown=False):
        fsync_dir(root)


def temporary_sibling(path: Path) -> Path:
    """`name.tmp.ext` beside `path`: keeps the extension, which some writers (np.savez) add
    when it is missing."""
    return path.with_name(path.name + ".tmp" + path.suffix)


@contextlib.contextmanager
def replacing(path, needed: int | None) -> Iterator[Path]:
    """Yields a temporary path to write; on success it replaces `path` durably.

    Contract: when the block raises, `path` is untouched and the temporary file is gone; when
    it returns, `path` holds the new content on disk (data and directory entry fsynced). A
    no-space failure raises `DiskFullError(path, needed)`.

    Args:
      path: the file to (over)write.
      needed: the bytes the write needs (for the error message), or None.
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    kept = f"The previous {path.name} is unchanged." if path.exists() else ""
    with explain_disk_full(path, needed, kept):
        try:
            yield tmp
            fsync_path(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    fsync_dir(path.parent)


def write_bytes(path, data: bytes) -> None:
    """`path` ← `data`, atomically and durably (see `replacing`)."""
    with replacing(path, len(data)) as tmp:
        tmp.write_bytes(data)


def _json_line(record: dict) -> bytes:
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


def append_jsonl(path, record: dict) -> None:
    """Appends one JSON line to `path`, all or nothing.

    A failed write (a full disk) is truncated away before the error is raised, so the file
    never ends in half a line; the line is fsynced, since a resumed run reads this file back.
    """
    path = Path(path)
    data = _json_line(record)
    with explain_disk_full(path, len(data), f"{path.name} keeps its earlier lines."):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.fstat(fd).st_size
            try:
                written = 0
                while written < len(data):  # os.write may write only part of it
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, start)  # frees space, never needs any
                raise
        finally:
            os.close(fd)


def rewrite_jsonl(path, records: Iterable[dict]) -> None:
    """Replaces `path` with these JSON lines, atomically and durably."""
    write_bytes(path, b"".join(_json_line(r) for r in records))
