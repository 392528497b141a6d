"""Deploy and batch transform (notebook 06): SDK v3 calls against the Stubber stand-in, and
SageMaker's batch-transform semantics run locally.

Most tests put a small contract-speaking echo server behind the stand-in (no TensorFlow), so
what is checked is the SageMaker side: the requests ModelBuilder and Transformer send, the
mini-batching, the join, the cleanup. One test serves a trained model with the project's own
server and compares the endpoint's answer with the library's predictions.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from albert_ner.workshop import batch_transform as bt
from albert_ner.workshop import deploy
from albert_ner.workshop.stand_in import SageMakerStandIn

REGION = "us-east-1"
ROLE = "arn:aws:iam::111111111111:role/SageMakerRole"
BYOC_IMAGE = "111111111111.dkr.ecr.us-east-1.amazonaws.com/albert-ner:latest"
TEXTS = ["王小明在北京大学读书。", "李鹏在上海。", "今天天气很好"]


# ---------------------------------------------------------------------------- an echo container
class EchoHandler(BaseHTTPRequestHandler):
    """The hosting contract with a fake model: an entity per text, its length as `score`.

    Records every /invocations body so tests can check the mini-batches; answers 400 with a
    JSON error for a record whose text is "FAIL", and drops a line for "SHORT".
    """

    def log_message(self, *args):
        pass

    def _send(self, status, body: bytes, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        if self.path == "/ping":
            self._send(200, b'{"status": "ready"}')
        elif self.path == "/execution-parameters":
            self._send(200, json.dumps({"BatchStrategy": "MultiRecord", "MaxPayloadInMB": 6,
                                        "MaxConcurrentTransforms": 1}).encode())
        else:
            self._send(404, b'{"error": "no route"}')

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(body)
        content_type = self.headers["Content-Type"]
        if content_type == "application/json":
            texts = [item["text"] for item in json.loads(body)["instances"]]
        else:
            texts = [json.loads(line)["text"] for line in body.decode().splitlines() if line.strip()]
        if "FAIL" in texts:
            self._send(400, b'{"error": "line 1: deliberate failure"}')
            return
        records = [{"text": t, "entities": [{"type": "LEN", "start": 0, "end": len(t), "text": t,
                                             "score": float(len(t))}]} for t in texts if t != "SHORT"]
        if self.headers.get("Accept") == "application/json":
            self._send(200, json.dumps({"predictions": records}, ensure_ascii=False).encode())
        else:
            self._send(200, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode(),
                       "application/jsonlines")


@pytest.fixture
def echo():
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def aws_env(monkeypatch):
    """No real AWS: fake credentials, a region, no role check or telemetry, S3 mocked by moto."""
    moto = pytest.importorskip("moto")
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
                       "SAGEMAKER_VALIDATE_ROLE": "false", "SAGEMAKER_TELEMETRY_OPT_OUT": "true"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    with moto.mock_aws():
        import boto3

        boto3.client("s3", region_name=REGION).create_bucket(Bucket="bkt")
        yield


def stand_in_session(routes):
    from albert_ner.sagemaker.launchers import make_session

    stand_in = SageMakerStandIn(routes=routes, region=REGION)
    return stand_in, make_session(boto_session=stand_in.boto_session(REGION), default_bucket="bkt")


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- batch transform semantics
def test_split_records_skips_blank_lines_and_rejects_non_utf8():
    assert bt.split_records(b'{"a": 1}\r\n\n  \n{"b": 2}') == [b'{"a": 1}', b'{"b": 2}']
    with pytest.raises(bt.TransformError, match="in.jsonl: not UTF-8 at byte 1"):
        bt.split_records(b'{\xff}', "in.jsonl")


def test_mini_batches_pack_records_up_to_the_payload_limit():
    records = [b"x" * n for n in (3, 4, 2, 5, 1)]
    assert bt.mini_batches(records, "SingleRecord", 100) == [[0], [1], [2], [3], [4]]
    # 3+1+4 = 8 fits in 9; adding 2 more (+1 newline) would not; 2+1+5 = 8; then 1.
    batches = bt.mini_batches(records, "MultiRecord", 9)
    assert batches == [[0, 1], [2, 3], [4]]
    for batch in batches:
        assert len(b"\n".join(records[i] for i in batch)) <= 9
    assert [i for b in bt.mini_batches(records, "MultiRecord", 10**6) for i in b] == [0, 1, 2, 3, 4]


def test_a_record_over_the_limit_fails_the_job():
    with pytest.raises(bt.TransformError, match="record 2 is 20 bytes, over MaxPayloadInMB"):
        bt.mini_batches([b"a", b"b" * 20], "MultiRecord", 10)
    with pytest.raises(ValueError, match="strategy"):
        bt.mini_batches([b"a"], "Batch", 10)


def test_join_adds_the_output_to_the_input_object():
    assert bt.join_record(b'{"id": 7, "text": "t"}', b'{"entities": []}') == {
        "id": 7, "text": "t", "SageMakerOutput": {"entities": []}}
    assert bt.join_record(b'"t"', b'{"entities": []}') == {
        "SageMakerInput": "t", "SageMakerOutput": {"entities": []}}


@pytest.mark.parametrize("strategy", ["SingleRecord", "MultiRecord"])
def test_local_transform_keeps_order_and_joins_every_line(tmp_path, echo, strategy):
    server, url = echo
    inputs = [{"id": i, "text": "字" * (i % 7 + 1)} for i in range(40)]
    source = write_jsonl(tmp_path / "texts.jsonl", inputs)
    limit_mb = 200 / 2**20  # 200 bytes: several records per request, several requests
    report = bt.run_local_transform(url, source, tmp_path / "out", strategy=strategy,
                                    max_payload_mb=limit_mb, concurrency=3)
    assert report.output == tmp_path / "out" / "texts.jsonl.out"
    out = bt.read_output(report.output)
    assert [r["id"] for r in out] == list(range(40))
    assert all(r["SageMakerOutput"]["text"] == r["text"] for r in out)
    assert report.records == 40 and report.error_records == 0
    assert report.requests == len(server.bodies)
    assert all(len(body) <= 200 for body in server.bodies)
    if strategy == "SingleRecord":
        assert report.requests == 40
    else:
        assert 1 < report.requests < 40


def test_local_transform_fails_like_the_job_on_a_server_error_or_a_lost_line(tmp_path, echo):
    _, url = echo
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "好"}, {"text": "FAIL"}])
    with pytest.raises(bt.TransformError, match="answered 400: .*deliberate failure"):
        bt.run_local_transform(url, bad, tmp_path / "out")
    short = write_jsonl(tmp_path / "short.jsonl", [{"text": "好"}, {"text": "SHORT"}])
    with pytest.raises(bt.TransformError, match="sent 2 records, got 1 output lines"):
        bt.run_local_transform(url, short, tmp_path / "out")


# ---------------------------------------------------------------------------- SDK v3 against the stand-in
def test_byoc_deploy_invoke_transform_and_cleanup(tmp_path, echo, aws_env):
    echo_server, url = echo
    stand_in, session = stand_in_session({BYOC_IMAGE: url})
    model_dir = tmp_path / "model"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "labels.json").write_text("{}")
    (model_dir / "checkpoints").mkdir()
    archive = deploy.package_model_dir(model_dir, tmp_path / "model.tar.gz")
    data_url = deploy.upload_model(session, archive, "bkt", "albert-ner/byoc")
    assert data_url == "s3://bkt/albert-ner/byoc/model.tar.gz"

    builder, model = deploy.build_model(BYOC_IMAGE, data_url, ROLE, session, "ml.c5.xlarge",
                                        deploy.byoc_environment(workers=2, max_payload_mb=6),
                                        model_name="albert-ner-byoc-test")
    assert model.model_name == "albert-ner-byoc-test"
    deployment = deploy.deploy_endpoint(builder, "albert-ner-byoc-test", poll_seconds=0.01)
    records = deploy.invoke(session.sagemaker_runtime_client, deployment.endpoint_name, TEXTS)
    assert [r["text"] for r in records] == TEXTS
    assert records[0]["entities"][0]["score"] == len(TEXTS[0])

    write_jsonl(tmp_path / "batch.jsonl", [{"id": i, "text": t} for i, t in enumerate(TEXTS * 5)])
    session.upload_data(str(tmp_path / "batch.jsonl"), bucket="bkt", key_prefix="batch/in")
    transformer = deploy.batch_transformer(deployment.model_name, session, "s3://bkt/batch/out",
                                           instance_type="ml.c5.xlarge", max_payload_mb=1)
    job = deploy.run_batch(transformer, "s3://bkt/batch/in", job_name="albert-ner-batch-test")
    assert deploy.describe_transform_job(session.sagemaker_client, job)["status"] == "Completed"
    import boto3

    out = boto3.client("s3", region_name=REGION).get_object(Bucket="bkt", Key="batch/out/batch.jsonl.out")
    lines = [json.loads(line) for line in out["Body"].read().decode().splitlines()]
    assert [line["id"] for line in lines] == list(range(15))
    assert all(line["SageMakerOutput"]["text"] == line["text"] for line in lines)

    assert deploy.delete_deployment(session.sagemaker_client, deployment) == {
        "endpoint": "deleted", "endpoint_config": "deleted", "model": "deleted"}
    assert deploy.delete_deployment(session.sagemaker_client, deployment) == {
        "endpoint": "not found", "endpoint_config": "not found", "model": "not found"}
    assert not (stand_in.models or stand_in.endpoints or stand_in.endpoint_configs)

    # What went to the SageMaker API.
    (create_model,) = stand_in.calls("CreateModel")
    assert create_model["ModelName"] == "albert-ner-byoc-test"
    assert create_model["ExecutionRoleArn"] == ROLE
    assert create_model["PrimaryContainer"] == {
        "Image": BYOC_IMAGE, "ModelDataUrl": data_url,
        "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "6"}}
    (config,) = stand_in.calls("CreateEndpointConfig")
    assert config["ProductionVariants"][0]["ModelName"] == "albert-ner-byoc-test"
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.c5.xlarge"
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 1
    (endpoint,) = stand_in.calls("CreateEndpoint")
    assert endpoint == {"EndpointName": "albert-ner-byoc-test", "EndpointConfigName": config["EndpointConfigName"],
                        "Tags": endpoint.get("Tags", [])}
    (invocation,) = stand_in.calls("InvokeEndpoint")
    assert json.loads(invocation["Body"]) == {"instances": [{"text": t} for t in TEXTS]}
    (transform,) = stand_in.calls("CreateTransformJob")
    assert transform["ModelName"] == "albert-ner-byoc-test"
    assert transform["BatchStrategy"] == "MultiRecord"
    assert transform["MaxPayloadInMB"] == 1
    assert transform["TransformInput"]["SplitType"] == "Line"
    assert transform["TransformInput"]["ContentType"] == "application/jsonlines"
    assert transform["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://bkt/batch/in"
    assert transform["TransformOutput"] == {"S3OutputPath": "s3://bkt/batch/out", "Accept": "application/jsonlines",
                                            "AssembleWith": "Line"}
    assert transform["DataProcessing"]["JoinSource"] == "Input"
    assert transform["TransformResources"] == {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1}
    assert stand_in.operations()[-6:] == ["DeleteEndpoint", "DeleteEndpointConfig", "DeleteModel"] * 2
    # The model archive holds the serving files, not the training checkpoints.
    import tarfile

    assert sorted(tarfile.open(archive).getnames()) == ["1", "labels.json"]


def test_tfs_model_uses_the_inference_dlc_and_its_settings(echo, aws_env):
    _, url = echo
    image = deploy.tfs_inference_image(REGION, "ml.c5.xlarge")
    assert image.endswith(".amazonaws.com/tensorflow-inference:2.20-cpu-py312")
    assert deploy.tfs_inference_image(REGION, "ml.g5.xlarge").endswith(":2.20-gpu-py312")
    stand_in, session = stand_in_session({image: url})
    env = deploy.tfs_environment(workers=2, max_batch_size=16)
    builder, _ = deploy.build_model(image, "s3://bkt/tfs/model.tar.gz", ROLE, session, environment=env,
                                    model_name="albert-ner-tfs-test")
    deployment = deploy.deploy_endpoint(builder, "albert-ner-tfs-test", poll_seconds=0.01)
    assert len(deploy.invoke(session.sagemaker_runtime_client, deployment.endpoint_name, TEXTS[:2],
                             content_type=deploy.JSONLINES, accept=deploy.JSONLINES)) == 2
    container = stand_in.calls("CreateModel")[0]["PrimaryContainer"]
    assert container["Image"] == image and container["ModelDataUrl"] == "s3://bkt/tfs/model.tar.gz"
    assert container["Environment"] == {
        "SAGEMAKER_GUNICORN_WORKERS": "2", "SAGEMAKER_TFS_ENABLE_BATCHING": "true",
        "SAGEMAKER_TFS_MAX_BATCH_SIZE": "16", "SAGEMAKER_TFS_BATCH_TIMEOUT_MICROS": "2000"}
    deploy.delete_deployment(session.sagemaker_client, deployment)


def test_a_failed_endpoint_raises_with_the_reason_and_still_cleans_up(aws_env):
    stand_in, session = stand_in_session({})  # no local server plays this image
    builder, _ = deploy.build_model(BYOC_IMAGE, "s3://bkt/m/model.tar.gz", ROLE, session, model_name="albert-ner-failed")
    with pytest.raises(RuntimeError, match="is Failed: no local server plays image"):
        deploy.deploy_endpoint(builder, "albert-ner-failed", poll_seconds=0.01)
    result = deploy.delete_deployment(session.sagemaker_client, deploy.Deployment(
        "albert-ner-failed", "albert-ner-failed", "albert-ner-failed"))
    assert result == {"endpoint": "deleted", "endpoint_config": "deleted", "model": "deleted"}


def test_stand_in_refuses_what_it_does_not_implement_and_bad_requests(aws_env):
    stand_in, session = stand_in_session({})
    with pytest.raises(NotImplementedError, match="sagemaker ListEndpoints"):
        session.sagemaker_client.list_endpoints()
    with pytest.raises(session.sagemaker_client.exceptions.ClientError, match='Could not find model "nope"'):
        session.sagemaker_client.describe_model(ModelName="nope")
    with pytest.raises(ValueError, match="s3://"):
        deploy.build_model(BYOC_IMAGE, "/local/model.tar.gz", ROLE, session)


@pytest.mark.slow  # starts a server process that loads TensorFlow: 15-45 s on two busy cores
def test_invoke_a_served_model_equals_the_library(trained_model, aws_env, tmp_path):
    """The project's server behind the stand-in answers what `Predictor` predicts."""
    from albert_ner.predict import Predictor
    from albert_ner.serving.loadtest import ServerProcess

    server = ServerProcess(trained_model, log_path=tmp_path / "server.log")
    try:
        server.wait_ready()
        _, session = stand_in_session({BYOC_IMAGE: server.url})
        builder, _ = deploy.build_model(BYOC_IMAGE, "s3://bkt/m/model.tar.gz", ROLE, session, model_name="albert-ner-real")
        deployment = deploy.deploy_endpoint(builder, "albert-ner-real", poll_seconds=0.01)
        texts = ["王小明在北京大学读书。", "国务院总理李鹏今天在北京会见了日本外务大臣。"]
        records = deploy.invoke(session.sagemaker_runtime_client, deployment.endpoint_name, texts)
    finally:
        server.stop()
    expected = Predictor.from_model_dir(trained_model).predict(texts)
    for record, example in zip(records, expected):
        assert record["text"] == example.text
        got = [(e["type"], e["start"], e["end"]) for e in record["entities"]]
        assert got == [(e.type, e.start, e.end) for e in example.entities]
        assert all(0.0 <= e["score"] <= 1.0 for e in record["entities"])
