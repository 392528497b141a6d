"""The BYOC (03) and BYOS (04) notebooks' job steps: local run, image, SageMaker job, cleanup.

Local run: with Docker, SageMaker local mode (`ModelTrainer(training_mode=LOCAL_CONTAINER)`,
the real image through docker compose and the SDK's own /opt/ml layout); without Docker, the
process runner (`albert_ner.sagemaker.local_runner`), which lays out the same tree and runs the
same entrypoint as a local process. Either way the result is a directory with `model.tar.gz`.
`LocalEndpoint` serves such a model.tar.gz with the image (`serve`) through the SDK's local
session; `build_image` runs container/build_and_push.sh.

On SageMaker: `albert_ner.sagemaker.launchers` builds the ModelTrainer; the helpers here look
the job up, fetch its `model.tar.gz` and clean up (stop a running job, delete the ECR
repository). They take an `albert_ner.workshop.aws.AwsContext`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
FINISHED = ("Completed", "Failed", "Stopped")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # docker compose colours each host's log prefix


# Written by `make test` (container/docker_engine.sh) when this machine cannot run Docker.
DOCKER_STATUS_FILE = REPO_ROOT / "runs" / "docker-engine-status.txt"


def local_mode_unavailable_reason() -> str | None:
    """Why SageMaker local mode cannot run here (None when it can): it needs the SDK, a
    Docker daemon that answers and docker compose; `make test` may also have found that the
    engine or the base image could not be had (its reason is kept in DOCKER_STATUS_FILE)."""
    from albert_ner.workshop import environment

    if DOCKER_STATUS_FILE.exists():
        return DOCKER_STATUS_FILE.read_text(encoding="utf-8").strip()
    try:
        import sagemaker  # noqa: F401
    except ImportError:
        return "the SageMaker SDK is not installed"
    if not environment.docker_available():
        return "no Docker daemon answers"
    if not environment.docker_compose_available():
        return "neither `docker compose` nor `docker-compose` is installed"
    return None


@dataclasses.dataclass
class LocalRun:
    """A finished local job: `artifacts` holds model.tar.gz; `log` is the job's output."""

    artifacts: Path
    log: Path | None
    runner: str  # "local-mode" or "process-runner"

    def log_tail(self, lines: int = 12) -> str:
        if self.log is None or not self.log.exists():
            return "(the SDK printed the log above)"
        text = ANSI_ESCAPE.sub("", self.log.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(text.splitlines()[-lines:])


def run_local(
    job_dir: str | os.PathLike,
    hyperparameters: dict,
    inputs: dict,
    mode: str,
    *,
    docker: bool = False,
    image: str | None = None,
    source_dir: str | os.PathLike | None = None,
    instance_type: str = "local",
    instance_count: int = 1,
    timeout: float | None = None,
) -> LocalRun:
    """Runs the job locally; raises RuntimeError with the job's failure line when it fails.

    Args:
      job_dir: where the job's files go (replaced).
      hyperparameters: name → value (sent as strings, as SageMaker does).
      inputs: channel name → local directory.
      mode: "byoc" (the image's `train`) or "byos" (the entry script in `source_dir`).
      docker: use SageMaker local mode with `image` instead of the process runner.
    """
    job_dir = Path(job_dir).resolve()
    if docker:
        return _run_local_mode(job_dir, hyperparameters, inputs, mode, image, source_dir,
                               instance_type, instance_count)
    from albert_ner.sagemaker.local_runner import run_local_job

    result = run_local_job(job_dir, hyperparameters, inputs, timeout=timeout, mode=mode,
                           source_dir=source_dir, instance_count=instance_count)
    log = job_dir / "algo-1.log"
    if not result.ok:
        tail = LocalRun(job_dir, log, "process-runner").log_tail(20)
        raise RuntimeError(f"local {mode} job failed: {result.failure or result.exit_codes}\n{tail}")
    return LocalRun(job_dir, log, "process-runner")


LOCAL_ROLE = "arn:aws:iam::000000000000:role/local-mode"  # local mode never uses the role


def local_session(region: str | None = None, serving_port: int | None = None):
    """The SDK v3 local session: jobs and endpoints in local containers, telemetry off.

    Args:
      region: AWS region for the underlying boto3 session (local mode calls no AWS API for
        local data and a local image; the SDK only insists on having one).
      serving_port: the host port a local endpoint listens on (default 8080).
    """
    import boto3
    from sagemaker.core.local import LocalSession

    from albert_ner.sagemaker.launchers import TELEMETRY_OPT_OUT_CONFIG

    from albert_ner.workshop.aws import default_region

    region = region or default_region()
    session = LocalSession(boto_session=boto3.Session(region_name=region),
                           sagemaker_config=TELEMETRY_OPT_OUT_CONFIG)
    local = {"local_code": True}
    if serving_port:
        local["serving_port"] = serving_port
    session.config = dict(session.config or {}, local=local)
    return session


def _run_local_mode(job_dir, hyperparameters, inputs, mode, image, source_dir, instance_type, instance_count):
    """SageMaker SDK v3 local mode: `ModelTrainer(training_mode=LOCAL_CONTAINER)` runs the
    image through docker compose (one container per host, the SDK's own /opt/ml layout).

    The job's output (the SDK streams the containers' logs to stdout) goes to
    JOB_DIR/local-mode.log; the SDK leaves model.tar.gz and output.tar.gz in
    JOB_DIR/compressed_artifacts. A failed host's `output/failure` line becomes the error.
    """
    import contextlib
    import shutil

    from sagemaker.core.training.configs import Compute, InputData, SourceCode
    from sagemaker.train.model_trainer import Mode, ModelTrainer

    from albert_ner.sagemaker.contract import stringify_hyperparameters
    from albert_ner.sagemaker.source_dir import ENTRY_SCRIPT

    if not image:
        raise ValueError("local mode needs an image")
    if job_dir.exists():
        shutil.rmtree(job_dir)
    job_dir.mkdir(parents=True)  # v3 local mode needs the root to exist
    trainer = ModelTrainer(
        training_mode=Mode.LOCAL_CONTAINER,
        training_image=image,
        sagemaker_session=local_session(),
        role=LOCAL_ROLE,
        base_job_name=f"albert-ner-{mode}-local",
        compute=Compute(instance_type=instance_type, instance_count=instance_count),
        hyperparameters=stringify_hyperparameters(hyperparameters),
        source_code=SourceCode(source_dir=str(source_dir), entry_script=ENTRY_SCRIPT) if mode == "byos" else None,
        local_container_root=str(job_dir),
    )
    log = job_dir / "local-mode.log"
    started = time.time()
    error = None
    # compose names a project after the job directory; two jobs in directories of the same name
    # (two runs of a notebook) would share containers, so each job gets its own project.
    project = re.sub(r"[^a-z0-9]", "", f"albertner{job_dir.name}{os.getpid()}{int(started * 1000)}".lower())
    previous_project = os.environ.get("COMPOSE_PROJECT_NAME")
    os.environ["COMPOSE_PROJECT_NAME"] = project
    with open(log, "w", encoding="utf-8") as stream, contextlib.redirect_stdout(stream):
        try:
            trainer.train(
                input_data_config=[InputData(channel_name=name, data_source=str(Path(path).resolve()))
                                   for name, path in inputs.items()],
                wait=True,
            )
        except RuntimeError as err:  # the SDK's "Failed to run: docker compose ... exited with code N"
            error = err
        finally:
            _compose_down(job_dir, project)
            if previous_project is None:
                os.environ.pop("COMPOSE_PROJECT_NAME", None)
            else:
                os.environ["COMPOSE_PROJECT_NAME"] = previous_project
    failure = job_dir / "artifacts" / "output" / "failure"
    if error is not None or failure.exists():
        reason = failure.read_text(encoding="utf-8").strip() if failure.exists() else str(error)
        tail = LocalRun(job_dir, log, "local-mode").log_tail(20)
        raise RuntimeError(f"local-mode {mode} job failed: {reason}\n{tail}")
    with open(log, "a", encoding="utf-8") as stream:
        stream.write(f"local mode: {time.time() - started:.0f} s in all\n")
    return LocalRun(job_dir / "compressed_artifacts", log, "local-mode")


def _compose_down(job_dir: Path, project: str) -> None:
    """Removes the job's stopped containers (`up` leaves them behind)."""
    compose_file = job_dir / "docker-compose.yaml"
    if not compose_file.exists():
        return
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        command = ["docker", "compose"]
    else:
        command = ["docker-compose"]
    subprocess.run(command + ["-p", project, "-f", str(compose_file), "down"], capture_output=True, timeout=300)


class LocalEndpoint:
    """A SageMaker local endpoint: the SDK's local session serves IMAGE with a model.tar.gz
    through docker compose (`IMAGE serve`, the model extracted into /opt/ml/model).

        with LocalEndpoint("albert-ner:latest", "runs/job/model.tar.gz") as endpoint:
            endpoint.predict(["张伟在北京大学工作。"])   # [{"text": ..., "entities": [...]}]

    Entering waits until /ping answers 200 (the SDK's health check); leaving deletes the
    endpoint, which stops and removes the container. The SDK extracts the tarball in the
    directory that holds it, so it is served from a private copy.
    """

    def __init__(self, image: str, model_data: str | os.PathLike, port: int | None = None,
                 name: str = "albert-ner-local"):
        """
        Args:
          image: the serving image (container/Dockerfile).
          model_data: a local model.tar.gz (as training jobs leave it).
          port: the host port the endpoint listens on (default: a free one).
        """
        from albert_ner.sagemaker.local_runner import free_ports

        self.image, self.name = image, name
        self.model_data = Path(model_data).resolve()
        if not self.model_data.is_file():
            raise FileNotFoundError(f"model data {self.model_data} does not exist")
        self.port = port or free_ports(1)[0]
        self.session = None
        self.seconds_to_ready = None
        self._copy_dir = None

    def __enter__(self) -> "LocalEndpoint":
        import shutil
        import tempfile

        self._copy_dir = Path(tempfile.mkdtemp(prefix="albert-ner-endpoint-"))
        model_data = self._copy_dir / "model.tar.gz"
        shutil.copyfile(self.model_data, model_data)
        self.session = local_session(serving_port=self.port)
        client = self.session.sagemaker_client
        client.create_model(ModelName=self.name, PrimaryContainer={
            "Image": self.image, "ModelDataUrl": f"file://{model_data}", "Environment": {}})
        client.create_endpoint_config(EndpointConfigName=self.name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": self.name, "InitialInstanceCount": 1,
            "InstanceType": "local"}])
        started = time.time()
        try:
            client.create_endpoint(EndpointName=self.name, EndpointConfigName=self.name)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.seconds_to_ready = time.time() - started
        return self

    def predict(self, texts: list[str]) -> list[dict]:
        """Entities for each text: the endpoint's JSON predictions ({"text", "entities"})."""
        response = self.session.sagemaker_runtime_client.invoke_endpoint(
            EndpointName=self.name, Body=json.dumps({"texts": texts}, ensure_ascii=False),
            ContentType="application/json", Accept="application/json")
        body = response["Body"].read().decode("utf-8")
        if response["ResponseMetadata"]["HTTPStatusCode"] != 200:
            raise RuntimeError(f"endpoint {self.name}: HTTP {response['ResponseMetadata']['HTTPStatusCode']}: {body}")
        return json.loads(body)["predictions"]

    def __exit__(self, *exc) -> None:
        client = self.session.sagemaker_client
        endpoint = type(client)._endpoints.get(self.name)
        container = getattr(getattr(endpoint, "container", None), "container_root", None)
        client.delete_endpoint(EndpointName=self.name)
        client.delete_endpoint_config(EndpointConfigName=self.name)
        client.delete_model(ModelName=self.name)
        if container:  # the SDK stops the container but leaves it behind; compose names the
            # project after the directory it ran in
            project = re.sub(r"[^-_a-z0-9]", "", Path(container).name.lower())
            ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
                                 capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        if self._copy_dir is not None:
            import shutil

            shutil.rmtree(self._copy_dir, ignore_errors=True)


