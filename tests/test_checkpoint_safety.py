"""Training checkpoints (`train.checkpoint`) under faults: a process killed while writing, a
newest checkpoint damaged on disk, no usable checkpoint at all, and checkpoints written by
earlier versions.

The kills are injected deterministically: a child process writes a checkpoint with one
function patched to SIGKILL itself at a chosen point of the write.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from albert_ner.cli import main
from albert_ner.train import checkpoint as ckpt

TIMING_KEYS = {"samples_per_sec", "wall_time", "eval_seconds"}


# --------------------------------------------------------------------------- a small model
def small_model(seed: int = 0):
    """A Dense layer and its built AdamW: real Keras variables (with `.path`), built in ms."""
    import keras

    keras.utils.set_random_seed(seed)
    layer = keras.layers.Dense(3, name="dense")
    layer.build((None, 4))
    optimizer = keras.optimizers.AdamW(learning_rate=1e-3)
    optimizer.build(layer.trainable_variables)
    return layer, {"main": optimizer}


def values(model, optimizers) -> list[np.ndarray]:
    variables = list(model.variables) + [v for o in optimizers.values() for v in o.variables]
    return [np.array(v.numpy()) for v in variables]


def perturb(model, optimizers, by: float) -> None:
    for v in list(model.variables) + [v for o in optimizers.values() for v in o.variables]:
        v.assign(v.numpy() + np.asarray(by).astype(np.asarray(v.numpy()).dtype))


def assert_values(model, optimizers, expected) -> None:
    for got, want in zip(values(model, optimizers), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def step_of(directory: Path, name: str) -> int:
    return json.loads((directory / name / "state.json").read_text())["step"]


# Ways of damaging one file of a checkpoint, as disks, sync tools and killed copies do.
def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble(path: Path) -> None:
    path.write_bytes(b"\x00" * 64 + os.urandom(64))


def empty(path: Path) -> None:
    path.write_bytes(b"")


def bad_json(path: Path) -> None:
    path.write_text('{"step": 12, "best_f1"', encoding="utf-8")


DAMAGE = {
    "truncated model.npz": ("model.npz", truncate, "model.npz is truncated or not an .npz file"),
    "garbled optimizer": ("optimizer_main.npz", garble, "optimizer_main.npz is damaged or not an .npz file"),
    "empty (renamed but never written) model.npz": ("model.npz", empty, "model.npz is empty (0 bytes"),
    "bad JSON": ("state.json", bad_json, "state.json is not valid JSON"),
    "missing file": ("optimizer_main.npz", Path.unlink, "optimizer_main.npz is missing"),
}


# --------------------------------------------------------------------------- rotation
def test_save_keeps_the_previous_checkpoint_and_fsyncs_before_renaming(tmp_path, monkeypatch):
    model, optimizers = small_model()
    events = []
    real_fsync, real_replace = ckpt.fsync_tree, ckpt.os.replace
    monkeypatch.setattr(ckpt, "fsync_tree", lambda d: (events.append(("fsync", Path(d).name)), real_fsync(d)))
    monkeypatch.setattr(ckpt.os, "replace", lambda a, b: (events.append(("rename", Path(a).name, Path(b).name)),
                                                          real_replace(a, b)))
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, model, optimizers, {"step": step})
    assert (step_of(tmp_path, "latest"), step_of(tmp_path, "old")) == (3, 2)
    assert not (tmp_path / "tmp").exists()
    # Each write: the new files fsynced, then old dropped, latest → old, tmp → latest.
    assert events[-3:] == [("fsync", "tmp"), ("rename", "latest", "old"), ("rename", "tmp", "latest")]


# --------------------------------------------------------------------------- SIGKILL mid-write
CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_checkpoint_safety import perturb, small_model, values
    from albert_ner.train import checkpoint as ckpt

    directory, kill_point = sys.argv[1], sys.argv[2]
    model, optimizers = small_model()
    ckpt.save_checkpoint(directory, model, optimizers, {{"step": 1}})
    np.savez(os.path.join(directory, "..", "expected_1.npz"), *values(model, optimizers))
    perturb(model, optimizers, 1.0)
    ckpt.save_checkpoint(directory, model, optimizers, {{"step": 2}})
    np.savez(os.path.join(directory, "..", "expected_2.npz"), *values(model, optimizers))
    perturb(model, optimizers, 1.0)

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if kill_point == "after the model file":  # np.savez: model.npz written, the optimizer next
        real_savez, calls = np.savez, []
        def savez(*args, **kwargs):
            if calls:
                die()
            calls.append(1)
            return real_savez(*args, **kwargs)
        np.savez = savez
    elif kill_point == "before the renames":  # every file written and fsynced
        ckpt._promote = die
    elif kill_point == "between the renames":  # latest/ already moved to old/, tmp/ not yet in
        real_replace = os.replace
        def replace(source, target):
            real_replace(source, target)
            die()
        ckpt.os.replace = replace
    ckpt.save_checkpoint(directory, model, optimizers, {{"step": 3}})
    sys.exit("not killed")
""")


