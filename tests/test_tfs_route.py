"""The TF Serving container route: package layout, stdlib handlers, and the local emulator.

The package from `albert-ner export --tfs-package` is served by `serving.tfs_emulator` (TF
Serving's REST :predict plus the container's /invocations running code/inference.py); its
answers must equal `Predictor` (what `albert-ner predict` and the server use), scores
included, for every content type.
"""

from __future__ import annotations

import ast
import json
import random
import shutil
import sys
import tarfile
import urllib.error
import urllib.request

import pytest

from albert_ner.cli import main
from albert_ner.data.schemes import TagSet
from albert_ner.predict import Predictor
from albert_ner.serving import tfs_inference
from albert_ner.serving.tfs_emulator import TFServingEmulator
from serving_helpers import assert_same_records

TEXTS = [
    "任文博出生于拉萨，财政部发言人曾芳表示。",
    "",
    "ＡＢＣ公司 与 Hello World 在 2024 年合作\t完成",
    "北京" * 70,  # several 38-character windows
    "é ü 😀 \u3000 〇",
]


@pytest.fixture(scope="module")
def package(trained_model, tmp_path_factory):
    """A TF Serving package written by the CLI from a copy of the trained model."""
    root = tmp_path_factory.mktemp("tfs")
    copy = root / "model"
    shutil.copytree(trained_model, copy)
    out = root / "model.tar.gz"
    assert main(["export", "--model-dir", str(copy), "--tfs-package", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def emulator(package):
    with TFServingEmulator(package) as tfs:
        yield tfs


@pytest.fixture(scope="module")
def expected(trained_model):
    predictor = Predictor.from_model_dir(trained_model)

    def records(texts):
        return [
            {"text": ex.text, "entities": [e.to_json(ex.text) for e in ex.entities]}
            for ex in predictor.predict(texts)
        ]

    return records


def post(url, body, content_type=None, accept=None):
    request = urllib.request.Request(url, data=body, method="POST")
    if content_type:
        request.add_header("Content-Type", content_type)
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def json_lines(body: bytes) -> list:
    return [json.loads(line) for line in body.decode("utf-8").splitlines()]


# ----------------------------------------------------------------------------- the package
def test_package_layout_and_stdlib_only_code(package):
    with tarfile.open(package) as tar:
        names = set(tar.getnames())
        assert {"1/saved_model.pb", "code/inference.py", "code/request_formats.py", "code/labels.json"} <= names
        assert any(n.startswith("1/variables/") for n in names)
        labels = json.loads(tar.extractfile("code/labels.json").read())
        for name in ("code/inference.py", "code/request_formats.py"):
            tree = ast.parse(tar.extractfile(name).read())
            imported = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    imported.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    imported.add(node.module.split(".")[0])
            # albert_ner only as the in-repository fallback, never needed in the container
            assert imported - {"albert_ner", "__future__"} <= set(sys.stdlib_module_names), name
    assert labels["scheme"] == "bio" and labels["tags"][0] == "O"


def test_package_needs_a_model_dir(tmp_path):
    from albert_ner.export import write_tfs_package

    with pytest.raises(FileNotFoundError, match="not a complete model directory"):
        write_tfs_package(tmp_path / "missing", tmp_path / "out.tar.gz")


# ----------------------------------------------------------------------------- TF Serving REST
def test_rest_predict_row_format(emulator):
    status, _, body = post(emulator.predict_url, json.dumps({"instances": TEXTS}).encode(), "application/json")
    assert status == 200
    predictions = json.loads(body)["predictions"]
    assert len(predictions) == len(TEXTS)
    for text, row in zip(TEXTS, predictions):
        assert set(row) == {"tag_ids", "tags", "lengths", "entity_scores"}
        assert row["lengths"] == len(text)
        assert len(row["tags"]) == len(row["entity_scores"]) == max(len(t) for t in TEXTS)


@pytest.mark.parametrize(
    "path,body,status",
    [
        ("/v1/models/model:predict", b"{not json", 400),
        ("/v1/models/model:predict", b'{"inputs": ["a"]}', 400),
        ("/v1/models/model:predict", b'{"instances": []}', 400),
        ("/v1/models/model:predict", b'{"instances": [1, 2]}', 400),
        ("/v1/models/model:predict", b'{"instances": ["a"], "signature_name": "nope"}', 404),
        ("/v1/models/other:predict", b'{"instances": ["a"]}', 404),
    ],
)
def test_rest_errors_are_json(emulator, path, body, status):
    got, content_type, out = post(emulator.url + path, body, "application/json")
    assert got == status and content_type == "application/json"
    assert isinstance(json.loads(out)["error"], str)


def test_model_status_and_ping(emulator):
    with urllib.request.urlopen(emulator.url + "/v1/models/model", timeout=30) as answer:
        status = json.loads(answer.read())["model_version_status"][0]
    assert status["state"] == "AVAILABLE" and status["version"] == "1"
    with urllib.request.urlopen(emulator.url + "/ping", timeout=30) as answer:
        assert answer.status == 200


# ----------------------------------------------------------------------------- the handlers
@pytest.mark.parametrize(
    "content_type,body",
    [
        ("application/json", json.dumps({"texts": TEXTS})),
        ("application/json; charset=utf-8", json.dumps({"instances": [{"text": t} for t in TEXTS]})),
        ("application/json", json.dumps(TEXTS, ensure_ascii=False)),
    ],
)
def test_json_in_json_out_equals_predictor(emulator, expected, content_type, body):
    status, answer_type, out = post(emulator.url + "/invocations", body.encode("utf-8"), content_type)
    assert status == 200 and answer_type == "application/json"
    records = json.loads(out)["predictions"]
    assert_same_records(records, expected(TEXTS))
    entities = [e for r in records for e in r["entities"]]
    assert entities and all(0.0 <= e["score"] <= 1.0 for e in entities)
    assert max(e["score"] for e in entities) > 0.5  # a confident entity exists
    assert all(r["text"][e["start"]:e["end"]] == e["text"] for r in records for e in r["entities"])


def test_single_text_json(emulator, expected):
    status, _, out = post(emulator.url + "/invocations", json.dumps({"text": TEXTS[0]}).encode(), "application/json")
    assert status == 200 and list(json.loads(out)) == ["predictions"]
    assert_same_records(json.loads(out)["predictions"], expected(TEXTS[:1]))


def test_text_and_json_lines_in_json_lines_out(emulator, expected):
    want = expected(TEXTS)
    status, answer_type, out = post(emulator.url + "/invocations", ("\n".join(TEXTS) + "\n").encode(), "text/plain")
    assert status == 200 and answer_type == "application/jsonlines"
    assert_same_records(json_lines(out), want)
    lines = "\n".join(json.dumps({"text": t} if i % 2 else t) for i, t in enumerate(TEXTS))
    # No Accept header: the container passes application/json, which must not turn lines into one document.
    status, answer_type, out = post(emulator.url + "/invocations", lines.encode(), "application/jsonlines")
    assert status == 200 and answer_type == "application/jsonlines"
    assert_same_records(json_lines(out), want)
    # An explicit JSON-lines Accept turns a JSON document into lines too.
    status, answer_type, out = post(
        emulator.url + "/invocations", json.dumps(TEXTS).encode(), "application/json", accept="application/jsonlines"
    )
    assert status == 200 and answer_type == "application/jsonlines"
    assert_same_records(json_lines(out), want)


def test_bad_lines_get_an_error_record_in_place(emulator, expected):
    body = "\n".join([json.dumps(TEXTS[0]), "{oops", json.dumps({"txt": "x"}), json.dumps(42), json.dumps(TEXTS[2])])
    status, _, out = post(emulator.url + "/invocations", body.encode(), "application/jsonlines")
    assert status == 200
    records = json_lines(out)
    assert len(records) == 5
    good = expected([TEXTS[0], TEXTS[2]])
    assert_same_records([records[0], records[4]], good)
    assert [set(r) for r in records[1:4]] == [{"error"}] * 3
    assert records[1]["error"].startswith("line 2")
    # Nothing readable at all: still one error line per input line.
    status, _, out = post(emulator.url + "/invocations", b"{oops\n[1]\n", "application/jsonlines")
    assert status == 200 and [set(r) for r in json_lines(out)] == [{"error"}] * 2


@pytest.mark.parametrize(
    "body,content_type,fragment",
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b'{"texts": [1]}', "application/json", "texts[0]"),
        (b'{"foo": 1}', "application/json", '"text"'),
        (b"\xff\xfe bad", "application/json", "UTF-8"),
        (b"", "text/plain", "empty"),
        (b"abc", "text/csv", "Content-Type"),
    ],
)
def test_bad_requests_give_error_json_and_the_server_keeps_serving(emulator, expected, body, content_type, fragment):
    status, answer_type, out = post(emulator.url + "/invocations", body, content_type)
    assert status == 500 and answer_type == "application/json"  # the container's status for handler errors
    assert fragment in json.loads(out)["error"]
    status, _, out = post(emulator.url + "/invocations", TEXTS[0].encode(), "text/plain")
    assert status == 200
    assert_same_records(json_lines(out), expected(TEXTS[:1]))


def test_output_handler_reports_tf_serving_errors():
    class Answer:
        status_code = 400
        content = b'{"error": "Servable not found"}'

    tfs_inference.input_handler(b"abc", type("Ctx", (), {"request_content_type": "text/plain", "accept_header": None})())
    with pytest.raises(ValueError, match="400: Servable not found"):
        tfs_inference.output_handler(Answer(), None)
    with pytest.raises(RuntimeError, match="without input_handler"):
        tfs_inference.output_handler(Answer(), None)


# ----------------------------------------------------------------------------- span decoding
@pytest.mark.parametrize("scheme", ["bio", "bioes"])
def test_plain_python_decoder_agrees_with_tagset(scheme):
    tagset = TagSet(["LOC", "PER"], scheme)
    rng = random.Random(0)
    for _ in range(2000):
        tags = [rng.choice(tagset.tags) for _ in range(rng.randint(0, 9))]
        ids = [tagset.tag_to_id[t] for t in tags]
        want = [(e.start, e.end, e.type) for e in tagset.decode(ids)]
        assert tfs_inference.decode_entities(tags, scheme) == want, tags