def build_image(push: bool = False, tag: str = "latest", environ: dict | None = None,
                local_base: bool = False) -> str:
    """Runs container/build_and_push.sh (with `--no-push` unless `push`); returns the image
    name it printed last (`albert-ner:TAG`, or the ECR URI after a push).

    A push goes to the ECR repository `ECR_REPOSITORY`, the name the notebook role may push to.

    Args:
      local_base: build on a Debian base bootstrapped on this machine (`--local-base`: no
        registry needed) instead of TensorFlow's GPU image from Docker Hub.
    Raises RuntimeError with the end of the build log when the build fails.
    """
    import sys

    argv = ["bash", str(REPO_ROOT / "container" / "build_and_push.sh"), "--tag", tag]
    if push:
        argv += ["--name", ECR_REPOSITORY]
    else:
        argv.append("--no-push")
    if local_base:
        argv.append("--local-base")
    env = dict(os.environ if environ is None else environ)
    env.setdefault("PYTHON", sys.executable)  # pip download for the image's Python 3.11
    started = time.time()
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-25:])
        raise RuntimeError(f"container/build_and_push.sh failed (exit {out.returncode}):\n{tail}")
    built = [line for line in out.stdout.splitlines() if line.startswith("built ")]
    print(f"{built[-1] if built else 'built'}; {time.time() - started:.0f} s with the wheel download")
    return out.stdout.strip().splitlines()[-1]


