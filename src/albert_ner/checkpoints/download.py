"""Download cache for named public checkpoints: resume, sha256, unpack.

`fetch_model(name)` returns a directory holding the unpacked archive. The cache lives in
`$ALBERT_NER_CACHE` (default `~/.cache/albert_ner`):

  <cache>/<archive file>.part   a download in progress; the next call resumes it with an
                                HTTP Range request (a server that ignores Range restarts it)
  <cache>/<archive file>        the complete archive (may also be put there by hand)
  <cache>/<archive file>.sha256.json
                                the archive's digest as first seen (see below)
  <cache>/<name>/               the unpacked model; `.complete` marks a finished unpack

Every archive is checked before it is unpacked. Where the publisher gives a sha256
(`KnownModel.sha256`), the archive must match it. Where none is published, the first archive
seen is trusted and its digest recorded in `<archive file>.sha256.json` (trust on first use):
a later archive of that name, downloaded again after the archive was deleted from the cache,
must match the record, so a file replaced on the server or altered on the way is refused
instead of silently changing the model. Deleting the record trusts the next download anew.

Without network the call fails with one sentence saying where to put the file by hand.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from albert_ner.checkpoints.readers import CheckpointError


@dataclasses.dataclass(frozen=True)
class KnownModel:
    """A downloadable checkpoint.

    sha256: the digest the publisher gives for the archive; None when it gives none, and then
    the first download's digest is recorded in the cache and later downloads must match it.
    """

    url: str
    sha256: str | None = None
    note: str = ""

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_ALBERT_ZH = "https://storage.googleapis.com/albert_zh/"
# URLs as brightmart/albert_zh's README and google-research/bert's README publish them.
# Neither README gives a checksum for these archives, so every entry has sha256=None and is
# protected by the digest recorded at its first download (trust on first use, see `_verify`).
# Put a digest here only when its publisher states it: a guessed one would refuse the real file.
KNOWN_MODELS: dict[str, KnownModel] = {
    "albert_tiny_zh": KnownModel(_ALBERT_ZH + "albert_tiny.zip", note="brightmart, 4 layers, H 312"),
    "albert_tiny_zh_489k": KnownModel(_ALBERT_ZH + "albert_tiny_489k.zip", note="brightmart, trained longer"),
    "albert_base_zh": KnownModel(_ALBERT_ZH + "albert_base_zh.zip", note="brightmart, 12 layers, H 768"),
    "albert_base_zh_additional_36k_steps": KnownModel(
        _ALBERT_ZH + "albert_base_zh_additional_36k_steps.zip", note="brightmart; the article's checkpoint"
    ),
    "albert_large_zh": KnownModel(_ALBERT_ZH + "albert_large_zh.zip", note="brightmart, 24 layers"),
    "albert_xlarge_zh_183k": KnownModel(_ALBERT_ZH + "albert_xlarge_zh_183k.zip", note="brightmart"),
    "albert_tiny_zh_google": KnownModel(_ALBERT_ZH + "albert_tiny_zh_google.zip", note="Google ALBERT layout"),
    "albert_small_zh_google": KnownModel(_ALBERT_ZH + "albert_small_zh_google.zip", note="Google ALBERT layout"),
    "chinese_L-12_H-768_A-12": KnownModel(
        "https://storage.googleapis.com/bert_models/2018_11_03/chinese_L-12_H-768_A-12.zip",
        note="Google BERT-Base, Chinese",
    ),
}

CHUNK = 1 << 20


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """The download cache: `override`, else $ALBERT_NER_CACHE, else ~/.cache/albert_ner."""
    if override is not None:
        return Path(override)
    return Path(os.environ.get("ALBERT_NER_CACHE") or Path.home() / ".cache" / "albert_ner")


def fetch_model(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    registry: dict[str, KnownModel] | None = None,
    retries: int = 3,
    timeout: float = 60.0,
) -> Path:
    """Downloads (or reuses) and unpacks a known model; returns its directory.

    Args:
      name: a key of `registry` (default KNOWN_MODELS).
      cache_dir: see `cache_root()`.
      registry: name -> KnownModel (tests pass their own).
      retries: download attempts; each one resumes where the previous stopped.
      timeout: socket timeout in seconds.
    Raises:
      CheckpointError: unknown name, network failure (saying where to put the file by hand),
        checksum mismatch or a bad archive.
    """
    registry = KNOWN_MODELS if registry is None else registry
    if name not in registry:
        raise CheckpointError(f"unknown model name {name!r}; known: {', '.join(registry)}")
    model = registry[name]
    root = cache_root(cache_dir)
    target = root / name
    if (target / ".complete").exists():
        return target
    if target.is_dir() and any(p.name != ".complete" for p in target.iterdir()):
        return target  # unpacked by hand
    root.mkdir(parents=True, exist_ok=True)
    archive = root / model.filename
    if not archive.exists():
        _download(name, model, archive, retries, timeout)
    _verify(name, model, archive)
    _unpack(archive, target)
    return target


def _download(name: str, model: KnownModel, archive: Path, retries: int, timeout: float) -> None:
    part = archive.with_name(archive.name + ".part")
    last_error = None
    for _ in range(max(1, retries)):
        try:
            if _download_once(model.url, part, timeout):
                os.replace(part, archive)
                return
        except (urllib.error.URLError, OSError, ConnectionError) as err:
            last_error = err  # keep the .part: the next attempt resumes it
    reason = getattr(last_error, "reason", None) or last_error or "the download stayed incomplete"
    raise CheckpointError(
        f"could not download {name} from {model.url} ({reason}); download it by hand and save "
        f"it as {archive} (or unpack it into {archive.parent / name}), then run again"
    )


def _download_once(url: str, part: Path, timeout: float) -> bool:
    """One HTTP request appending to `part`; True when the file is complete."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "albert-ner"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to send: the part is already whole
            return True
        raise
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored Range and sends everything again
        total = _total_size(response, have)
        with open(part, "ab" if have else "wb") as out:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
    size = part.stat().st_size
    return total is None or size >= total


