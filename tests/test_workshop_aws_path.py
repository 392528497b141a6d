"""The real-account path of notebooks 03 and 06 against moto: what AWS would refuse or lose.

- the ECR repository is one the notebook instance's usual role may push to and delete, judged
  by the AmazonSageMakerFullAccess policy document that moto ships (moto itself checks most
  services against resource "*" only, so the ARN is matched here);
- a job gets every channel `job_inputs` names, the pretrained checkpoint included;
- without a pushed image the notebook stops with the push command instead of submitting a job;
- the repository 03 created survives 03's cleanup and is deleted by 06's.
"""

from __future__ import annotations

import fnmatch
import json

import pytest

pytest.importorskip("moto")
pytest.importorskip("boto3")

from albert_ner.sagemaker import launchers  # noqa: E402
from albert_ner.workshop import jobs, training  # noqa: E402
from albert_ner.workshop.aws import connect  # noqa: E402

# What pushing an image and deleting the repository take (docker push + the cleanup cell).
PUSH_AND_DELETE = ("ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
                   "ecr:BatchCheckLayerAvailability", "ecr:PutImage", "ecr:DeleteRepository")


def managed_policy(name: str) -> dict:
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    return json.loads(aws_managed_policies_data)[name]["Document"]


def allowed(policy: dict, action: str, resource: str) -> bool:
    """IAM's verdict for one action on one ARN under one identity policy (no conditions used:
    a statement with a Condition is not counted as allowing)."""

    def matches(patterns, value):
        patterns = [patterns] if isinstance(patterns, str) else patterns
        return any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in patterns)

    verdict = False
    for statement in policy["Statement"]:
        if not (matches(statement.get("Action", []), action) and matches(statement.get("Resource", []), resource)):
            continue
        if statement["Effect"] == "Deny":
            return False
        verdict = verdict or "Condition" not in statement
    return verdict


def test_the_ecr_repository_is_one_the_notebook_role_may_push_to_and_delete():
    policy = managed_policy("AmazonSageMakerFullAccess")

    def arn(name):
        return f"arn:aws:ecr:us-east-1:123456789012:repository/{name}"

    assert all(allowed(policy, action, arn(jobs.ECR_REPOSITORY)) for action in PUSH_AND_DELETE)
    refused = [a for a in PUSH_AND_DELETE if not allowed(policy, a, arn("albert-ner"))]
    assert "ecr:PutImage" in refused and "ecr:DeleteRepository" in refused  # the old name
    assert allowed(policy, "ecr:CreateRepository", arn("albert-ner"))  # creating was never the problem


@pytest.fixture
def aws(monkeypatch):
    # connect() sets AWS_* variables for the process: register them with monkeypatch first so
    # they are restored afterwards.
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SAGEMAKER_ROLE",
                "AWS_REGION", "AWS_DEFAULT_REGION", "SAGEMAKER_VALIDATE_ROLE", "SAGEMAKER_TELEMETRY_OPT_OUT"):
        monkeypatch.setenv(key, "placeholder")
        monkeypatch.delenv(key)
    context = connect(True, "moto", "us-east-1")
    yield context
    context.close()


def test_a_job_gets_every_channel_the_pretrained_checkpoint_included(aws, tmp_path):
    for name in ("training", "validation", "checkpoint"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.txt").write_text(name)
    options = training.train_options("micro", 30, 3, 10, 8, 40, None, 5)
    options["init_checkpoint"] = str(tmp_path / "checkpoint")
    hyperparameters, inputs = training.job_inputs(
        {"training": str(tmp_path / "training"), "validation": str(tmp_path / "validation")}, options)
    bucket = aws.bucket("workshop-bucket")
    uris = launchers.upload_channels(aws.session(bucket), inputs, bucket=bucket, prefix="ws/data")
    # The job reads init_checkpoint from the pretrained channel: it must be uploaded with the data.
    assert hyperparameters["init_checkpoint"] == "/opt/ml/input/data/pretrained"
    assert set(uris) == {"training", "validation", "pretrained"}
    keys = {o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=bucket)["Contents"]}
    assert "ws/data/pretrained/checkpoint.txt" in keys

    with pytest.raises(FileNotFoundError, match="pretrained: .*nowhere"):
        launchers.upload_channels(aws.session(bucket), dict(inputs, pretrained=str(tmp_path / "nowhere")),
                                  bucket=bucket)