def image_present(image: str | None) -> bool:
    """True when the Docker daemon has `image` locally (no pull is attempted)."""
    if not image:
        return False
    try:
        return subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# The ECR repository of our image. AmazonSageMakerFullAccess, the usual role of a notebook
# instance, allows the push (layer upload, PutImage) and DeleteRepository only on
# arn:aws:ecr:*:*:repository/*sagemaker*: a name without "sagemaker" (e.g. "albert-ner") is
# refused at the push in 03.
ECR_REPOSITORY = "sagemaker-albert-ner"

# Written by 03 into the workspace when it created the repository, so that 06 — the last
# notebook that uses the image — deletes it in its cleanup (03's own cleanup must not: 06
# deploys from it).
CREATED_RECORD = "aws_created.json"


def ecr_repository(aws, name: str = ECR_REPOSITORY) -> tuple[str, bool]:
    """The ECR repository URI for `name`, created when missing; (uri, created)."""
    ecr = aws.client("ecr")
    try:
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        return repo["repositoryUri"], False
    except ecr.exceptions.RepositoryNotFoundException:
        return ecr.create_repository(repositoryName=name)["repository"]["repositoryUri"], True


def require_pushed_image(aws, repository_uri: str, tag: str = "latest") -> str:
    """`repository_uri:tag`, once ECR holds that image; a RuntimeError saying how to push it if not.

    A training job or endpoint given an image that was never pushed fails minutes later with
    a terse CannotPullContainerError. A notebook instance without Docker cannot push, so the
    image has to come from a machine that can.
    """
    name = repository_uri.rsplit("/", 1)[-1]
    ecr = aws.client("ecr")
    try:
        found = ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": tag}]).get("imageDetails", [])
    except (ecr.exceptions.ImageNotFoundException, ecr.exceptions.RepositoryNotFoundException):
        found = []
    if not found:
        raise RuntimeError(
            f"ECR repository {name!r} holds no image tagged {tag!r}, and this machine cannot push one "
            "(no Docker). Build and push it where Docker runs — from the repository root: "
            f"bash container/build_and_push.sh --name {name} --tag {tag} — then run this cell again."
        )
    return f"{repository_uri}:{tag}"


