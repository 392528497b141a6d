"""The downloader's sha256 check: a published digest must match; without one, the first
download's digest is recorded in the cache (trust on first use) and a later, different file
is refused. Offline: archives come from a 127.0.0.1 server this file starts.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile

import pytest
from payload_server import PayloadServer

from albert_ner.checkpoints import download
from albert_ner.checkpoints.download import CheckpointError, KnownModel, digest_record, fetch_model


def _zip(text: str) -> bytes:
    """A small archive; `text` makes its content (and so its digest) differ."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("tiny/vocab.txt", text)
    return buffer.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server():
    started = PayloadServer(_zip("first"))
    yield started
    started.close()


def test_first_download_records_its_digest(tmp_path, server):
    cache = tmp_path / "cache"
    registry = {"tiny": KnownModel(server.url)}  # no published digest
    target = fetch_model("tiny", cache_dir=cache, registry=registry)
    assert (target / "tiny" / "vocab.txt").read_text() == "first"
    record = digest_record(cache / "model.zip")
    assert record == cache / "model.zip.sha256.json"
    content = json.loads(record.read_text(encoding="utf-8"))
    assert content["sha256"] == _sha256(server.payload)
    assert content["name"] == "tiny" and content["url"] == server.url
    # The same file downloaded again (archive and unpacked copy deleted) matches the record.
    (cache / "model.zip").unlink()
    _clear_unpacked(target)
    fetch_model("tiny", cache_dir=cache, registry=registry)
    assert len(server.requests) == 2


def test_a_changed_file_is_refused_on_the_next_download(tmp_path, server):
    cache = tmp_path / "cache"
    registry = {"tiny": KnownModel(server.url)}
    target = fetch_model("tiny", cache_dir=cache, registry=registry)
    first = _sha256(server.payload)
    # The archive leaves the cache (the digest record stays) and the server's file changes.
    (cache / "model.zip").unlink()
    _clear_unpacked(target)
    server.payload = _zip("second: replaced on the server")
    second = _sha256(server.payload)
    record = cache / "model.zip.sha256.json"
    with pytest.raises(CheckpointError) as err:
        fetch_model("tiny", cache_dir=cache, registry=registry)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{cache / 'model.zip'} has sha256 {second} but {first} was expected")
    assert f"delete {record} and run again" in message  # how to clear it, if the change is genuine
    # Refused means never unpacked, and the file is set aside rather than reused next time.
    assert not target.exists()
    assert not (cache / "model.zip").exists() and (cache / "model.zip.bad").read_bytes() == server.payload
    assert json.loads(record.read_text(encoding="utf-8"))["sha256"] == first
    # Deleting the record, as the message says, trusts the new file.
    record.unlink()
    target = fetch_model("tiny", cache_dir=cache, registry=registry)
    assert (target / "tiny" / "vocab.txt").read_text() == "second: replaced on the server"
    assert json.loads(record.read_text(encoding="utf-8"))["sha256"] == second


def test_an_archive_put_in_the_cache_by_hand_is_checked_against_the_record(tmp_path, server):
    cache = tmp_path / "cache"
    registry = {"tiny": KnownModel(server.url)}
    target = fetch_model("tiny", cache_dir=cache, registry=registry)
    _clear_unpacked(target)
    (cache / "model.zip").write_bytes(_zip("some other file"))
    with pytest.raises(CheckpointError, match=r"model\.zip has sha256 [0-9a-f]{64} but [0-9a-f]{64} was expected"):
        fetch_model("tiny", cache_dir=cache, registry=registry)
    assert len(server.requests) == 1


def test_a_published_digest_mismatch_is_refused(tmp_path, server):
    cache = tmp_path / "cache"
    wrong = _sha256(b"not the archive")
    registry = {"tiny": KnownModel(server.url, sha256=wrong)}
    with pytest.raises(CheckpointError) as err:
        fetch_model("tiny", cache_dir=cache, registry=registry)
    message = str(err.value)
    assert message.startswith(f"{cache / 'model.zip'} has sha256 {_sha256(server.payload)} but {wrong} was expected")
    assert "(the digest published for tiny)" in message and f"moved it to {cache / 'model.zip.bad'}" in message
    assert not (cache / "tiny").exists()
    assert not (cache / "model.zip.sha256.json").exists()  # a bad file is never recorded


def test_a_matching_published_digest_passes(tmp_path, server):
    cache = tmp_path / "cache"
    # Upper case as some publishers print it
    registry = {"tiny": KnownModel(server.url, sha256=_sha256(server.payload).upper())}
    target = fetch_model("tiny", cache_dir=cache, registry=registry)
    assert (target / "tiny" / "vocab.txt").read_text() == "first"
    # The published digest is the reference: no first-use record is needed or written.
    assert not (cache / "model.zip.sha256.json").exists()


def test_an_unreadable_record_is_an_error_that_says_what_to_delete(tmp_path, server):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "model.zip.sha256.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"digest record .*model\.zip\.sha256\.json cannot be read .*delete it"):
        fetch_model("tiny", cache_dir=cache, registry={"tiny": KnownModel(server.url)})


@pytest.mark.parametrize("name", sorted(download.KNOWN_MODELS))
def test_every_known_model_is_checked(tmp_path, name):
    """No entry skips the check: a published digest is well formed and refuses a wrong file;
    an unpublished one is recorded on first use and refuses a different file afterwards."""
    model = download.KNOWN_MODELS[name]
    archive = tmp_path / model.filename
    archive.write_bytes(_zip("first"))
    if model.sha256 is not None:
        assert re.fullmatch(r"[0-9a-fA-F]{64}", model.sha256)
        with pytest.raises(CheckpointError, match="was expected"):
            download._verify(name, model, archive)
        return
    download._verify(name, model, archive)
    assert json.loads(digest_record(archive).read_text(encoding="utf-8"))["sha256"] == _sha256(_zip("first"))
    archive.write_bytes(_zip("second"))
    with pytest.raises(CheckpointError, match="was expected"):
        download._verify(name, model, archive)


def _clear_unpacked(target):
    import shutil

    shutil.rmtree(target)