def _total_size(response, have: int) -> int | None:
    content_range = response.headers.get("Content-Range")  # "bytes 100-199/200"
    if content_range and "/" in content_range and not content_range.endswith("*"):
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return have + int(length) if length is not None else None


def digest_record(archive: Path) -> Path:
    """The JSON next to `archive` that holds its digest as first seen (trust on first use)."""
    return archive.with_name(archive.name + ".sha256.json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(name: str, model: KnownModel, archive: Path) -> None:
    """Checks `archive` against the published digest, else against the recorded one.

    Without a published digest and without a record, the archive is trusted and its digest
    recorded. A mismatch moves the archive aside (`.bad`, so it is never unpacked) and raises.
    """
    got = _sha256(archive)
    if model.sha256 is not None:
        expected = model.sha256.lower()
        if got != expected:
            bad = _set_aside(archive)
            raise CheckpointError(
                f"{archive} has sha256 {got} but {expected} was expected (the digest published for "
                f"{name}); moved it to {bad} so the next run downloads it again"
            )
        return
    record = digest_record(archive)
    if not record.exists():
        _write_record(record, name, model, got)
        return
    try:
        recorded = json.loads(record.read_text(encoding="utf-8"))
        expected = str(recorded["sha256"]).lower()
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"the digest record {record} cannot be read ({err}); delete it to trust {archive} as it is now"
        ) from None
    if got != expected:
        bad = _set_aside(archive)
        first = recorded.get("recorded", "an earlier run")
        raise CheckpointError(
            f"{archive} has sha256 {got} but {expected} was expected: the digest recorded in "
            f"{record} when {name} was first downloaded ({first}), so the file at {model.url} "
            f"changed or was altered on the way; moved it to {bad}. If the publisher really "
            f"replaced it, delete {record} and run again to trust the new file"
        )


def _set_aside(archive: Path) -> Path:
    bad = archive.with_name(archive.name + ".bad")
    os.replace(archive, bad)
    return bad


def _write_record(record: Path, name: str, model: KnownModel, sha256: str) -> None:
    # Written to a temporary name and renamed: an interrupted run never leaves half a record,
    # which the next run would refuse to read.
    content = {
        "name": name,
        "url": model.url,
        "sha256": sha256,
        "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, record)


def _unpack(archive: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    _check_member(member, archive)
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")  # "data" refuses absolute paths and ".."
        else:
            raise CheckpointError(f"{archive} is neither a zip nor a tar archive (truncated download?); delete it and run again")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
        raise CheckpointError(f"{archive} cannot be unpacked ({err}); delete it and run again") from None
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    (target / ".complete").write_text(archive.name + "\n", encoding="utf-8")


def _check_member(member: str, archive: Path) -> None:
    if member.startswith(("/", "\\")) or ".." in Path(member).parts:
        raise CheckpointError(f"{archive} contains the unsafe path {member!r}; refusing to unpack it")
