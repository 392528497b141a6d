"""The TF Serving route on the inference container's TensorFlow (2.20), not ours (2.21).

The newest SageMaker TensorFlow Serving DLC runs TF 2.20, while training exports with 2.21.
TensorFlow 2.20 is installed into its own virtual environment (never the project's), and in it:

- `benchmarks/check_tf220.py` runs both signatures of the exported SavedModel on raw strings
  (an invalid UTF-8 sequence, an empty and a multi-window text among them) and char ids, and
  compares every output with 2.21's;
- the TF Serving package (`albert-ner export --tfs-package`) is served by the container
  stand-in (`serving/tfs_emulator.py`, run as a plain script: no albert_ner in that venv), so
  the package's own handlers (code/inference.py) answer /invocations with 2.20 executing the
  model; the answers must be the library's (entities exactly, scores within the tolerance).

The venv is kept in runs/tf220-venv (git-ignored) and reused; a machine whose package index
cannot provide TensorFlow 2.20 skips with pip's reason.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from serving_helpers import assert_same_records

from albert_ner.cli import main
from albert_ner.predict import Predictor

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / "runs" / "tf220-venv"
SPEC = "tensorflow-cpu==2.20.*"
TEXTS = ["任文博出生于拉萨，财政部发言人曾芳表示。", "", "北京" * 70, "国务院总理李鹏今天在北京会见了日本外务大臣。"]

pytestmark = pytest.mark.slow  # a TensorFlow install on the first run (a few minutes)


def quiet_env() -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)  # the venv must not see this checkout's packages
    return env


@pytest.fixture(scope="module")
def tf220_python() -> str:
    """The venv's python, with TensorFlow 2.20 (created on first use)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import check_tf220
    finally:
        sys.path.pop(0)
    try:
        python = check_tf220.ensure_venv(VENV, SPEC)
    except subprocess.CalledProcessError as err:
        pytest.skip(f"TensorFlow 2.20 could not be installed into {VENV}: {err}")
    version = subprocess.run([python, "-c", "import tensorflow as tf; print(tf.__version__)"],
                             capture_output=True, text=True, env=quiet_env(), check=True).stdout.split()[-1]
    assert version.startswith("2.20."), version
    return python


@pytest.fixture(scope="module")
def exported(trained_model, tmp_path_factory):
    """A copy of the trained model and its TF Serving package."""
    root = tmp_path_factory.mktemp("tf220")
    copy = root / "model"
    shutil.copytree(trained_model, copy)
    assert main(["export", "--model-dir", str(copy), "--tfs-package", str(root / "model.tar.gz")]) == 0
    return copy, root / "model.tar.gz"


def test_both_signatures_give_the_same_outputs_in_tensorflow_2_20(tf220_python, exported):
    model_dir, _ = exported
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "check_tf220.py"), "--model-dir", str(model_dir),
                          "--venv", str(VENV)], capture_output=True, text=True, env=quiet_env(), timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "verdict: OK" in out.stdout and "other venv: tensorflow 2.20." in out.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_the_tfs_package_answers_like_the_library_under_tensorflow_2_20(tf220_python, exported, tmp_path):
    model_dir, package = exported
    port = free_port()
    log = (tmp_path / "emulator.log").open("w")
    server = subprocess.Popen([tf220_python, str(REPO / "src" / "albert_ner" / "serving" / "tfs_emulator.py"),
                               str(package), "--port", str(port), "--quiet"],
                              stdout=log, stderr=subprocess.STDOUT, env=quiet_env(), cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            assert server.poll() is None, (tmp_path / "emulator.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(url + "/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "the emulator did not answer /ping"
            time.sleep(0.5)
        predictor = Predictor.from_model_dir(model_dir)  # TensorFlow 2.21, this process
        want = [{"text": ex.text, "entities": [e.to_json(ex.text) for e in ex.entities]} for ex in predictor.predict(TEXTS)]
        assert sum(len(r["entities"]) for r in want) > 0, "the model found no entity: nothing compared"

        status, body = post(url + "/invocations", json.dumps({"texts": TEXTS}).encode(), "application/json")
        assert status == 200, body
        assert_same_records(json.loads(body)["predictions"], want)
        status, body = post(url + "/invocations", ("\n".join(TEXTS) + "\n").encode(), "text/plain")
        assert status == 200, body
        assert_same_records([json.loads(line) for line in body.decode().splitlines()], want)
    finally:
        server.terminate()
        server.wait(30)
        log.close()
