"""Real-time endpoints and batch transform with the SageMaker Python SDK v3 (notebook 06).

Two ways to host the model, both with `ModelBuilder(image_uri=..., s3_model_data_url=...)`:

  * BYOC  our own image (container/Dockerfile), whose `serve` entrypoint runs `albert-ner serve`
          over the model directory SageMaker extracts from model.tar.gz into /opt/ml/model;
  * TFS   the AWS TensorFlow Serving inference image (DLC) 2.20 with the archive that
          `albert-ner export --tfs-package` writes (SavedModel under `1/` plus
          `code/inference.py`, whose handlers need only the standard library).

Then: `invoke` (sagemaker-runtime InvokeEndpoint), a `Transformer` batch job (JSON lines, split
by line, MultiRecord, output joined to input, assembled by line), and `delete_deployment`
(endpoint, endpoint config, model: each is billed or counts against a quota until deleted).

Every function takes a SageMaker SDK `Session`; in CI its boto3 session comes from
`albert_ner.workshop.stand_in.SageMakerStandIn`, on a real account from `boto3.Session()`.

Example:
  session = make_session(region="us-east-1", default_bucket=bucket)
  data_url = upload_model(session, "model.tar.gz", bucket, "albert-ner/byoc")
  builder, model = build_model(image_uri, data_url, role, session, "ml.c5.xlarge",
                               byoc_environment(workers=2), model_name="albert-ner-byoc-1")
  deployment = deploy_endpoint(builder, "albert-ner-byoc-1")
  print(invoke(session.sagemaker_runtime_client, deployment.endpoint_name, ["王小明在北京大学读书。"]))
  delete_deployment(session.sagemaker_client, deployment)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tarfile
import time
import warnings
from pathlib import Path

from albert_ner.data.example import SCORE_TOLERANCE, records_difference

TFS_VERSION = "2.20"  # the newest TensorFlow Serving inference DLC
DEFAULT_INSTANCE_TYPE = "ml.c5.xlarge"  # CPU is enough for ALBERT-tiny; ≈ $0.2/hour on demand
JSON = "application/json"
JSONLINES = "application/jsonlines"
# Model-directory entries the server does not need: training state only makes the archive big.
NOT_FOR_SERVING = ("checkpoints",)


@dataclasses.dataclass
class Deployment:
    """The names of what one deployment created, for invoke and cleanup."""

    model_name: str
    endpoint_name: str | None = None
    endpoint_config_name: str | None = None

    @classmethod
    def planned(cls, model_name: str) -> "Deployment":
        """The names `deploy_endpoint` gives by default (endpoint and config named after the
        model): record them before deploying, so a failed deploy still gets cleaned up."""
        return cls(model_name, model_name, model_name)


def unique_name(prefix: str) -> str:
    """`prefix-YYYYmmdd-HHMMSS-mmm`: SageMaker names are unique per account and region."""
    now = time.time()
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{int(now * 1000) % 1000:03d}"


def quiet_sdk_logging(level: int = logging.WARNING) -> None:
    """Keeps the SDK's INFO lines out of notebook outputs.

    Importing the SDK configures the root logger at INFO, and its lines include role ARNs
    with the account id ("Skipping IAM role validation for 'arn:aws:iam::<id>:...'"). Our
    functions print their own progress; warnings and errors still show.
    """
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("sagemaker", "botocore", "boto3"):
            logging.getLogger(name).setLevel(level)
    for name in ("sagemaker", "botocore", "boto3"):
        logging.getLogger(name).setLevel(level)


# ---------------------------------------------------------------------------- artefacts
def package_model_dir(model_dir: str | os.PathLike, target: str | os.PathLike) -> Path:
    """The model directory as the `model.tar.gz` SageMaker extracts into /opt/ml/model.

    Entries are relative (`1/saved_model.pb`, `labels.json`, ...); training checkpoints are
    left out.
    """
    model_dir, target = Path(model_dir), Path(target)
    if not (model_dir / "labels.json").exists():
        raise FileNotFoundError(f"{model_dir} is not a model directory (no labels.json)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            if path.name not in NOT_FOR_SERVING:
                tar.add(path, arcname=path.name)
    return target


def upload_model(session, archive: str | os.PathLike, bucket: str, prefix: str) -> str:
    """Uploads a model archive; returns its s3:// URL (the `s3_model_data_url`)."""
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"model archive {archive} does not exist")
    return session.upload_data(path=str(archive), bucket=bucket, key_prefix=prefix)


