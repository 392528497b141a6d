"""The workshop notebooks, executed in order with papermill on small parameters.

One module-scoped run executes 01 → 06 in a shared workspace (a few hundred MSRA sentences
from $MSRA_DIR when present, generated data otherwise; the `micro` model; tens of steps),
with fake AWS credentials and account id planted in the environment; AWS calls go to a local
moto server that the notebooks start themselves (aws_endpoint="moto"). The tests then check
the files and outputs the notebooks left behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from albert_ner.workshop import runs
from albert_ner.workshop.papermill_runner import (
    NOTEBOOKS,
    PROFILES,
    REPO_ROOT,
    NotebookFailed,
    install_kernel,
    run_notebook,
)
from albert_ner.workshop.safety import find_secrets

from conftest import MSRA_DIR, msra_available

pytestmark = pytest.mark.slow

# Planted in the kernels' environment; none of them may appear in any output.
FAKE_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKEWORKSHOPTEST7",
    "AWS_SECRET_ACCESS_KEY": "fakeWorkshopSecretKey/0123456789abcdefGHIJ",
    "AWS_SESSION_TOKEN": "FakeWorkshopSessionToken//+0123456789==",
    "AWS_ACCOUNT_ID": "246813579024",
    "MOTO_ACCOUNT_ID": "246813579024",  # so moto's ARNs, bucket names and image URIs carry it
}
TRAINING_ROUTES = ("notebook", "byoc", "byos")


def smoke_parameters(workspace: Path) -> dict:
    params = dict(PROFILES["smoke"])
    params["workspace"] = str(workspace)
    params["pretrained_checkpoint"] = "none"  # the micro model from random init, GPU or not
    if msra_available():
        # 500 real sentences: micro goes from entity F1 0 (step 50) to about 0.35 (step 400).
        params.update(data_source="msra", data_dir=str(MSRA_DIR))
    else:
        # Generated data is learnt much faster: evaluate early so the first point is low.
        params.update(data_source="synthetic", max_steps=200, eval_every=20, learning_rate=None)
    return params


@pytest.fixture(scope="module")
def workshop(tmp_path_factory):
    """Runs every notebook once, in order, in one workspace; yields paths and parameters."""
    base = tmp_path_factory.mktemp("workshop")
    kernel = install_kernel(base / "kernel")
    params = smoke_parameters(base / "workspace")
    patch = pytest.MonkeyPatch()
    for key, value in FAKE_SECRETS.items():
        patch.setenv(key, value)
    patch.delenv("AWS_ENDPOINT_URL", raising=False)
    executed = {}
    try:
        for name in NOTEBOOKS:
            result = run_notebook(REPO_ROOT / name, base / "executed" / name, params,
                                  kernel_name=kernel, cwd=REPO_ROOT, timeout=900)
            executed[name] = result
    finally:
        patch.undo()
    yield {"workspace": Path(params["workspace"]), "executed": executed, "params": params, "base": base}


def outputs_text(path: Path) -> str:
    """Every output of an executed notebook, as one string."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return json.dumps([c.get("outputs", []) for c in nb["cells"]], ensure_ascii=False)


