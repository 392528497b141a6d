"""The ModelTrainer launchers against a local moto server: what the CreateTrainingJob request says.

moto records the request (describe_training_job) but replaces MetricDefinitions with its own,
so the request itself is also captured with a botocore event hook.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("sagemaker.train.model_trainer")
pytest.importorskip("moto.server")

import boto3  # noqa: E402

from albert_ner.sagemaker import launchers  # noqa: E402

REGION = "us-east-1"
BUCKET = "albert-ner-test"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/albert-ner:latest"


@pytest.fixture(scope="module")
def moto_endpoint():
    """A moto server on a free loopback port, with fake credentials pointed at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    saved = dict(os.environ)
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_SESSION_TOKEN="testing", AWS_DEFAULT_REGION=REGION, SAGEMAKER_VALIDATE_ROLE="false")
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def aws(moto_endpoint):
    """A session whose CreateTrainingJob requests are recorded, and the uploaded channels."""
    boto_session = boto3.Session(region_name=REGION)
    requests = []
    boto_session.events.register("provide-client-params.sagemaker.CreateTrainingJob",
                                 lambda params, **_: requests.append(params))
    session = launchers.make_session(default_bucket=BUCKET, boto_session=boto_session)
    return session, requests


@pytest.fixture
def channels(aws, synthetic_data):
    session, _ = aws
    uris = launchers.upload_channels(session, {"training": synthetic_data["train"].parent,
                                               "validation": synthetic_data["dev"].parent},
                                     bucket=BUCKET, prefix="data")
    return uris


def describe(name: str) -> dict:
    return boto3.client("sagemaker", region_name=REGION).describe_training_job(TrainingJobName=name)


def test_data_is_uploaded_to_s3(channels):
    keys = [o["Key"] for o in boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert "data/training/train.txt" in keys
    assert channels == {"training": f"s3://{BUCKET}/data/training", "validation": f"s3://{BUCKET}/data/validation"}


def test_byoc_job_request_with_spot_checkpoints_and_two_instances(aws, channels):
    session, requests = aws
    trainer = launchers.byoc_trainer(
        IMAGE, ROLE, session, {"model_config": "micro", "max_steps": 2000, "learning_rate": 5e-5, "resume": True},
        instance_type="ml.p3.2xlarge", instance_count=2, spot=True, max_runtime_seconds=3600,
        checkpoint_s3_uri=f"s3://{BUCKET}/checkpoints/run1", output_path=f"s3://{BUCKET}/output",
    )
    job = describe(launchers.start_training(trainer, channels))

    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["HyperParameters"] == {"model_config": "micro", "max_steps": "2000", "learning_rate": "5e-05",
                                      "resume": "true"}
    assert {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]} == channels
    assert job["ResourceConfig"]["InstanceType"] == "ml.p3.2xlarge"
    assert job["ResourceConfig"]["InstanceCount"] == 2
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert job["CheckpointConfig"] == {"S3Uri": f"s3://{BUCKET}/checkpoints/run1", "LocalPath": "/opt/ml/checkpoints"}
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/output"
    [request] = requests
    metrics = {m["Name"]: m["Regex"] for m in request["AlgorithmSpecification"]["MetricDefinitions"]}
    assert {"eval_f", "entity_f1", "loss"} <= set(metrics)


def test_metric_regexes_read_the_training_log():
    import re

    log = "***** Eval results at step 2374 *****\neval_f = 0.948345\nentity_f1 = 0.9012\nloss = 10.52\n"
    found = {}
    for definition in launchers.METRIC_DEFINITIONS:
        for line in log.splitlines():
            match = re.search(definition["regex"], line)
            if match:
                found[definition["name"]] = float(match.group(1))
    assert found == {"eval_f": 0.948345, "entity_f1": 0.9012, "loss": 10.52}
    step = "step 50/2374 (2%) epoch 0.02 loss 31.2000 23.4 samples/s ETA 0:40:00"
    train = {d["name"]: re.search(d["regex"], step) for d in launchers.METRIC_DEFINITIONS}
    assert float(train["train:loss"].group(1)) == 31.2 and float(train["train:samples_per_sec"].group(1)) == 23.4
    assert train["loss"] is None  # the eval metric does not pick up training-step lines