# ---------------------------------------------------------------------------- images and settings
def tfs_inference_image(region: str, instance_type: str = DEFAULT_INSTANCE_TYPE, version: str = TFS_VERSION) -> str:
    """The ECR URI of the AWS TensorFlow Serving inference image (CPU or GPU by instance type)."""
    from sagemaker.core import image_uris

    return image_uris.retrieve(framework="tensorflow", region=region, version=version,
                               instance_type=instance_type, image_scope="inference")


def byoc_environment(workers: int = 1, max_payload_mb: float | None = None, extra: dict | None = None) -> dict:
    """Container environment for our image: server workers (one model copy each), and the
    request size limit the server enforces."""
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": str(workers)}
    if max_payload_mb is not None:
        env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(max_payload_mb)
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


def tfs_environment(workers: int = 1, batching: bool = True, max_batch_size: int = 32,
                    batch_timeout_micros: int = 2000, extra: dict | None = None) -> dict:
    """Container environment for the TF Serving DLC: handler workers (gunicorn) and TF
    Serving's own server-side batching of concurrent requests."""
    env = {"SAGEMAKER_GUNICORN_WORKERS": str(workers),
           "SAGEMAKER_TFS_ENABLE_BATCHING": "true" if batching else "false"}
    if batching:
        env["SAGEMAKER_TFS_MAX_BATCH_SIZE"] = str(max_batch_size)
        env["SAGEMAKER_TFS_BATCH_TIMEOUT_MICROS"] = str(batch_timeout_micros)
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


def byoc_image_uri(aws, repository: str | None = None, tag: str = "latest") -> tuple[str, bool]:
    """Our image's ECR URI and whether this call created the repository.

    On real AWS the image must already be pushed (notebook 03, or container/build_and_push.sh):
    a missing repository is an error rather than an empty new one an endpoint cannot start
    from. Elsewhere (moto) the repository is created, and the cleanup deletes it.
    """
    from albert_ner.workshop import jobs

    repository = repository or jobs.ECR_REPOSITORY
    if aws.mode == "aws":
        ecr = aws.client("ecr")
        try:
            uri = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]["repositoryUri"]
        except ecr.exceptions.RepositoryNotFoundException:
            raise RuntimeError(f"ECR repository {repository!r} does not exist: build and push the image "
                               "first (notebook 03, or bash container/build_and_push.sh)") from None
        return jobs.require_pushed_image(aws, uri, tag), False
    uri, created = jobs.ecr_repository(aws, repository)
    return f"{uri}:{tag}", created


# ---------------------------------------------------------------------------- model and endpoint
def build_model(image_uri: str, model_data_url: str, role: str, session, instance_type: str = DEFAULT_INSTANCE_TYPE,
                environment: dict | None = None, model_name: str | None = None):
    """CreateModel through SDK v3 `ModelBuilder` (image + model data: no framework detection).

    Returns:
      (builder, model): the ModelBuilder (deploy_endpoint needs it) and the
      `sagemaker.core.resources.Model` it created.
    """
    from sagemaker.serve.model_builder import ModelBuilder

    quiet_sdk_logging()
    if not model_data_url.startswith("s3://"):
        raise ValueError(f"model data must be an s3:// URL, got {model_data_url!r}")
    builder = ModelBuilder(
        image_uri=image_uri,
        s3_model_data_url=model_data_url,
        role_arn=role,
        sagemaker_session=session,
        instance_type=instance_type,
        env_vars=dict(environment or {}),
        log_level=logging.WARNING,  # the SDK logs at DEBUG by default
    )
    model = builder.build(model_name=model_name or unique_name("albert-ner"))
    return builder, model