@pytest.mark.parametrize("kill_point", ["after the model file", "before the renames", "between the renames"])
def test_sigkill_in_the_middle_of_a_checkpoint_write_leaves_the_previous_one_loadable(tmp_path, kill_point):
    directory = tmp_path / "checkpoints"
    script = CHILD.format(tests=str(Path(__file__).parent))
    child = subprocess.run([sys.executable, "-c", script, str(directory), kill_point],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]

    model, optimizers = small_model(seed=9)  # other initial values: the restore must set them all
    lines = []
    state = ckpt.restore_checkpoint(directory, model, optimizers, log=lines.append)
    assert state == {"step": 2}
    with np.load(tmp_path / "expected_2.npz") as expected:
        assert_values(model, optimizers, [expected[f"arr_{i}"] for i in range(len(expected.files))])
    assert lines == []  # nothing damaged: the unfinished write is simply not a checkpoint

    # The next write rotates normally from whatever the kill left.
    ckpt.save_checkpoint(directory, model, optimizers, {"step": 4})
    assert (step_of(directory, "latest"), step_of(directory, "old")) == (4, 2)


# --------------------------------------------------------------------------- damaged newest
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_newest_checkpoint_is_reported_and_the_previous_one_loads(tmp_path, damage):
    file_name, spoil, reason = DAMAGE[damage]
    model, optimizers = small_model()
    ckpt.save_checkpoint(tmp_path, model, optimizers, {"step": 10})
    expected = values(model, optimizers)
    perturb(model, optimizers, 1.0)
    ckpt.save_checkpoint(tmp_path, model, optimizers, {"step": 20})
    spoil(tmp_path / "latest" / file_name)

    fresh, fresh_optimizers = small_model(seed=9)
    lines = []
    state = ckpt.restore_checkpoint(tmp_path, fresh, fresh_optimizers, log=lines.append)
    assert state == {"step": 10}
    assert_values(fresh, fresh_optimizers, expected)
    assert lines[0].startswith(f"checkpoint: {tmp_path / 'latest'} is unusable: ")
    assert reason in lines[0]
    assert lines[1] == f"checkpoint: falling back to {tmp_path / 'old'} (step 10)"
    # The damaged one is set aside, so the next save cannot rotate it over the good one.
    assert (tmp_path / "damaged").is_dir() and not (tmp_path / "latest").exists()
    ckpt.save_checkpoint(tmp_path, fresh, fresh_optimizers, {"step": 11})
    assert (step_of(tmp_path, "latest"), step_of(tmp_path, "old")) == (11, 10)


def test_no_usable_checkpoint_is_a_clear_error_and_changes_no_variable(tmp_path):
    model, optimizers = small_model()
    ckpt.save_checkpoint(tmp_path, model, optimizers, {"step": 10})
    ckpt.save_checkpoint(tmp_path, model, optimizers, {"step": 20})
    truncate(tmp_path / "latest" / "optimizer_main.npz")  # the model file of latest/ is fine
    bad_json(tmp_path / "old" / "state.json")

    fresh, fresh_optimizers = small_model(seed=9)
    before = values(fresh, fresh_optimizers)
    with pytest.raises(ckpt.NoUsableCheckpoint) as caught:
        ckpt.restore_checkpoint(tmp_path, fresh, fresh_optimizers, log=lambda line: None)
    message = str(caught.value)
    assert f"{tmp_path / 'latest'}: optimizer_main.npz is truncated" in message
    assert f"{tmp_path / 'old'}: state.json is not valid JSON" in message
    assert "run without --resume" in message
    assert_values(fresh, fresh_optimizers, before)  # no half-load: model.npz was readable