def test_every_notebook_ran(workshop):
    assert list(workshop["executed"]) == list(NOTEBOOKS)
    for result in workshop["executed"].values():
        nb = json.loads(result.output.read_text(encoding="utf-8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(c.get("execution_count") for c in code), f"{result.notebook}: a cell did not run"


def test_01_staged_data_channels_and_figures(workshop):
    ws = workshop["workspace"]
    setup = json.loads((ws / "setup.json").read_text())
    assert setup["data"]["source"] == ("msra" if msra_available() else "synthetic")
    assert (Path(setup["channels"]["training"]) / "train.txt").exists()
    assert (Path(setup["channels"]["validation"]) / "dev.txt").exists()
    for figure in ("01_entity_counts.png", "01_sentence_lengths.png", "01_mlm_curve.png"):
        assert (ws / "figures" / figure).stat().st_size > 1000
    # Domain-adaptive pretraining wrote an encoder directory that `train --init-checkpoint` takes.
    from albert_ner.checkpoints import resolve_pretrained

    assert resolve_pretrained(setup["domain_encoder"]).layout == "albert-ner"
    text = outputs_text(workshop["executed"]["01_setup_and_data.ipynb"].output)
    assert "s3://" in text  # the moto upload ran


def route_runs(workspace: Path) -> dict:
    found = {r.route: r for r in runs.load_runs(workspace) if r.route in TRAINING_ROUTES}
    assert set(found) == set(TRAINING_ROUTES), f"routes recorded: {sorted(found)}"
    return found


def test_training_routes_give_identical_curves(workshop):
    found = route_runs(workshop["workspace"])
    reference = found["notebook"].records
    assert len(reference) == workshop["params"]["max_steps"] // workshop["params"]["eval_every"]
    for route in ("byoc", "byos"):
        records = found[route].records
        assert [r["step"] for r in records] == [r["step"] for r in reference], route
        for ours, ref in zip(records, reference):
            for key in ("eval_f", "entity_f1", "loss"):
                assert ours[key] == pytest.approx(ref[key], abs=1e-6), (route, ref["step"], key)


def test_the_curve_rises(workshop):
    records = route_runs(workshop["workspace"])["notebook"].records
    assert records[-1]["entity_f1"] > records[0]["entity_f1"] + 0.15, [r["entity_f1"] for r in records]
    assert records[-1]["eval_f"] > records[0]["eval_f"]


def test_02_shows_curve_throughput_and_predictions(workshop):
    ws = workshop["workspace"]
    for figure in ("02_training_curve.png", "02_throughput.png"):
        assert (ws / "figures" / figure).stat().st_size > 1000
    text = outputs_text(workshop["executed"]["02_run_on_notebook_gpu.ipynb"].output)
    assert "eval_f = " in text and "samples/s" in text
    assert "<mark" in text  # highlighted predictions


def test_03_04_local_runs_use_real_local_mode_when_docker_answers(workshop):
    """With Docker (`make test` starts it and builds the image), 03 trains through SageMaker
    SDK v3 local mode and serves a local endpoint, and 04 runs script mode locally; without,
    both say they used the process runner."""
    from albert_ner.workshop.jobs import local_mode_unavailable_reason

    byoc = outputs_text(workshop["executed"]["03_byoc.ipynb"].output)
    byos = outputs_text(workshop["executed"]["04_byos.ipynb"].output)
    reason = local_mode_unavailable_reason()
    if reason is None:
        assert "local runs use: SageMaker local mode (docker compose)" in byoc
        assert "runner: SageMaker SDK v3 local mode (docker compose, image" in byoc
        assert "local endpoint ready in" in byoc and "→" in byoc
        assert "runner: SageMaker SDK v3 local mode (image" in byos
    else:
        print(f"notebooks 03/04 used the process runner: {reason}")
        assert f"runner: process runner ({reason})" in byoc
        assert "skipped: the local endpoint needs SageMaker local mode" in byoc
        assert f"runner: process runner ({reason})" in byos


def test_05_builds_figures_and_tables_from_the_runs(workshop):
    ws = workshop["workspace"]
    for figure in ("05_eval_f_curves.png", "05_entity_f1_curves.png"):
        assert (ws / "figures" / figure).stat().st_size > 1000
    summary = (ws / "analysis" / "summary.csv").read_text()
    for route in TRAINING_ROUTES:
        assert route in summary
    per_type = (ws / "analysis" / "per_type.csv").read_text()
    assert "micro avg" in per_type and "PER" in per_type
    assert "wrong_boundary" in (ws / "analysis" / "error_kinds.csv").read_text()
    assert "(none)" in (ws / "analysis" / "type_confusion.csv").read_text()
    assert "<mark" in (ws / "analysis" / "worst_sentences.html").read_text()
    nb = json.loads(workshop["executed"]["05_results_analysis.ipynb"].output.read_text(encoding="utf-8"))
    images = [o for c in nb["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2
    text = outputs_text(workshop["executed"]["05_results_analysis.ipynb"].output)
    assert "largest eval_f difference at the same step: 0.00e+00" in text
    assert "identical: same hardware, deterministic CPU training" in text  # what holds on a CPU


def test_06_serves_deploys_and_transforms(workshop):
    ws = workshop["workspace"]
    results = json.loads((ws / "deploy" / "06_results.json").read_text(encoding="utf-8"))
    assert results["run"] == "02_notebook"
    # The local load test: every good request answered right, every bad one refused with a 4xx.
    load = results["load_test"]["batching on"]
    assert load["requests"] == workshop["params"]["load_requests"]
    assert load["errors_5xx"] == 0 and load["malformed_not_4xx"] == 0 and load["wrong_answers"] == 0
    assert load["requests_per_s"] > 0
    assert (ws / "figures" / "06_load_test.png").stat().st_size > 1000
    # Local batch transform: one joined output line per input line, the bad record as an error line.
    batch = results["batch_local"]
    out = [json.loads(line) for line in Path(batch["output"]).read_text(encoding="utf-8").splitlines()]
    assert len(out) == batch["records"] and batch["error_records"] == 1
    assert all("SageMakerOutput" in line for line in out)
    # The TF Serving handlers, the two endpoints and the batch job all answer what the server does.
    assert results["tfs_matches_server"] is True
    assert results["endpoint_matches_local"] is True and results["tfs_endpoint_matches_local"] is True
    assert results["batch_job"] == {"status": "Completed", "lines": batch["records"], "matches_local": True}
    requests = results["sagemaker_requests"]
    for operation, count in (("CreateModel", 2), ("CreateEndpointConfig", 2), ("CreateEndpoint", 2),
                             ("InvokeEndpoint", 2), ("CreateTransformJob", 1), ("DeleteEndpoint", 2),
                             ("DeleteEndpointConfig", 2), ("DeleteModel", 2)):
        assert requests.count(operation) == count, (operation, requests)
    text = outputs_text(workshop["executed"]["06_deploy_and_batch_inference.ipynb"].output)
    assert "score" in text and "local server exit status: 0" in text


def test_no_secret_in_any_output(workshop):
    texts = {name: r.output.read_text(encoding="utf-8") for name, r in workshop["executed"].items()}
    assert find_secrets(texts, FAKE_SECRETS) == []


def test_harness_reports_a_raising_cell(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[
        new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        new_code_cell("print('before', x)"),
        new_code_cell("raise ValueError('deliberate failure ' + str(x))"),
        new_code_cell("print('never reached')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "failing.ipynb"
    nbformat.write(nb, str(source))
    kernel = install_kernel(tmp_path / "kernel")
    with pytest.raises(NotebookFailed) as info:
        run_notebook(source, tmp_path / "out" / "failing.ipynb", {"x": 41}, kernel_name=kernel, timeout=120)
    assert "deliberate failure 41" in str(info.value)
    executed = (tmp_path / "out" / "failing.ipynb").read_text(encoding="utf-8")
    assert "deliberate failure 41" in executed and "never reached" not in outputs_text(tmp_path / "out" / "failing.ipynb")