def test_without_a_pushed_image_the_notebook_stops_with_the_push_command(aws):
    uri, created = jobs.ecr_repository(aws)
    assert created and uri.endswith("/" + jobs.ECR_REPOSITORY)
    with pytest.raises(RuntimeError) as error:
        jobs.require_pushed_image(aws, uri, "latest")
    assert f"build_and_push.sh --name {jobs.ECR_REPOSITORY} --tag latest" in str(error.value)
    assert "no Docker" in str(error.value)

    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                           "digest": "sha256:" + "0" * 64}, "layers": []}
    aws.client("ecr").put_image(repositoryName=jobs.ECR_REPOSITORY, imageManifest=json.dumps(manifest),
                                imageTag="latest")
    assert jobs.require_pushed_image(aws, uri, "latest") == f"{uri}:latest"
    with pytest.raises(RuntimeError, match="no image tagged 'v2'"):
        jobs.require_pushed_image(aws, uri, "v2")


def test_the_repository_03_created_outlives_03_and_06_deletes_it(aws, tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    assert jobs.created_repository(workspace) is None
    _, created = jobs.ecr_repository(aws)
    assert created
    jobs.record_created_repository(workspace, jobs.ECR_REPOSITORY)  # 03, on a real account
    # 06, a later process: it did not create the repository, the record says the workshop did.
    assert jobs.ecr_repository(aws)[1] is False
    assert jobs.created_repository(workspace) == jobs.ECR_REPOSITORY
    assert jobs.delete_ecr_repository(aws, workspace=workspace)
    assert jobs.created_repository(workspace) is None
    assert not aws.client("ecr").describe_repositories()["repositories"]


def test_pushing_from_the_notebook_targets_the_allowed_repository(monkeypatch):
    calls = []

    def fake_run(argv, **kwargs):
        calls.append(argv)

        class Done:
            returncode, stdout, stderr = 0, "built x\n123.dkr.ecr.us-east-1.amazonaws.com/x:latest\n", ""
        return Done()

    monkeypatch.setattr(jobs.subprocess, "run", fake_run)
    jobs.build_image(push=True)
    jobs.build_image(push=False)
    assert calls[0][calls[0].index("--name") + 1] == jobs.ECR_REPOSITORY and "--no-push" not in calls[0]
    assert "--no-push" in calls[1] and "--name" not in calls[1]  # the local image keeps its name


def test_a_session_keeps_the_accounts_sdk_config(tmp_path, monkeypatch):
    # An admin's or user's config.yaml (VPC, KMS, tags) must survive turning telemetry off.
    config = tmp_path / "config.yaml"
    config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  TrainingJob:\n    VpcConfig:\n"
                      "      SecurityGroupIds: ['sg-0123456789abcdef0']\n      Subnets: ['subnet-0123456789abcdef0']\n",
                      encoding="utf-8")
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    session = launchers.make_session(region="us-east-1", default_bucket="b")
    sdk = session.sagemaker_config["SageMaker"]
    assert sdk["TrainingJob"]["VpcConfig"]["Subnets"] == ["subnet-0123456789abcdef0"]
    assert sdk["PythonSDK"]["Modules"]["TelemetryOptOut"] is True


def test_the_region_is_the_instances_own_unless_set(tmp_path, monkeypatch):
    from albert_ner.workshop.aws import default_region

    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = cn-north-1\n", encoding="utf-8")
    for key in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert default_region() == "cn-north-1"  # what a notebook instance's AWS config says
    # ... and the DLC's URI follows the partition of that region
    assert jobs.dlc_image(None, "ml.c5.xlarge").endswith(".amazonaws.com.cn/tensorflow-training:2.21-cpu-py312")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert default_region() == "eu-west-1"


def test_outside_sagemaker_the_missing_role_names_sagemaker_role(aws, monkeypatch):
    from albert_ner.workshop.aws import AwsContext

    from sagemaker.core.helper import session_helper

    def not_a_role(*_, **__):  # the SDK's answer where the identity is a user (a laptop's keys)
        raise ValueError("The current AWS identity is not a role: arn:aws:iam::123456789012:user/me, "
                         "therefore it cannot be used as a SageMaker execution role")

    monkeypatch.setattr(session_helper, "get_execution_role", not_a_role)
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    with pytest.raises(RuntimeError, match="SAGEMAKER_ROLE"):
        AwsContext(True, "aws", "us-east-1").execution_role()
    monkeypatch.setenv("SAGEMAKER_ROLE", "arn:aws-cn:iam::123456789012:role/Workshop")
    assert AwsContext(True, "aws", "cn-north-1").execution_role() == "arn:aws-cn:iam::123456789012:role/Workshop"
