"""The image (container/Dockerfile) under the SageMaker contract, in a real Docker engine.

  * `docker run IMAGE train` with the /opt/ml tree mounted trains the same model as the
    process runner (same metrics for the same seed); bad input → output/failure; SIGTERM
    stops it with 143 and a failure line;
  * `docker run IMAGE serve` answers /ping and /invocations with what `albert-ner predict`
    says, and stops at once on SIGTERM;
  * SageMaker SDK v3 local mode trains with the image through docker compose and a local
    endpoint serves the result.

Needs a Docker daemon and the image ($ALBERT_NER_IMAGE, default albert-ner:latest, built by
`make image`). Without a daemon every test here is skipped with the reason; with a daemon
but no image the first test builds it (container/build_and_push.sh --local-base).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from albert_ner.sagemaker.local_runner import LocalJob, run_local_job

from conftest import REPO
from serving_helpers import assert_same_records
from test_sagemaker_local import extract, metrics

IMAGE = os.environ.get("ALBERT_NER_IMAGE", "albert-ner:latest")
# `make test` writes why the engine could not start here (see container/docker_engine.sh).
ENGINE_STATUS = REPO / "runs" / "docker-engine-status.txt"
DOCKER_RUN_OPTIONS = ["--cpus", "1"]  # a shared 2-core machine: leave a core to the rest
TEXTS = ["张伟在北京大学工作。", "国务院总理李鹏今天在北京会见了日本外务大臣。", "上海是中国的城市。"]

# Short: the point is the same numbers in and out of the container, not a good model.
HYPERPARAMETERS = {
    "model_config": "micro",
    "max_steps": "20",
    "eval_every": "10",
    "checkpoint_every": "10",
    "log_every": "10",
    "batch_size": "16",
    "max_seq_length": "40",
    "seed": "11",
}


def docker_unavailable_reason() -> str | None:
    """Why Docker cannot be used here, or None when its daemon answers."""
    if ENGINE_STATUS.exists():  # `make test` found no engine, or could not bootstrap the base
        return ENGINE_STATUS.read_text(encoding="utf-8").strip()
    if shutil.which("docker") is None:
        reason = "no docker CLI on PATH"
    else:
        try:
            info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
            if info.returncode == 0:
                return None
            reason = "the Docker daemon does not answer: " + (info.stderr.strip().splitlines() or ["?"])[-1]
        except subprocess.TimeoutExpired:
            reason = "`docker info` timed out"
    return reason


@pytest.fixture(scope="module")
def image() -> str:
    reason = docker_unavailable_reason()
    if reason:
        print(f"\nSKIPPED container tests: {reason}", file=sys.stderr)
        pytest.skip(f"container tests need Docker: {reason}")
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        name, _, tag = IMAGE.partition(":")
        build = subprocess.run(
            ["bash", str(REPO / "container" / "build_and_push.sh"), "--no-push", "--local-base",
             "--name", name, "--tag", tag or "latest"],
            capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable))
        assert build.returncode == 0, f"image build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    return IMAGE


@pytest.fixture(scope="module")
def channels(synthetic_data) -> dict:
    return {"training": synthetic_data["train"].parent}


@pytest.fixture(scope="module")
def process_job(channels, tmp_path_factory):
    """The reference: the same job run by the process runner (no container)."""
    job_dir = tmp_path_factory.mktemp("process")
    result = run_local_job(job_dir, HYPERPARAMETERS, channels, timeout=300)
    assert result.ok, (job_dir / "algo-1.log").read_text()[-3000:]
    return extract(result.model_tar, job_dir / "model_extracted")


def log_of(job_dir: Path) -> str:
    return (job_dir / "algo-1.log").read_text(encoding="utf-8", errors="replace")


def test_the_image_holds_this_checkout_s_code(image):
    """Every module installed in the image is the repository's own: a stale package layer
    (BuildKit reuses a RUN whose bind-mounted source changed, unless SOURCE_DIGEST moves) would
    make every other test here compare today's code with yesterday's."""
    import hashlib

    script = ("import hashlib, pathlib, albert_ner; root = pathlib.Path(albert_ner.__file__).parent; "
              "print('\\n'.join(f'{p.relative_to(root)} {hashlib.sha256(p.read_bytes()).hexdigest()}' "
              "for p in sorted(root.rglob('*.py'))))")
    out = subprocess.run(["docker", "run", "--rm", "--entrypoint", "python", image, "-c", script],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    root = REPO / "src" / "albert_ner"
    here = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.py"))}
    inside = dict(line.split(" ") for line in out.stdout.strip().splitlines())
    stale = sorted(name for name in here if inside.get(name) != here[name])
    assert not stale, f"the image {image} has other code than this checkout in {stale[:5]} (rebuild: make image)"


@pytest.mark.slow
def test_docker_run_train_matches_the_process_runner(image, channels, process_job, tmp_path):
    job = LocalJob(tmp_path / "job", HYPERPARAMETERS, channels, image=image,
                   docker_options=DOCKER_RUN_OPTIONS)
    result = job.start().wait(timeout=600)
    assert result.ok, log_of(tmp_path / "job")[-3000:]
    assert job.processes["algo-1"].args[:3] == ["docker", "run", "--rm"]
    assert job.processes["algo-1"].args[-2:] == [image, "train"]
    assert "model dir /opt/ml/model" in log_of(tmp_path / "job")  # it ran inside the image
    model = extract(result.model_tar, tmp_path / "model")
    assert (model / "1" / "saved_model.pb").exists() and (model / "labels.json").exists()
    assert [r["step"] for r in metrics(model)] == [10, 20]
    assert metrics(model) == metrics(process_job)
    outputs = extract(result.output_tar, tmp_path / "output")
    assert (outputs / "train.log").exists() and (outputs / "metrics.jsonl").exists()


def test_docker_run_train_writes_output_failure_on_bad_input(image, channels, tmp_path):
    job = LocalJob(tmp_path / "job", dict(HYPERPARAMETERS, max_steps="many"), channels, image=image,
                   docker_options=DOCKER_RUN_OPTIONS)
    result = job.start().wait(timeout=300)
    assert result.exit_codes == {"algo-1": 1}, log_of(tmp_path / "job")[-3000:]
    assert result.failures["algo-1"] == "hyperparameter max_steps: expected an integer, got 'many'"
    assert result.model_tar is None


@pytest.mark.slow
def test_sigterm_stops_training_with_a_failure_line(image, channels, tmp_path):
    job = LocalJob(tmp_path / "job", dict(HYPERPARAMETERS, max_steps="100000"), channels, image=image,
                   docker_options=DOCKER_RUN_OPTIONS).start()
    deadline = time.time() + 300
    while "step 10/" not in log_of(tmp_path / "job"):
        assert job.poll()["algo-1"] is None, log_of(tmp_path / "job")[-3000:]
        assert time.time() < deadline, "training did not start"
        time.sleep(0.5)
    stopped_at = time.time()
    job.kill(signal.SIGTERM)  # what StopTrainingJob and `docker stop` send
    result = job.wait(timeout=60)
    assert time.time() - stopped_at < 10, "SIGTERM was not acted on (PID 1 ignores unhandled signals)"
    assert result.exit_codes == {"algo-1": 128 + signal.SIGTERM}
    assert "SIGTERM" in result.failures["algo-1"]


def http(method: str, url: str, body: bytes | None = None, content_type: str | None = None):
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": content_type} if content_type else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, ConnectionError):
        return None, b""


def cli_predictions(model_dir: Path, texts: list[str]) -> list[dict]:
    """`albert-ner predict` on the host: one JSON line per input line."""
    out = subprocess.run([sys.executable, "-m", "albert_ner.cli", "predict", "--model-dir", str(model_dir)],
                         input="\n".join(texts) + "\n", capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


@pytest.mark.slow
def test_docker_run_serve_answers_like_albert_ner_predict(image, trained_model):
    name = f"albert-ner-serve-test-{os.getpid()}"
    subprocess.run(["docker", "run", "-d", "--name", name, *DOCKER_RUN_OPTIONS,
                    "-p", "127.0.0.1::8080", "-v", f"{trained_model}:/opt/ml/model:ro", image, "serve"],
                   check=True, capture_output=True)
    try:
        port = subprocess.run(["docker", "port", name, "8080"], check=True, capture_output=True,
                              text=True).stdout.split()[0].rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while http("GET", f"{base}/ping")[0] != 200:
            running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name],
                                     capture_output=True, text=True).stdout.strip()
            assert running == "true" and time.time() < deadline, \
                subprocess.run(["docker", "logs", name], capture_output=True, text=True).stderr[-3000:]
            time.sleep(1)
        status, body = http("POST", f"{base}/invocations", json.dumps({"texts": TEXTS}).encode(),
                            "application/json")
        assert status == 200, body
        served = json.loads(body)["predictions"]
        expected = cli_predictions(trained_model, TEXTS)
        assert_same_records(served, expected)  # another TensorFlow build: scores within the tolerance
        assert any(p["entities"] for p in expected), "the model found no entity: nothing compared"

        started = time.time()
        subprocess.run(["docker", "stop", "--time", "30", name], check=True, capture_output=True)
        assert time.time() - started < 15, "serve did not stop promptly on SIGTERM"
        code = subprocess.run(["docker", "inspect", "-f", "{{.State.ExitCode}}", name],
                              capture_output=True, text=True).stdout.strip()
        assert code == "0"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@pytest.mark.slow
def test_sagemaker_sdk_local_mode_trains_and_serves(image, channels, process_job, tmp_path, monkeypatch):
    pytest.importorskip("sagemaker")
    from albert_ner.workshop import jobs

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    run = jobs.run_local(tmp_path / "job", HYPERPARAMETERS, channels, mode="byoc", docker=True, image=image)
    assert run.runner == "local-mode"
    log = run.log.read_text(encoding="utf-8")
    assert "exited with code 0" in log and "model dir /opt/ml/model" in log  # compose's log
    model = extract(run.artifacts / "model.tar.gz", tmp_path / "model")
    assert metrics(model) == metrics(process_job)
    with open(tmp_path / "job" / "docker-compose.yaml", encoding="utf-8") as f:
        compose = f.read()
    assert image in compose and "/opt/ml/model" in compose

    with jobs.LocalEndpoint(image, run.artifacts / "model.tar.gz") as endpoint:
        served = endpoint.predict(TEXTS)
    assert [p["text"] for p in served] == TEXTS
    assert served == cli_predictions(model, TEXTS)


def test_sagemaker_sdk_local_mode_reports_the_failure_line(image, channels, tmp_path, monkeypatch):
    pytest.importorskip("sagemaker")
    from albert_ner.workshop import jobs

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(RuntimeError, match="hyperparameter max_steps: expected an integer, got 'many'"):
        jobs.run_local(tmp_path / "job", dict(HYPERPARAMETERS, max_steps="many"), channels, mode="byoc",
                       docker=True, image=image)
    failure = tmp_path / "job" / "artifacts" / "output" / "failure"  # the host's output/, as collected
    assert failure.read_text(encoding="utf-8").strip() == "hyperparameter max_steps: expected an integer, got 'many'"
