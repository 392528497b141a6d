"""A local stand-in for the SageMaker hosting API (CI, no cost).

moto records training jobs but not hosting: SDK v3 `ModelBuilder.build()` and `Transformer`
fail against it. So in CI a local server plays each endpoint's container (the project's own
`albert-ner serve` on 127.0.0.1, `albert_ner.serving.loadtest.ServerProcess`, for our image;
`albert_ner.serving.tfs_emulator` for the TF Serving DLC), and `SageMakerStandIn` answers the
SageMaker API at the boto3 client level:

  * every `sagemaker`, `sagemaker-runtime` and `logs` client made by its boto3 session gets a
    botocore `Stubber`, whose next response is computed from a small in-memory state just
    before each call (CreateModel → DescribeModel sees the model, DeleteModel removes it);
  * botocore validates each request against the service model, the Stubber each response;
  * every request is recorded (`requests`, `calls(operation)`), so tests can assert image,
    model data URL, instance type, environment and batch settings;
  * InvokeEndpoint is forwarded to the local server routed to the endpoint's image;
  * CreateTransformJob runs `batch_transform.run_local_transform` over the job's S3 input
    and writes the `.out` objects where SageMaker would (S3 itself is not stubbed: moto);
  * other services (S3, ECR, IAM, STS) are left alone.

Example:
  server = ServerProcess(model_dir); server.wait_ready()
  stand_in = SageMakerStandIn(routes={image_uri: server.url})
  session = make_session(boto_session=stand_in.boto_session("us-east-1"), default_bucket=bucket)
  ... ModelBuilder(..., sagemaker_session=session).build() ...
  stand_in.calls("CreateModel")[0]["PrimaryContainer"]["Image"] == image_uri
"""

from __future__ import annotations

import datetime
import io
import shutil
import tempfile
from pathlib import Path

STUBBED_SERVICES = ("sagemaker", "sagemaker-runtime", "logs")
FAKE_ACCOUNT = "000000000000"