def test_a_checkpoint_of_another_model_is_refused_before_any_assignment(tmp_path):
    import keras

    model, optimizers = small_model()
    ckpt.save_checkpoint(tmp_path, model, optimizers, {"step": 5})
    other = keras.layers.Dense(5, name="dense")
    other.build((None, 4))
    other_optimizers = {"main": keras.optimizers.AdamW()}
    other_optimizers["main"].build(other.trainable_variables)
    before = values(other, other_optimizers)
    with pytest.raises(ckpt.NoUsableCheckpoint, match="shape"):
        ckpt.restore_checkpoint(tmp_path, other, other_optimizers, log=lambda line: None)
    assert_values(other, other_optimizers, before)


def test_an_empty_checkpoint_dir_means_a_fresh_start(tmp_path):
    model, optimizers = small_model()
    assert ckpt.restore_checkpoint(tmp_path / "none", model, optimizers) is None


# --------------------------------------------------------------------------- earlier versions
def write_legacy_checkpoint(directory: Path, model, optimizers, state: dict) -> None:
    """What the previous train/checkpoint.py wrote (model.npz, optimizer_<name>.npz, state.json)."""
    directory.mkdir(parents=True)
    arrays = {f"{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
    np.savez(directory / "model.npz", __names__=np.asarray([v.path for v in model.variables]), **arrays)
    for name, optimizer in optimizers.items():
        np.savez(directory / f"optimizer_{name}.npz", *[np.asarray(v.numpy()) for v in optimizer.variables])
    (directory / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


@pytest.mark.parametrize("where", ["latest", "old"])  # old/: killed between the earlier renames
def test_checkpoints_written_by_the_earlier_version_resume(tmp_path, where):
    model, optimizers = small_model()
    perturb(model, optimizers, 0.5)
    write_legacy_checkpoint(tmp_path / where, model, optimizers, {"step": 7, "best_f1": 0.5})
    fresh, fresh_optimizers = small_model(seed=9)
    assert ckpt.restore_checkpoint(tmp_path, fresh, fresh_optimizers) == {"step": 7, "best_f1": 0.5}
    assert_values(fresh, fresh_optimizers, values(model, optimizers))


# --------------------------------------------------------------------------- through `train --resume`
def train_argv(data: dict, out: Path, *extra: str) -> list[str]:
    return ["train", "--train-file", str(data["train"]), "--dev-file", str(data["dev"]),
            "--output-dir", str(out), "--model-config", "micro", "--batch-size", "16",
            "--max-seq-length", "40", "--log-every", "10", "--max-steps", "30", "--eval-every", "10",
            "--no-export", "--seed", "5", *extra]


def metrics_without_timing(model_dir: Path) -> list[dict]:
    lines = (model_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


@pytest.fixture(scope="module")
def finished_run(synthetic_data, tmp_path_factory) -> Path:
    """A finished 30-step run: latest/ holds step 30, old/ step 20."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(train_argv(synthetic_data, out)) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated model.npz", "bad JSON"])
def test_resume_falls_back_to_the_previous_checkpoint_and_replays_exactly(
        synthetic_data, finished_run, tmp_path, capsys, damage):
    file_name, spoil, reason = DAMAGE[damage]
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    spoil(run / "checkpoints" / "latest" / file_name)

    capsys.readouterr()
    assert main(train_argv(synthetic_data, run, "--resume")) == 0
    out = capsys.readouterr().out
    assert f"checkpoint: {run / 'checkpoints' / 'latest'} is unusable: " in out and reason in out
    assert f"resume: continuing from step 20 " in out
    # Steps 21-30 replayed from the previous checkpoint end where the first run ended.
    assert metrics_without_timing(run) == metrics_without_timing(finished_run)
    with np.load(run / "checkpoints" / "latest" / "model.npz") as a, \
            np.load(finished_run / "checkpoints" / "latest" / "model.npz") as b:
        for name in a.files:
            if name != "__names__":  # Keras numbers a process's second model
                np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.slow
def test_resume_with_no_usable_checkpoint_is_one_error_line(synthetic_data, finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    for name in ("latest", "old"):
        truncate(run / "checkpoints" / name / "model.npz")
    metrics_before = (run / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert main(train_argv(synthetic_data, run, "--resume")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: no usable checkpoint in {run / 'checkpoints'}")
    assert (run / "metrics.jsonl").read_bytes() == metrics_before  # nothing started over