def deploy_endpoint(builder, endpoint_name: str | None = None, instance_count: int = 1,
                    poll_seconds: float = 30.0, timeout: float = 1800.0) -> Deployment:
    """CreateEndpointConfig + CreateEndpoint for a built model, then waits for InService.

    The endpoint config gets the endpoint's name (the SDK's choice). Billing starts now and
    runs until `delete_deployment`. Raises RuntimeError with the failure reason when the
    endpoint fails (the model, its config and the failed endpoint still need deleting).
    """
    endpoint_name = endpoint_name or builder.model_name
    # wait=False: the SDK's own wait draws a progress panel and sleeps a full poll interval
    # even when the endpoint is already up; wait_for_endpoint prints one line per change.
    endpoint = builder.deploy(endpoint_name=endpoint_name, initial_instance_count=instance_count, wait=False)
    deployment = Deployment(builder.model_name, endpoint_name, endpoint.endpoint_config_name)
    status = wait_for_endpoint(builder.sagemaker_session.sagemaker_client, endpoint_name, poll_seconds, timeout)
    if status["status"] != "InService":
        raise RuntimeError(f"endpoint {endpoint_name} is {status['status']}: {status.get('failure_reason')} "
                           "(run the cleanup cell)")
    return deployment


def wait_for_endpoint(sagemaker_client, endpoint_name: str, poll_seconds: float = 30.0,
                      timeout: float = 1800.0) -> dict:
    """Polls DescribeEndpoint until the endpoint leaves Creating/Updating; prints each change."""
    deadline, last = time.time() + timeout, None
    while True:
        d = sagemaker_client.describe_endpoint(EndpointName=endpoint_name)
        status = d["EndpointStatus"]
        if status != last:
            print(f"{time.strftime('%H:%M:%S')} endpoint {endpoint_name}: {status}", flush=True)
            last = status
        if status not in ("Creating", "Updating", "SystemUpdating") or time.time() > deadline:
            return {"status": status, "failure_reason": d.get("FailureReason")}
        time.sleep(poll_seconds)