# ---------------------------------------------------------------------------- the API
class StandInError(Exception):
    """A request the stand-in answers with a SageMaker error code."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class SageMakerStandIn:
    """An in-memory SageMaker hosting API behind botocore Stubbers (see the module docstring).

    Args:
      routes: image URI → URL of the local server that plays that image's container.
      region: for the ARNs it returns.

    Transform jobs read and write S3 through the stand-in's boto3 session, which follows
    AWS_ENDPOINT_URL (a moto server) or moto's in-process mock.
    """

    def __init__(self, routes: dict[str, str] | None = None, region: str = "us-east-1"):
        self.routes = dict(routes or {})
        self.region = region
        self.requests: list[tuple[str, str, dict]] = []  # (service, operation, parameters)
        self.models: dict[str, dict] = {}
        self.endpoint_configs: dict[str, dict] = {}
        self.endpoints: dict[str, dict] = {}
        self.transform_jobs: dict[str, dict] = {}
        self._session = None

    # -- wiring
    def boto_session(self, region: str | None = None):
        """A boto3 session whose SageMaker, runtime and logs clients answer from this stand-in."""
        import boto3

        stand_in = self

        class StandInBotoSession(boto3.Session):
            def client(self, service_name, *args, **kwargs):
                client = super().client(service_name, *args, **kwargs)
                # By the model's name: the SDK asks for "runtime.sagemaker", an alias.
                if client.meta.service_model.service_name in STUBBED_SERVICES:
                    stand_in.attach(client)
                return client

        self._session = StandInBotoSession(region_name=region or self.region)
        return self._session

    def attach(self, client):
        """Puts a Stubber on `client` whose responses come from `respond`; returns the Stubber."""
        from botocore.stub import Stubber

        stubber = Stubber(client)

        def answer(model, params, **kwargs):
            # Registered first, so it runs before the Stubber's own check of the same event:
            # the response it queues is the one the Stubber hands back for this very call.
            method = _method_name(client, model.name)
            self.requests.append((model.service_model.service_name, model.name, params))
            try:
                response = self.respond(model.service_model.service_name, model.name, params)
            except StandInError as err:
                stubber.add_client_error(method, err.code, err.message, err.status)
            else:
                stubber.add_response(method, response)

        client.meta.events.register_first("before-parameter-build.*.*", answer)
        stubber.activate()
        return stubber

    # -- what was asked
    def calls(self, operation: str) -> list[dict]:
        """The parameters of every request for `operation`, in order."""
        return [params for _, op, params in self.requests if op == operation]

    def operations(self) -> list[str]:
        """The operation names of every request, in order."""
        return [op for _, op, _ in self.requests]

    # -- answers
    def respond(self, service: str, operation: str, params: dict) -> dict:
        """The response to one request (a `_<service>_<Operation>` method below); raises
        StandInError for an API error and NotImplementedError for an operation it lacks."""
        handler = getattr(self, f"_{service.replace('-', '_')}_{operation}", None)
        if handler is None:
            raise NotImplementedError(f"the SageMaker stand-in does not implement {service} {operation}")
        return handler(params)

    def _arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{FAKE_ACCOUNT}:{kind}/{name.lower()}"

    @staticmethod
    def _now():
        return datetime.datetime.now(datetime.timezone.utc)

    def _sagemaker_CreateModel(self, p):
        name = p["ModelName"]
        if name in self.models:
            raise StandInError("ValidationException", f'Cannot create already existing model "{self._arn("model", name)}".')
        self.models[name] = {**p, "CreationTime": self._now(), "ModelArn": self._arn("model", name)}
        return {"ModelArn": self.models[name]["ModelArn"]}

    def _sagemaker_DescribeModel(self, p):
        model = self._get(self.models, p["ModelName"], "model")
        return {k: model[k] for k in ("ModelName", "PrimaryContainer", "ExecutionRoleArn", "CreationTime", "ModelArn") if k in model}

    def _sagemaker_DeleteModel(self, p):
        self._get(self.models, p["ModelName"], "model")
        del self.models[p["ModelName"]]
        return {}

    def _sagemaker_CreateEndpointConfig(self, p):
        name = p["EndpointConfigName"]
        if name in self.endpoint_configs:
            raise StandInError("ValidationException", f'Cannot create already existing endpoint configuration "{self._arn("endpoint-config", name)}".')
        for variant in p["ProductionVariants"]:
            self._get(self.models, variant["ModelName"], "model")
        arn = self._arn("endpoint-config", name)
        self.endpoint_configs[name] = {**p, "CreationTime": self._now(), "EndpointConfigArn": arn}
        return {"EndpointConfigArn": arn}

    def _sagemaker_DescribeEndpointConfig(self, p):
        config = self._get(self.endpoint_configs, p["EndpointConfigName"], "endpoint configuration")
        return {k: config[k] for k in ("EndpointConfigName", "EndpointConfigArn", "ProductionVariants", "CreationTime")}

    def _sagemaker_DeleteEndpointConfig(self, p):
        self._get(self.endpoint_configs, p["EndpointConfigName"], "endpoint configuration")
        del self.endpoint_configs[p["EndpointConfigName"]]
        return {}

    def _sagemaker_CreateEndpoint(self, p):
        name = p["EndpointName"]
        if name in self.endpoints:
            raise StandInError("ValidationException", f'Cannot create already existing endpoint "{self._arn("endpoint", name)}".')
        config = self._get(self.endpoint_configs, p["EndpointConfigName"], "endpoint configuration")
        # A real endpoint takes minutes to reach InService; the stand-in is ready at once if
        # a local server plays the model's image, and Failed (with the reason) otherwise.
        image = self.models[config["ProductionVariants"][0]["ModelName"]]["PrimaryContainer"]["Image"]
        status, reason = ("InService", None) if image in self.routes else (
            "Failed", f"no local server plays image {image} (SageMakerStandIn routes)")
        now = self._now()
        self.endpoints[name] = {"EndpointName": name, "EndpointArn": self._arn("endpoint", name),
                                "EndpointConfigName": config["EndpointConfigName"], "EndpointStatus": status,
                                "CreationTime": now, "LastModifiedTime": now, "image": image}
        if reason:
            self.endpoints[name]["FailureReason"] = reason
        return {"EndpointArn": self.endpoints[name]["EndpointArn"]}

    def _sagemaker_DescribeEndpoint(self, p):
        endpoint = self._get(self.endpoints, p["EndpointName"], "endpoint")
        return {k: v for k, v in endpoint.items() if k != "image"}

    def _sagemaker_DeleteEndpoint(self, p):
        self._get(self.endpoints, p["EndpointName"], "endpoint")
        del self.endpoints[p["EndpointName"]]
        return {}

    def _sagemaker_CreateTransformJob(self, p):
        name = p["TransformJobName"]
        if name in self.transform_jobs:
            raise StandInError("ValidationException", f"Job name must be unique within an AWS account and region, and a job with this name already exists ({name})")
        model = self._get(self.models, p["ModelName"], "model")
        job = {**p, "TransformJobArn": self._arn("transform-job", name), "CreationTime": self._now()}
        self.transform_jobs[name] = job
        # The job runs to completion here, so the first DescribeTransformJob sees the end.
        try:
            job["outputs"] = self._run_transform(p, model["PrimaryContainer"]["Image"])
            job["TransformJobStatus"] = "Completed"
        except Exception as err:  # noqa: BLE001 - any failure is the job's FailureReason
            job["TransformJobStatus"] = "Failed"
            job["FailureReason"] = str(err)[:1024]
        job["TransformEndTime"] = self._now()
        return {"TransformJobArn": job["TransformJobArn"]}

    def _sagemaker_DescribeTransformJob(self, p):
        job = self._get(self.transform_jobs, p["TransformJobName"], "transform job")
        keys = ("TransformJobName", "TransformJobArn", "TransformJobStatus", "FailureReason", "ModelName",
                "MaxConcurrentTransforms", "MaxPayloadInMB", "BatchStrategy", "Environment", "TransformInput",
                "TransformOutput", "TransformResources", "CreationTime", "TransformEndTime", "DataProcessing")
        return {k: job[k] for k in keys if k in job}

    def _logs_FilterLogEvents(self, p):
        return {"events": [], "searchedLogStreams": []}

    def _logs_DescribeLogStreams(self, p):
        return {"logStreams": []}

    def _sagemaker_runtime_InvokeEndpoint(self, p):
        from botocore.response import StreamingBody

        from albert_ner.workshop.batch_transform import post

        endpoint = self.endpoints.get(p["EndpointName"])
        if endpoint is None or endpoint["EndpointStatus"] != "InService":
            raise StandInError("ValidationException", f"Endpoint {p['EndpointName']} of account {FAKE_ACCOUNT} not found.")
        body = p["Body"] if isinstance(p["Body"], bytes) else (
            p["Body"].encode("utf-8") if isinstance(p["Body"], str) else p["Body"].read())
        status, answer, content_type = post(self.routes[endpoint["image"]] + "/invocations", body,
                                            p.get("ContentType", "application/json"),
                                            p.get("Accept", "application/json"))
        if status != 200:
            # What SageMaker says when the container answers an error.
            raise StandInError("ModelError", f"Received client error ({status}) from primary with message "
                               f"\"{answer.decode('utf-8', errors='replace')}\".", 424)
        return {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "ContentType": content_type}

    @staticmethod
    def _get(table: dict, name: str, kind: str) -> dict:
        if name not in table:
            raise StandInError("ValidationException", f'Could not find {kind} "{name}".')
        return table[name]

    # -- batch transform over S3
    def _s3(self):
        return (self._session or self.boto_session()).client("s3")

    def _run_transform(self, p: dict, image: str) -> list[str]:
        from albert_ner.workshop.batch_transform import execution_parameters, run_local_transform

        if image not in self.routes:
            raise RuntimeError(f"no local server plays image {image} (SageMakerStandIn routes)")
        url = self.routes[image]
        source = p["TransformInput"]["DataSource"]["S3DataSource"]
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise RuntimeError("the stand-in reads S3Prefix inputs only")
        if p["TransformInput"].get("SplitType", "None") != "Line":
            raise RuntimeError("the stand-in splits by Line only")
        if p.get("TransformOutput", {}).get("AssembleWith", "None") != "Line":
            raise RuntimeError("the stand-in assembles with Line only")
        defaults = execution_parameters(url)  # what SageMaker asks the container when unset
        strategy = p.get("BatchStrategy") or defaults.get("BatchStrategy", "MultiRecord")
        max_payload = p.get("MaxPayloadInMB") or defaults.get("MaxPayloadInMB", 6)
        in_bucket, _, in_prefix = source["S3Uri"][len("s3://"):].partition("/")
        out_bucket, _, out_prefix = p["TransformOutput"]["S3OutputPath"][len("s3://"):].partition("/")
        s3 = self._s3()
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=in_bucket, Prefix=in_prefix)
                for o in page.get("Contents", []) if not o["Key"].endswith("/")]
        if not keys:
            raise RuntimeError(f"no input objects under {source['S3Uri']}")
        work = Path(tempfile.mkdtemp(prefix="albert-ner-transform-"))
        outputs = []
        try:
            for key in keys:
                local = work / "in" / Path(key).name
                local.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(in_bucket, key, str(local))
                report = run_local_transform(
                    url, local, work / "out", strategy=strategy, max_payload_mb=float(max_payload),
                    content_type=p["TransformInput"].get("ContentType", "application/jsonlines"),
                    accept=p["TransformOutput"].get("Accept", "application/jsonlines"),
                    join_source=p.get("DataProcessing", {}).get("JoinSource"),
                    concurrency=p.get("MaxConcurrentTransforms") or 1)
                relative = key[len(in_prefix):].lstrip("/") if key != in_prefix else Path(key).name
                out_key = "/".join(part for part in (out_prefix.rstrip("/"), relative + ".out") if part)
                s3.upload_file(str(report.output), out_bucket, out_key)
                outputs.append(f"s3://{out_bucket}/{out_key}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return outputs


def _method_name(client, operation: str) -> str:
    """The client method for an API operation name (CreateModel → create_model)."""
    for method, op in client.meta.method_to_api_mapping.items():
        if op == operation:
            return method
    raise KeyError(operation)