def test_byos_job_runs_the_staged_entry_on_the_tensorflow_image(aws, channels):
    session, requests = aws
    trainer = launchers.byos_trainer(ROLE, session, {"max_steps": 10, "model_config": "micro"},
                                     instance_type="ml.g5.xlarge")
    job = describe(launchers.start_training(trainer, channels))

    image = job["AlgorithmSpecification"]["TrainingImage"]
    assert "tensorflow-training:2.21" in image and "py312" in image and "gpu" in image
    assert job["HyperParameters"] == {"max_steps": "10", "model_config": "micro"}
    names = {c["ChannelName"] for c in job["InputDataConfig"]}
    assert {"training", "validation", "code"} <= names
    assert "EnableManagedSpotTraining" not in job or not job["EnableManagedSpotTraining"]
    # The staged source dir (package copy + entry script) went to S3 as the `code` channel.
    code = next(c for c in job["InputDataConfig"] if c["ChannelName"] == "code")
    prefix = code["DataSource"]["S3DataSource"]["S3Uri"].split(f"s3://{BUCKET}/", 1)[1]
    keys = [o["Key"] for o in boto3.client("s3", region_name=REGION).list_objects_v2(
        Bucket=BUCKET, Prefix=prefix)["Contents"]]
    assert any(k.endswith("/entry_point.py") and "albert_ner" not in k for k in keys)
    assert any(k.endswith("albert_ner/sagemaker/contract.py") for k in keys)
    assert requests[-1]["AlgorithmSpecification"]["MetricDefinitions"]
    # The TensorFlow image has no jieba: the job installs the package's own dependencies, or
    # the default recipe would silently train without its lexicon.
    s3 = boto3.client("s3", region_name=REGION)
    [requirements] = [k for k in keys if k.endswith("/requirements.txt") and "albert_ner" not in k]
    assert "jieba>=0.42" in s3.get_object(Bucket=BUCKET, Key=requirements)["Body"].read().decode().split()
    drivers = next(c for c in job["InputDataConfig"] if c["ChannelName"] == "sm_drivers")
    prefix = drivers["DataSource"]["S3DataSource"]["S3Uri"].split(f"s3://{BUCKET}/", 1)[1]
    script = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/sm_train.sh")["Body"].read().decode()
    assert "requirements.txt" in script


def test_git_source_job_installs_the_package_from_the_repository(aws, channels):
    session, requests = aws
    trainer = launchers.git_trainer("https://github.com/example/albert-ner.git", ROLE, session,
                                    {"max_steps": 10}, ref="v0.1.0")
    job = describe(launchers.start_training(trainer, channels))
    assert "tensorflow-training:2.21" in job["AlgorithmSpecification"]["TrainingImage"]
    assert job["HyperParameters"] == {"max_steps": "10"}
    assert "code" not in {c["ChannelName"] for c in job["InputDataConfig"]}
    # The job's driver script (uploaded in the sm_drivers channel) installs and runs the package.
    drivers = next(c for c in job["InputDataConfig"] if c["ChannelName"] == "sm_drivers")
    prefix = drivers["DataSource"]["S3DataSource"]["S3Uri"].split(f"s3://{BUCKET}/", 1)[1]
    s3 = boto3.client("s3", region_name=REGION)
    script = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/sm_train.sh")["Body"].read().decode()
    # with its dependencies: the TensorFlow image has no jieba (the default recipe's lexicon)
    assert "pip install git+https://github.com/example/albert-ner.git@v0.1.0 &&" in script
    assert "python -m albert_ner.sagemaker.entry_point" in script