def record_created_repository(workspace: str | os.PathLike, name: str) -> Path:
    """Notes in the workspace that the workshop created ECR repository `name` (see CREATED_RECORD)."""
    path = Path(workspace) / CREATED_RECORD
    record = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    record["ecr_repository"] = name
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def created_repository(workspace: str | os.PathLike) -> str | None:
    """The ECR repository the workshop created (`record_created_repository`), or None."""
    path = Path(workspace) / CREATED_RECORD
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("ecr_repository")


def delete_ecr_repository(aws, name: str = ECR_REPOSITORY, workspace: str | os.PathLike | None = None) -> bool:
    """Deletes the repository and its images (cleanup); False when it did not exist.

    With `workspace`, the record that the workshop created it is removed too.
    """
    ecr = aws.client("ecr")
    try:
        ecr.delete_repository(repositoryName=name, force=True)
        deleted = True
    except ecr.exceptions.RepositoryNotFoundException:
        deleted = False
    if workspace is not None and created_repository(workspace) == name:
        (Path(workspace) / CREATED_RECORD).unlink()
    return deleted


def describe_job(aws, job_name: str) -> dict:
    """Status, failure reason, instance and the model artefact of a training job."""
    d = aws.client("sagemaker").describe_training_job(TrainingJobName=job_name)
    return {
        "job": job_name,
        "status": d.get("TrainingJobStatus"),
        "secondary_status": d.get("SecondaryStatus"),
        "failure_reason": d.get("FailureReason"),
        "instance_type": d.get("ResourceConfig", {}).get("InstanceType"),
        "instance_count": d.get("ResourceConfig", {}).get("InstanceCount"),
        "model_artifact": d.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
        "billable_seconds": d.get("BillableTimeInSeconds"),
    }


