"""The BYOC (03) and BYOS (04) notebooks' job steps: local run, image, SageMaker job, cleanup.

Local run: with Docker, SageMaker local mode (`ModelTrainer(training_mode=LOCAL_CONTAINER)`,
the real image and the SDK's own /opt/ml layout); without Docker, the process runner
(`albert_ner.sagemaker.local_runner`), which lays out the same tree and runs the same
entrypoint as a local process. Either way the result is a directory with `model.tar.gz`.

On SageMaker: `albert_ner.sagemaker.launchers` builds the ModelTrainer; the helpers here look
the job up, fetch its `model.tar.gz` and clean up (stop a running job, delete the ECR
repository). They take an `albert_ner.workshop.aws.AwsContext`.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
FINISHED = ("Completed", "Failed", "Stopped")


@dataclasses.dataclass
class LocalRun:
    """A finished local job: `artifacts` holds model.tar.gz; `log` is the job's output."""

    artifacts: Path
    log: Path | None
    runner: str  # "local-mode" or "process-runner"

    def log_tail(self, lines: int = 12) -> str:
        if self.log is None or not self.log.exists():
            return "(the SDK printed the log above)"
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


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


def _run_local_mode(job_dir, hyperparameters, inputs, mode, image, source_dir, instance_type, instance_count):
    """SageMaker SDK v3 local mode (needs Docker and docker compose)."""
    from sagemaker.core.local import LocalSession
    from sagemaker.core.training.configs import Compute, InputData, SourceCode
    from sagemaker.train.model_trainer import Mode, ModelTrainer

    from albert_ner.sagemaker.contract import stringify_hyperparameters
    from albert_ner.sagemaker.source_dir import ENTRY_SCRIPT

    if not image:
        raise ValueError("local mode needs an image")
    job_dir.mkdir(parents=True, exist_ok=True)  # v3 local mode needs the root to exist
    session = LocalSession()
    session.config = {"local": {"local_code": True}}
    trainer = ModelTrainer(
        training_mode=Mode.LOCAL_CONTAINER,
        training_image=image,
        sagemaker_session=session,
        role="arn:aws:iam::000000000000:role/local-mode",  # not used by local mode
        base_job_name=f"albert-ner-{mode}-local",
        compute=Compute(instance_type=instance_type, instance_count=instance_count),
        hyperparameters=stringify_hyperparameters(hyperparameters),
        source_code=SourceCode(source_dir=str(source_dir), entry_script=ENTRY_SCRIPT) if mode == "byos" else None,
        local_container_root=str(job_dir),
    )
    trainer.train(
        input_data_config=[InputData(channel_name=name, data_source=f"file://{Path(path).resolve()}")
                           for name, path in inputs.items()],
        wait=True,
    )
    return LocalRun(job_dir / "compressed_artifacts", None, "local-mode")


def build_image(push: bool = False, tag: str = "latest", environ: dict | None = None) -> str:
    """Runs container/build_and_push.sh (with `--no-push` unless `push`); returns the image
    name it printed last (`albert-ner:TAG`, or the ECR URI after a push)."""
    argv = ["bash", str(REPO_ROOT / "container" / "build_and_push.sh"), "--tag", tag]
    if not push:
        argv.append("--no-push")
    out = subprocess.run(argv, check=True, capture_output=True, text=True, env=environ)
    return out.stdout.strip().splitlines()[-1]


def ecr_repository(aws, name: str = "albert-ner") -> tuple[str, bool]:
    """The ECR repository URI for `name`, created when missing; (uri, created)."""
    ecr = aws.client("ecr")
    try:
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        return repo["repositoryUri"], False
    except ecr.exceptions.RepositoryNotFoundException:
        return ecr.create_repository(repositoryName=name)["repository"]["repositoryUri"], True


def delete_ecr_repository(aws, name: str = "albert-ner") -> bool:
    """Deletes the repository and its images (cleanup); False when it did not exist."""
    ecr = aws.client("ecr")
    try:
        ecr.delete_repository(repositoryName=name, force=True)
        return True
    except ecr.exceptions.RepositoryNotFoundException:
        return False


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


def dlc_image(region: str, instance_type: str) -> str | None:
    """The AWS TensorFlow training image for an instance type (a `local`/`local_gpu` type
    maps to the CPU/GPU image); None when the SageMaker SDK is not installed."""
    try:
        from albert_ner.sagemaker.launchers import tensorflow_training_image

        if instance_type.startswith("local"):
            instance_type = "ml.g5.xlarge" if instance_type == "local_gpu" else "ml.c5.xlarge"
        return tensorflow_training_image(region, instance_type)
    except ImportError:
        return None
