"""A full disk while writing a checkpoint, the model directory, the SavedModel or metrics.jsonl.

Expected every time: one `DiskFullError` naming the path and the bytes the write needed
(the CLI prints it as one `error:` line, exit status 1, no traceback), no temporary file left
behind, and the previous checkpoint / file / export intact.

Most tests inject the fault by making a writer raise OSError(ENOSPC) part-way; the last ones
fill a real, small tmpfs (they need root and `mount`, and are skipped with the reason
otherwise).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from albert_ner import durable_io
from albert_ner.cli import main
from albert_ner.durable_io import DiskFullError, append_jsonl
from albert_ner.model_dir import save_weights, write_json
from albert_ner.train import checkpoint as ckpt


def no_space() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def small_model(units: int = 3, inputs: int = 4):
    import keras

    keras.utils.set_random_seed(0)
    layer = keras.layers.Dense(units, name="dense")
    layer.build((None, inputs))
    optimizer = keras.optimizers.AdamW()
    optimizer.build(layer.trainable_variables)
    return layer, {"main": optimizer}


def tree_bytes(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def savez_failing_for(fragment: str, monkeypatch) -> None:
    """np.savez writes part of any file whose path contains `fragment`, then reports ENOSPC."""
    real = np.savez

    def savez(file, *args, **kwargs):
        if fragment in str(file):
            Path(file).write_bytes(b"PK\x03\x04 partial")
            raise no_space()
        return real(file, *args, **kwargs)

    monkeypatch.setattr(np, "savez", savez)


# --------------------------------------------------------------------------- injected ENOSPC
def test_checkpoint_write_on_a_full_disk_keeps_the_previous_checkpoints(tmp_path, monkeypatch):
    model, optimizers = small_model()
    ckpt.save_checkpoint(tmp_path, model, optimizers, {"step": 1})
    ckpt.save_checkpoint(tmp_path, model, optimizers, {"step": 2})
    before = tree_bytes(tmp_path)
    savez_failing_for("optimizer_main", monkeypatch)  # model.npz fits, the optimizer does not

    with pytest.raises(DiskFullError) as caught:
        ckpt.save_checkpoint(tmp_path, model, optimizers, {"step": 3})
    message = str(caught.value)
    assert message.startswith(f"no space left on the device while writing {tmp_path / 'tmp'}; it needs about ")
    expected = durable_io.npz_bytes([np.asarray(v.numpy()) for v in model.variables])
    assert caught.value.needed > expected and f"({caught.value.needed:,} bytes)" in message
    assert "free there" in message and f"The checkpoints already in {tmp_path} are unchanged." in message
    assert caught.value.errno == errno.ENOSPC  # still an OSError for callers that handle those
    assert tree_bytes(tmp_path) == before and not (tmp_path / "tmp").exists()
    monkeypatch.undo()
    assert ckpt.restore_checkpoint(tmp_path, model, optimizers) == {"step": 2}


def test_weights_on_a_full_disk_keep_the_previous_file(tmp_path, monkeypatch):
    model, _ = small_model()
    path = tmp_path / "weights.npz"
    save_weights(model, path)
    before = path.read_bytes()
    savez_failing_for("weights.npz", monkeypatch)
    with pytest.raises(DiskFullError) as caught:
        save_weights(model, path)
    assert str(caught.value).startswith(f"no space left on the device while writing {path}; it needs about ")
    assert str(caught.value).endswith("The previous weights.npz is unchanged.")
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]


def test_json_on_a_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "final_metrics.json"
    write_json(path, {"step": 1})
    real = Path.write_bytes

    def write_bytes(self, data):
        real(self, data[:3])
        raise no_space()

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    with pytest.raises(DiskFullError, match=r"final_metrics\.json; it needs about \d+ bytes"):
        write_json(path, {"step": 2, "entity_f1": 0.9})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"step": 1} and sorted(tmp_path.iterdir()) == [path]


def test_a_metrics_line_on_a_full_disk_is_taken_back_whole(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"step": 10, "loss": 1.5})
    before = path.read_bytes()
    real, calls = os.write, []

    def write(fd, data):  # the first half gets in, then the disk is full
        calls.append(1)
        if len(calls) == 1:
            return real(fd, bytes(data[: len(data) // 2]))
        raise no_space()

    monkeypatch.setattr(durable_io.os, "write", write)
    record = {"step": 20, "loss": 1.25, "entity_f1": 0.5}
    with pytest.raises(DiskFullError) as caught:
        append_jsonl(path, record)
    monkeypatch.undo()
    needed = len((json.dumps(record) + "\n").encode())
    assert f"writing {path}; it needs about {needed} bytes" in str(caught.value)
    assert path.read_bytes() == before  # no half line for the next reader to choke on


# --------------------------------------------------------------------------- through the CLI
def train_argv(data: dict, out: Path, *extra: str) -> list[str]:
    return ["train", "--train-file", str(data["train"]), "--dev-file", str(data["dev"]),
            "--output-dir", str(out), "--model-config", "micro", "--batch-size", "16",
            "--max-seq-length", "40", "--log-every", "1", "--max-steps", "2", "--eval-every", "2",
            "--seed", "5", *extra]


def assert_one_error_line(err: str, prefix: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), lines[0]
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def exported_run(synthetic_data, tmp_path_factory) -> Path:
    """A 2-step run, exported (MODEL_DIR/1 exists)."""
    out = tmp_path_factory.mktemp("exported") / "run"
    assert main(train_argv(synthetic_data, out)) == 0
    return out


def test_cli_train_with_a_full_checkpoint_disk_says_so_in_one_line(synthetic_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    savez_failing_for(str(out / "checkpoints" / "tmp"), monkeypatch)
    assert main(train_argv(synthetic_data, out, "--no-export")) == 1
    assert_one_error_line(capsys.readouterr().err,
                          f"error: no space left on the device while writing {out / 'checkpoints' / 'tmp'}; "
                          "it needs about ")
    assert not (out / "checkpoints" / "tmp").exists()


def test_cli_export_on_a_full_disk_keeps_the_previous_export(exported_run, monkeypatch, capsys):
    import tensorflow as tf

    saved_model = exported_run / "1"
    before = tree_bytes(saved_model)

    def save(module, directory, signatures=None):
        Path(directory).mkdir(parents=True)
        (Path(directory) / "saved_model.pb").write_bytes(b"partial")
        raise no_space()

    monkeypatch.setattr(tf.saved_model, "save", save)
    capsys.readouterr()
    assert main(["export", "--model-dir", str(exported_run)]) == 1
    err = capsys.readouterr().err
    assert_one_error_line(err, f"error: no space left on the device while writing {exported_run / '1.tmp'}; "
                               "it needs about ")
    assert f"The previous export {saved_model} is unchanged." in err
    assert tree_bytes(saved_model) == before and not (exported_run / "1.tmp").exists()


# --------------------------------------------------------------------------- a real full disk
@pytest.fixture
def tmpfs(tmp_path):
    """Mounts a small tmpfs; yields (directory, mount size in KiB)."""
    def mount(size_kib: int) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        target = tmp_path / f"tmpfs{size_kib}"
        target.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(target)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"mount -t tmpfs is not permitted here: {result.stderr.strip()}")
        mounted.append(target)
        return target

    mounted = []
    yield mount
    for target in mounted:
        subprocess.run(["umount", str(target)], check=False)


def test_a_real_full_tmpfs_keeps_the_previous_checkpoint(tmpfs):
    model, optimizers = small_model(units=256, inputs=256)  # ~0.75 MiB a checkpoint with AdamW's slots
    directory = tmpfs(1200) / "checkpoints"
    ckpt.save_checkpoint(directory, model, optimizers, {"step": 1})
    before = tree_bytes(directory)
    with pytest.raises(DiskFullError) as caught:
        ckpt.save_checkpoint(directory, model, optimizers, {"step": 2})
    assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == errno.ENOSPC
    assert str(caught.value).startswith(f"no space left on the device while writing {directory / 'tmp'}")
    assert caught.value.needed > 3 * 256 * 256 * 4 > caught.value.free  # the estimate is in range
    assert tree_bytes(directory) == before and not (directory / "tmp").exists()
    assert ckpt.restore_checkpoint(directory, model, optimizers) == {"step": 1}


def test_a_real_full_tmpfs_leaves_no_half_metrics_line(tmpfs):
    root = tmpfs(64)
    metrics = root / "metrics.jsonl"
    line = b'{"pad": "' + b"x" * 244 + b'"}\n'  # 256 bytes
    metrics.write_bytes(line * 16)  # exactly one 4 KiB page: one more byte needs a new page
    before = metrics.read_bytes()
    with open(root / "filler", "wb", buffering=0) as filler:  # take every page that is left
        with pytest.raises(OSError) as full:
            while True:
                filler.write(b"\0" * 4096)
        assert full.value.errno == errno.ENOSPC
    with pytest.raises(DiskFullError, match=f"writing {metrics}"):
        append_jsonl(metrics, {"step": 20, "loss": 1.0})
    assert metrics.read_bytes() == before



def model_and_optimizers_of(model_dir: Path, scratch: Path):
    """The tagger and optimizers of the run in `model_dir`, built anew from its options."""
    from albert_ner.train.loop import TrainArgs, Trainer

    args = json.loads((model_dir / "training_args.json").read_text())
    fields = {k: v for k, v in args.items() if k in TrainArgs.__dataclass_fields__}
    trainer = Trainer(TrainArgs(**dict(fields, output_dir=str(scratch))))
    return trainer.model, trainer._optimizers()


def test_cli_train_onto_a_real_full_tmpfs_is_one_line_and_keeps_the_checkpoint(synthetic_data, tmpfs, tmp_path, capsys):
    # 1.8 MiB: the run files, the best weights (~0.4 MiB) and one checkpoint (~1.1 MiB) of the
    # micro model fit; the second checkpoint does not.
    out = tmpfs(1800) / "run"
    assert main(train_argv(synthetic_data, out, "--max-steps", "4", "--no-export")) == 1
    assert_one_error_line(capsys.readouterr().err, f"error: no space left on the device while writing {out}")
    assert not (out / "checkpoints" / "tmp").exists()
    state = ckpt.restore_checkpoint(out / "checkpoints", *model_and_optimizers_of(out, tmp_path / "scratch"))
    assert state["step"] == 2  # the first checkpoint, whole