def wait_for_job(aws, job_name: str, poll_seconds: float = 30.0, timeout: float = 6 * 3600) -> dict:
    """Polls until the job is Completed, Failed or Stopped; prints each status change."""
    deadline, last = time.time() + timeout, None
    while True:
        info = describe_job(aws, job_name)
        status = (info["status"], info["secondary_status"])
        if status != last:
            print(f"{time.strftime('%H:%M:%S')} {job_name}: {status[0]} ({status[1]})", flush=True)
            last = status
        if info["status"] in FINISHED or time.time() > deadline:
            return info
        time.sleep(poll_seconds)


def fetch_model_artifact(aws, info: dict, target_dir: str | os.PathLike) -> Path | None:
    """Downloads the job's model.tar.gz into target_dir; None when there is none to fetch
    (the job did not complete, or a moto job that never really ran)."""
    uri = info.get("model_artifact")
    if info.get("status") != "Completed" or not uri or not uri.startswith("s3://"):
        return None
    bucket, _, key = uri[len("s3://"):].partition("/")
    s3 = aws.client("s3")
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except Exception:  # noqa: BLE001 - missing object or no access: nothing to fetch
        return None
    target = Path(target_dir) / "model.tar.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, key, str(target))
    return target


def stop_if_running(aws, job_name: str | None) -> str:
    """Stops a job that is still running (it is billed until it ends); returns its status."""
    if not job_name:
        return "no job"
    status = describe_job(aws, job_name)["status"]
    if status == "InProgress":
        aws.client("sagemaker").stop_training_job(TrainingJobName=job_name)
        return "stopping"
    return status


def dlc_image(region: str | None, instance_type: str) -> str | None:
    """The AWS TensorFlow training image for an instance type (a `local`/`local_gpu` type
    maps to the CPU/GPU image) in `region` (None: `aws.default_region()`); None when the
    SageMaker SDK is not installed."""
    from albert_ner.workshop.aws import default_region

    region = region or default_region()
    try:
        from albert_ner.sagemaker.launchers import tensorflow_training_image

        if instance_type.startswith("local"):
            instance_type = "ml.g5.xlarge" if instance_type == "local_gpu" else "ml.c5.xlarge"
        return tensorflow_training_image(region, instance_type)
    except ImportError:
        return None
