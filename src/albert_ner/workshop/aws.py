"""AWS for the notebooks: off, a local moto server (CI), or the real service.

`connect(use_aws, aws_endpoint, region)` decides once per notebook:
  use_aws=False              nothing touches AWS; AWS cells print why they are skipped
  aws_endpoint="moto"        starts a moto server on 127.0.0.1 (no money, no credentials
                             needed) and points boto3 / the SageMaker SDK at it
  aws_endpoint=None          the real service with the caller's credentials — costs money
Every notebook that connects ends with `ctx.close()` in its cleanup cell (stops moto).

Example:
  ctx = connect(True, "moto", "us-east-1")
  bucket = ctx.bucket("albert-ner-workshop")
  ...
  ctx.close()
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
import urllib.request

MOTO_HOST = "127.0.0.1"
# Moto accepts any credentials; these are used only when the environment has none.
_FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((MOTO_HOST, 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class MotoServer:
    """A moto server subprocess on 127.0.0.1."""

    process: subprocess.Popen
    url: str

    @classmethod
    def start(cls, port: int | None = None, timeout: float = 30.0) -> "MotoServer":
        port = port or free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", MOTO_HOST, "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        url = f"http://{MOTO_HOST}:{port}"
        deadline = time.time() + timeout
        while time.time() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"moto server exited with status {process.returncode} (is moto[server] installed?)")
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                return cls(process, url)
            except OSError:
                time.sleep(0.2)
        process.kill()
        raise RuntimeError(f"moto server did not answer on {url} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@dataclasses.dataclass
class AwsContext:
    """What the notebook talks to. `enabled` False means: skip every AWS cell."""

    enabled: bool
    mode: str  # "off", "moto", "aws" or "endpoint"
    region: str | None = None
    endpoint_url: str | None = None
    moto: MotoServer | None = None

    @property
    def costs_money(self) -> bool:
        return self.mode == "aws"

    def describe(self) -> str:
        if not self.enabled:
            return "AWS: off (use_aws=False) — cells that need AWS will say they are skipped"
        if self.mode == "moto":
            return f"AWS: local moto server at {self.endpoint_url} (region {self.region}); nothing is billed"
        if self.mode == "endpoint":
            return f"AWS: custom endpoint {self.endpoint_url} (region {self.region})"
        return f"AWS: the real service in {self.region} — jobs and storage are billed to your account"

    def client(self, service: str):
        import boto3

        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint_url)

    def bucket(self, name: str | None = None) -> str:
        """A bucket to stage data in: `name`, created when missing; on real AWS without a
        name, the SageMaker default bucket (sagemaker-<region>-<account>)."""
        if not self.enabled:
            raise RuntimeError("AWS is off (use_aws=False)")
        if name is None:
            if self.mode != "aws":
                name = "albert-ner-workshop-moto"
            else:  # the name the SageMaker SDK's default_bucket() uses
                account = self.client("sts").get_caller_identity()["Account"]
                name = f"sagemaker-{self.region}-{account}"
        s3 = self.client("s3")
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if name not in existing:
            kwargs = {}
            if self.region and self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            s3.create_bucket(Bucket=name, **kwargs)
        return name

    def execution_role(self, role: str | None = None) -> str:
        """The SageMaker execution role ARN: `role`, else $SAGEMAKER_ROLE, else (moto) a role
        created on the fake IAM, else (real AWS) the notebook instance's own role."""
        role = role or os.environ.get("SAGEMAKER_ROLE")
        if role:
            return role
        if self.mode != "aws":
            iam = self.client("iam")
            name = "albert-ner-workshop-role"
            try:
                return iam.get_role(RoleName=name)["Role"]["Arn"]
            except iam.exceptions.NoSuchEntityException:
                trust = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"sagemaker.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
                return iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        from sagemaker.core.helper.session_helper import get_execution_role

        try:
            return get_execution_role(self.session())
        except ValueError as err:  # not on a notebook instance or Studio: no role of its own
            raise RuntimeError(
                "no SageMaker execution role: outside a SageMaker notebook instance or Studio the "
                "jobs need one named — set SAGEMAKER_ROLE to the ARN of a role SageMaker can assume "
                "(e.g. with the AmazonSageMakerFullAccess policy) before starting Jupyter"
            ) from err

    def session(self, bucket: str | None = None):
        """A SageMaker SDK session (telemetry off) for this context."""
        from albert_ner.sagemaker.launchers import make_session

        return make_session(region=self.region, default_bucket=bucket)

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Deletes every object under s3://bucket/prefix (cleanup); returns how many."""
        s3 = self.client("s3")
        deleted = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
                deleted += len(keys)
        return deleted

    def close(self) -> None:
        if self.moto is not None:
            self.moto.stop()
            self.moto = None
            for key in ("AWS_ENDPOINT_URL",):
                if os.environ.get(key) == self.endpoint_url:
                    del os.environ[key]


def default_region() -> str:
    """The region a notebook runs in: AWS_REGION / AWS_DEFAULT_REGION, else the AWS config's
    (a notebook instance's is its own region), else us-east-1."""
    import boto3

    return (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            or boto3.Session().region_name or "us-east-1")


def connect(use_aws: bool, aws_endpoint: str | None = None, region: str | None = None) -> AwsContext:
    """Sets up the environment for boto3 and the SageMaker SDK; see the module docstring."""
    region = region or default_region()
    if not use_aws:
        return AwsContext(False, "off")
    os.environ["AWS_DEFAULT_REGION"] = region
    os.environ["AWS_REGION"] = region
    # The SDK's telemetry calls an S3 endpoint on every call; offline it only logs failures.
    os.environ.setdefault("SAGEMAKER_TELEMETRY_OPT_OUT", "true")
    if aws_endpoint == "moto":
        server = MotoServer.start()
        for key, value in _FAKE_CREDENTIALS.items():
            os.environ.setdefault(key, value)
        os.environ["AWS_ENDPOINT_URL"] = server.url
        # The SDK would check the role with the real IAM/STS endpoints otherwise.
        os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
        return AwsContext(True, "moto", region, server.url, server)
    if aws_endpoint:
        os.environ["AWS_ENDPOINT_URL"] = aws_endpoint
        return AwsContext(True, "endpoint", region, aws_endpoint)
    return AwsContext(True, "aws", region)
