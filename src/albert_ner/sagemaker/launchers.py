"""Starting SageMaker training jobs with the SageMaker Python SDK v3 (`ModelTrainer`).

Needs the optional extra: `pip install "albert-ner[sagemaker]"`. Three ways to ship the code,
as in the article:

  * BYOC  `byoc_trainer(image_uri=...)`: our own image (container/Dockerfile), whose `train`
          entrypoint reads the /opt/ml tree;
  * BYOS  `byos_trainer()`: the AWS TensorFlow 2.21 training image plus a staged source dir
          (a copy of this package and its entry script — source_dir.py);
  * git   `git_trainer(repo=...)`: the same image; the job pip-installs the package from a git
          repository and runs the same entry (the article's `git_config` variant).

All three take the same job options (instance type and count, spot with checkpoints, output
path) and report the same metrics, regexed from the lines the training loop prints
(`eval_f = 0.9483`, `entity_f1 = ...`, `loss = ...`).

    session = make_session(region="us-east-1", default_bucket="my-bucket")
    channels = upload_channels(session, {"training": "data/msra"})  # train/dev/test.txt → S3
    trainer = byoc_trainer(image_uri, role, session, {"max_steps": 2000}, spot=True)
    job_name = start_training(trainer, channels, wait=False)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from albert_ner.sagemaker.contract import stringify_hyperparameters

FRAMEWORK_VERSION = "2.21"
PY_VERSION = "py312"
DEFAULT_INSTANCE_TYPE = "ml.g5.xlarge"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"

_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
# CloudWatch metrics regexed from the training log (see train/loop.py::_evaluate_and_record).
# `\b` keeps `loss = ` from matching inside a longer name.
METRIC_DEFINITIONS = [
    {"name": name, "regex": rf"\b{name} = {_NUMBER}"}
    for name in ("eval_f", "eval_precision", "eval_recall", "entity_f1", "entity_precision",
                 "entity_recall", "loss")
] + [
    {"name": "train:loss", "regex": rf"^step \d+/\d+ .*?loss {_NUMBER}"},
    {"name": "train:samples_per_sec", "regex": rf"^step \d+/\d+ .*? {_NUMBER} samples/s"},
]

# The SDK reads this from its config; opting out keeps it from calling home on every call.
TELEMETRY_OPT_OUT_CONFIG = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


def sdk_config_with_telemetry_off() -> dict:
    """The SDK's own configuration (admin and user config.yaml, with their
    SAGEMAKER_*_CONFIG_OVERRIDE paths) plus TelemetryOptOut.

    A `sagemaker_config=` given to Session replaces what the SDK would load, so passing only
    the telemetry flag dropped an account's defaults (VPC, KMS keys, role, tags): they are
    loaded here and the flag is added to them.
    """
    import copy

    from sagemaker.core.config.config import load_sagemaker_config

    config = copy.deepcopy(load_sagemaker_config() or {})
    config.setdefault("SchemaVersion", TELEMETRY_OPT_OUT_CONFIG["SchemaVersion"])
    modules = config.setdefault("SageMaker", {}).setdefault("PythonSDK", {}).setdefault("Modules", {})
    modules["TelemetryOptOut"] = True
    return config


def make_session(region: str | None = None, default_bucket: str | None = None, boto_session=None):
    """A SageMaker session with telemetry off, keeping the SDK's config.yaml defaults.

    Give `default_bucket` explicitly when you can: without it the SDK derives one from an STS
    call. The endpoint follows AWS_ENDPOINT_URL (e.g. a local moto server in tests).
    """
    import boto3
    from sagemaker.core.helper.session_helper import Session

    boto_session = boto_session or boto3.Session(region_name=region)
    return Session(boto_session=boto_session, default_bucket=default_bucket,
                   sagemaker_config=sdk_config_with_telemetry_off())


def tensorflow_training_image(region: str, instance_type: str = DEFAULT_INSTANCE_TYPE,
                              version: str = FRAMEWORK_VERSION, py_version: str = PY_VERSION) -> str:
    """The ECR URI of the AWS TensorFlow training image (DLC) for the region and instance type."""
    from sagemaker.core import image_uris

    return image_uris.retrieve(framework="tensorflow", region=region, version=version,
                               py_version=py_version, instance_type=instance_type,
                               image_scope="training")


def upload_channels(session, channels: Mapping[str, str | Path], bucket: str | None = None,
                    prefix: str = "albert-ner/data") -> dict[str, str]:
    """Uploads every channel directory to S3; returns {channel name: s3 uri}.

    `channels` maps channel names to local directories: "training" (which may hold
    train/dev/test.txt together, the article's layout), "validation" (the better habit: its
    dev file is then used for evaluation) and, when fine-tuning from a local checkpoint,
    "pretrained" — `workshop.training.job_inputs` gives all of them, and a job reads each at
    /opt/ml/input/data/<name>. A channel left out here is missing in the job.
    """
    bucket = bucket or session.default_bucket()
    missing = [f"{name}: {path}" for name, path in channels.items() if not Path(path).exists()]
    if missing:
        raise FileNotFoundError("channel directories do not exist: " + "; ".join(missing))
    return {
        name: session.upload_data(path=str(path), bucket=bucket, key_prefix=f"{prefix}/{name}")
        for name, path in channels.items()
    }


def _job_options(
    session,
    instance_type: str,
    instance_count: int,
    volume_size_gb: int,
    max_runtime_seconds: int,
    spot: bool,
    max_wait_seconds: int | None,
    checkpoint_s3_uri: str | None,
    output_path: str | None,
    environment: dict | None,
) -> dict:
    """The ModelTrainer arguments every launcher shares."""
    from sagemaker.core.training.configs import CheckpointConfig, Compute, OutputDataConfig, StoppingCondition

    compute = Compute(instance_type=instance_type, instance_count=instance_count,
                      volume_size_in_gb=volume_size_gb, enable_managed_spot_training=spot or None)
    stopping = StoppingCondition(max_runtime_in_seconds=max_runtime_seconds)
    checkpoint = None
    if spot:
        # Spot capacity may vanish: wait for it at most max_wait, and keep checkpoints in S3 so
        # the restarted job resumes (the contract passes --resume when it finds one).
        stopping.max_wait_time_in_seconds = max_wait_seconds or 2 * max_runtime_seconds
        checkpoint_s3_uri = checkpoint_s3_uri or f"s3://{session.default_bucket()}/albert-ner/checkpoints"
    if checkpoint_s3_uri:
        checkpoint = CheckpointConfig(s3_uri=checkpoint_s3_uri, local_path=CHECKPOINT_LOCAL_PATH)
    options = {
        "sagemaker_session": session,
        "compute": compute,
        "stopping_condition": stopping,
        "checkpoint_config": checkpoint,
        "environment": dict(environment or {}),
    }
    if output_path:
        options["output_data_config"] = OutputDataConfig(s3_output_path=output_path)
    return {k: v for k, v in options.items() if v is not None}


def _finish(trainer):
    from sagemaker.core.training.configs import MetricDefinition

    return trainer.with_metric_definitions([MetricDefinition(**m) for m in METRIC_DEFINITIONS])


def byoc_trainer(image_uri: str, role: str, session, hyperparameters: dict, *,
                 base_job_name: str = "albert-ner-byoc", instance_type: str = DEFAULT_INSTANCE_TYPE,
                 instance_count: int = 1, volume_size_gb: int = 30, max_runtime_seconds: int = 86400,
                 spot: bool = False, max_wait_seconds: int | None = None,
                 checkpoint_s3_uri: str | None = None, output_path: str | None = None,
                 environment: dict | None = None):
    """A ModelTrainer running our own image (built by container/build_and_push.sh)."""
    from sagemaker.train.model_trainer import ModelTrainer

    trainer = ModelTrainer(
        training_image=image_uri, role=role, base_job_name=base_job_name,
        hyperparameters=stringify_hyperparameters(hyperparameters),
        **_job_options(session, instance_type, instance_count, volume_size_gb, max_runtime_seconds,
                       spot, max_wait_seconds, checkpoint_s3_uri, output_path, environment),
    )
    return _finish(trainer)


def byos_trainer(role: str, session, hyperparameters: dict, *, source_dir: str | Path | None = None,
                 requirements: list[str] | None = None, image_uri: str | None = None,
                 framework_version: str = FRAMEWORK_VERSION, py_version: str = PY_VERSION,
                 base_job_name: str = "albert-ner-byos", instance_type: str = DEFAULT_INSTANCE_TYPE,
                 instance_count: int = 1, volume_size_gb: int = 30, max_runtime_seconds: int = 86400,
                 spot: bool = False, max_wait_seconds: int | None = None,
                 checkpoint_s3_uri: str | None = None, output_path: str | None = None,
                 environment: dict | None = None):
    """A ModelTrainer running the entry script on the AWS TensorFlow training image.

    `source_dir` defaults to a freshly staged copy of this package (source_dir.py).
    """
    import tempfile

    from sagemaker.core.training.configs import SourceCode
    from sagemaker.train.model_trainer import ModelTrainer

    from albert_ner.sagemaker.source_dir import ENTRY_SCRIPT, stage_source_dir

    if source_dir is None:
        source_dir = stage_source_dir(Path(tempfile.mkdtemp(prefix="albert-ner-source-")) / "source",
                                      requirements=requirements)
    elif requirements:
        raise ValueError("requirements: give them to stage_source_dir() when passing your own source_dir")
    has_requirements = (Path(source_dir) / "requirements.txt").exists()
    image_uri = image_uri or tensorflow_training_image(session.boto_region_name, instance_type,
                                                       framework_version, py_version)
    trainer = ModelTrainer(
        training_image=image_uri, role=role, base_job_name=base_job_name,
        source_code=SourceCode(source_dir=str(source_dir), entry_script=ENTRY_SCRIPT,
                               requirements="requirements.txt" if has_requirements else None),
        hyperparameters=stringify_hyperparameters(hyperparameters),
        **_job_options(session, instance_type, instance_count, volume_size_gb, max_runtime_seconds,
                       spot, max_wait_seconds, checkpoint_s3_uri, output_path, environment),
    )
    return _finish(trainer)


def git_trainer(repo: str, role: str, session, hyperparameters: dict, *, ref: str = "main",
                image_uri: str | None = None, base_job_name: str = "albert-ner-git",
                instance_type: str = DEFAULT_INSTANCE_TYPE, instance_count: int = 1,
                volume_size_gb: int = 30, max_runtime_seconds: int = 86400, spot: bool = False,
                max_wait_seconds: int | None = None, checkpoint_s3_uri: str | None = None,
                output_path: str | None = None, environment: dict | None = None):
    """A ModelTrainer whose job installs the package from a git repository, then trains.

    SDK v3 has no `git_config`; the job clones instead (`pip install git+REPO@REF`), so the
    code is exactly a commit of the repository. pip installs the package's own dependencies
    too (jieba, which the AWS TensorFlow image lacks: without it the default recipe loses its
    lexicon); TensorFlow is not among them, so the image's own stays.
    Pretrained weights still come in a channel (or `init_checkpoint` naming an S3-synced path).
    """
    import shlex

    from sagemaker.core.training.configs import SourceCode
    from sagemaker.train.model_trainer import ModelTrainer

    # The SDK splits `command` on whitespace, so the requirement must contain none.
    spec = shlex.quote(f"git+{repo}@{ref}")
    command = f"pip install {spec} && python -m albert_ner.sagemaker.entry_point"
    image_uri = image_uri or tensorflow_training_image(session.boto_region_name, instance_type)
    trainer = ModelTrainer(
        training_image=image_uri, role=role, base_job_name=base_job_name,
        source_code=SourceCode(command=command),
        hyperparameters=stringify_hyperparameters(hyperparameters),
        **_job_options(session, instance_type, instance_count, volume_size_gb, max_runtime_seconds,
                       spot, max_wait_seconds, checkpoint_s3_uri, output_path, environment),
    )
    return _finish(trainer)


def start_training(trainer, channels: dict[str, str], wait: bool = False, logs: bool = False) -> str:
    """Submits the job with the given channels (name → S3 URI); returns the job name."""
    from sagemaker.core.training.configs import InputData

    inputs = [InputData(channel_name=name, data_source=uri) for name, uri in channels.items()]
    trainer.train(input_data_config=inputs, wait=wait, logs=logs)
    return trainer._latest_training_job.training_job_name


def default_role() -> str:
    """The execution role from SAGEMAKER_ROLE (what notebooks pass around)."""
    role = os.environ.get("SAGEMAKER_ROLE")
    if not role:
        raise ValueError("set SAGEMAKER_ROLE to the SageMaker execution role ARN")
    return role