def describe_endpoint(sagemaker_client, endpoint_name: str) -> dict:
    """Status, config, instance type/count and failure reason of an endpoint."""
    d = sagemaker_client.describe_endpoint(EndpointName=endpoint_name)
    config = sagemaker_client.describe_endpoint_config(EndpointConfigName=d["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    return {"endpoint": endpoint_name, "status": d["EndpointStatus"], "endpoint_config": d["EndpointConfigName"],
            "model": variant["ModelName"], "instance_type": variant.get("InstanceType"),
            "instance_count": variant.get("InitialInstanceCount"), "failure_reason": d.get("FailureReason")}


def request_body(texts: list[str], content_type: str = JSON) -> bytes:
    """An /invocations body: JSON {"instances": [{"text": ...}]} or one {"text"} per line."""
    if content_type == JSON:
        return json.dumps({"instances": [{"text": t} for t in texts]}, ensure_ascii=False).encode("utf-8")
    if content_type == JSONLINES:
        return "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts).encode("utf-8")
    raise ValueError(f"content_type must be {JSON} or {JSONLINES}, got {content_type!r}")


def invoke(runtime_client, endpoint_name: str, texts: list[str], content_type: str = JSON,
           accept: str = JSON) -> list[dict]:
    """Tags `texts` on an endpoint (sagemaker-runtime InvokeEndpoint); one record per text.

    Returns:
      [{"text", "entities": [{"type", "start", "end", "text", "score"}]}] in input order.
    """
    response = runtime_client.invoke_endpoint(EndpointName=endpoint_name, ContentType=content_type,
                                              Accept=accept, Body=request_body(texts, content_type))
    return _checked(parse_predictions(response["Body"].read()), texts, f"endpoint {endpoint_name}")


def invoke_url(base_url: str, texts: list[str], content_type: str = JSON, accept: str = JSON) -> list[dict]:
    """The same request straight to a server's POST /invocations (a local container)."""
    from albert_ner.workshop.batch_transform import post

    status, body, _ = post(base_url.rstrip("/") + "/invocations", request_body(texts, content_type),
                           content_type, accept)
    if status != 200:
        raise RuntimeError(f"{base_url} answered {status}: {body.decode('utf-8', errors='replace')[:300]}")
    return _checked(parse_predictions(body), texts, base_url)


def _checked(records: list[dict], texts: list[str], where: str) -> list[dict]:
    if len(records) != len(texts):
        raise RuntimeError(f"{where} answered {len(records)} records for {len(texts)} texts")
    return records


def records_frame(records: list[dict]):
    """One row per entity: sentence number, type, text, offsets, score (pandas DataFrame)."""
    import pandas as pd

    rows = [{"sentence": i, "type": e["type"], "text": e["text"], "start": e["start"], "end": e["end"],
             "score": e.get("score")} for i, r in enumerate(records) for e in r.get("entities", [])]
    return pd.DataFrame(rows, columns=["sentence", "type", "text", "start", "end", "score"])


def same_predictions(a: list[dict], b: list[dict], score_tolerance: float = SCORE_TOLERANCE) -> bool:
    """True when two answers hold the same records and entities, scores within the tolerance
    (`data.example.records_difference`: a score may differ in its last digit with the batch
    it rode in)."""
    return records_difference(a, b, score_tolerance) is None


def parse_predictions(body: bytes) -> list[dict]:
    """A server answer as a list of records: {"predictions": [...]} or JSON lines.

    Decided by the body, not the content type: the TF Serving container answers JSON lines
    to JSON-lines input even when the request's Accept was application/json.
    """
    text = body.decode("utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:  # several lines
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(value, dict) and "predictions" in value:
        return value["predictions"]
    return [value]


# ---------------------------------------------------------------------------- batch transform
def batch_transformer(model_name: str, session, output_path: str, instance_type: str = DEFAULT_INSTANCE_TYPE,
                      instance_count: int = 1, max_payload_mb: int = 6, max_concurrent_transforms: int = 1,
                      environment: dict | None = None):
    """A `sagemaker.core.transformer.Transformer`: MultiRecord mini-batches of at most
    `max_payload_mb`, JSON lines out, one output line per input line.

    The container also sees SAGEMAKER_BATCH, SAGEMAKER_BATCH_STRATEGY and
    SAGEMAKER_MAX_PAYLOAD_IN_MB (SageMaker sets them from these settings).
    """
    from sagemaker.core.transformer import Transformer

    quiet_sdk_logging()
    return Transformer(
        model_name=model_name, instance_count=instance_count, instance_type=instance_type,
        strategy="MultiRecord", assemble_with="Line", output_path=output_path, accept=JSONLINES,
        max_payload=max_payload_mb, max_concurrent_transforms=max_concurrent_transforms,
        env=dict(environment or {}), sagemaker_session=session)


def run_batch(transformer, input_url: str, job_name: str | None = None, wait: bool = True) -> str:
    """Starts the job over every object under `input_url` (JSON lines, split by line, output
    joined to its input record); returns the job name."""
    job_name = job_name or unique_name("albert-ner-batch")
    with warnings.catch_warnings():
        # The SDK's progress display asks for ipywidgets inside Jupyter; its text form is fine.
        warnings.filterwarnings("ignore", message=".*ipywidgets.*")
        transformer.transform(input_url, content_type=JSONLINES, split_type="Line", join_source="Input",
                              job_name=job_name, wait=wait, logs=False)
    return job_name


def describe_transform_job(sagemaker_client, job_name: str) -> dict:
    d = sagemaker_client.describe_transform_job(TransformJobName=job_name)
    return {"job": job_name, "status": d["TransformJobStatus"], "failure_reason": d.get("FailureReason"),
            "strategy": d.get("BatchStrategy"), "max_payload_mb": d.get("MaxPayloadInMB"),
            "output": d.get("TransformOutput", {}).get("S3OutputPath")}


# ---------------------------------------------------------------------------- cleanup
def delete_deployment(sagemaker_client, deployment: Deployment) -> dict:
    """Deletes the endpoint (stops billing), its config and the model, in that order.

    Returns:
      {"endpoint": status, "endpoint_config": status, "model": status}, each "deleted",
      "not found" (already gone) or "skipped" (never created).
    """
    steps = (("endpoint", deployment.endpoint_name, "delete_endpoint", "EndpointName"),
             ("endpoint_config", deployment.endpoint_config_name, "delete_endpoint_config", "EndpointConfigName"),
             ("model", deployment.model_name, "delete_model", "ModelName"))
    result = {}
    for what, name, method, key in steps:
        if not name:
            result[what] = "skipped"
            continue
        try:
            getattr(sagemaker_client, method)(**{key: name})
            result[what] = "deleted"
        except sagemaker_client.exceptions.ClientError as err:
            # SageMaker says "Could not find endpoint ..." for a name that does not exist.
            if "could not find" not in err.response.get("Error", {}).get("Message", "").lower():
                raise
            result[what] = "not found"
    return result
