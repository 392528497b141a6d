"""Unit tests of the workshop helpers (albert_ner.workshop) and of the notebooks as files."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import tarfile
import threading
from pathlib import Path

import pytest

from albert_ner.data.example import Entity, Example
from albert_ner.workshop import analysis, data, display, runs, safety, training
from albert_ner.workshop.papermill_runner import NOTEBOOKS, REPO_ROOT, install_kernel, notebook_parameters

# ----------------------------------------------------------------------------- safety


def test_redact_masks_account_ids_and_env_secrets():
    env = {"AWS_SECRET_ACCESS_KEY": "s3cr3tVALUE", "AWS_SESSION_TOKEN": "tok-123456"}
    text = "arn:aws:iam::123456789012:role/R 123456789012.dkr.ecr.x s3cr3tVALUE tok-123456 step 1234567"
    out = safety.redact(text, env)
    assert "123456789012" not in out and "s3cr3tVALUE" not in out and "tok-123456" not in out
    assert "arn:aws:iam::<account>:role/R" in out
    assert "step 1234567" in out  # other numbers stay


def test_credentials_summary_never_shows_values():
    env = {"AWS_ACCESS_KEY_ID": "AKIAFAKEFAKE", "AWS_SECRET_ACCESS_KEY": "x" * 40, "AWS_SESSION_TOKEN": "t" * 20}
    summary = safety.credentials_summary(env)
    assert "AKIAFAKEFAKE" not in summary and "temporary" in summary


def test_find_secrets():
    hits = safety.find_secrets({"a.ipynb": "xx KEY yy", "b.ipynb": "clean"}, {"AWS_ACCESS_KEY_ID": "KEY"})
    assert hits == [("a.ipynb", "AWS_ACCESS_KEY_ID")]


# ----------------------------------------------------------------------------- data


def test_prepare_corpus_generates_when_asked(tmp_path):
    corpus = data.prepare_corpus(tmp_path, None, source="synthetic", train_sentences=40, dev_sentences=10,
                                 test_sentences=10)
    assert corpus["source"] == "synthetic"
    rows = {r["split"]: r for r in data.validate_corpus(corpus)}
    assert rows["train"]["sentences"] == 40 and rows["dev"]["sentences"] == 10
    assert rows["train"]["scheme"] == "bio" and rows["train"]["types"] == "LOC, ORG, PER"


def test_prepare_corpus_slices_a_local_copy(tmp_path):
    from albert_ner.data.synthetic import write_synthetic_split

    source = tmp_path / "msra"
    write_synthetic_split(source, n_train=30, n_dev=20, n_test=20)
    corpus = data.prepare_corpus(tmp_path / "ws", source, train_sentences=5, dev_sentences=None, test_sentences=3)
    assert corpus["source"] == "msra"
    rows = {r["split"]: r["sentences"] for r in data.validate_corpus(corpus)}
    assert rows == {"train": 5, "dev": 20, "test": 3}


def test_stage_channels_and_upload(tmp_path):
    corpus = data.prepare_corpus(tmp_path, None, source="synthetic", train_sentences=10, dev_sentences=5, test_sentences=5)
    channels = data.stage_channels(tmp_path, corpus)
    assert sorted(p.name for p in Path(channels["training"]).iterdir()) == ["train.txt"]
    assert sorted(p.name for p in Path(channels["validation"]).iterdir()) == ["dev.txt"]
    assert training.channel_file(channels["validation"]).name == "dev.txt"

    class FakeS3:
        uploaded = []

        def upload_file(self, path, bucket, key):
            self.uploaded.append((Path(path).name, bucket, key))

    s3 = FakeS3()
    uris = data.upload_channels(channels, "bkt", "/pre/data/", s3)
    assert uris == {"training": "s3://bkt/pre/data/training/", "validation": "s3://bkt/pre/data/validation/"}
    assert ("train.txt", "bkt", "pre/data/training/train.txt") in s3.uploaded


@pytest.fixture()
def file_server(tmp_path):
    """A static HTTP server on 127.0.0.1 serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_download_msra_verifies_and_splits(tmp_path, file_server):
    root, url = file_server
    sentences = [f"{chr(0x4e00 + i)}\tB-PER\n{chr(0x4e01 + i)}\tI-PER\n0\t\n" for i in range(30)]
    train_text = "\n".join(sentences) + "\n"
    test_text = "中\tB-LOC\n国\tI-LOC\n\n"
    (root / "train.txt").write_text(train_text, encoding="utf-8")
    (root / "test.txt").write_text(test_text, encoding="utf-8")
    upstream = {"train": data.UpstreamFile(f"{url}/train.txt", _sha(train_text)),
                "test": data.UpstreamFile(f"{url}/test.txt", _sha(test_text))}
    paths = data.download_msra(tmp_path / "msra", upstream)
    rows = {r["split"]: r for r in data.validate_corpus(paths)}
    assert rows["train"]["sentences"] == 28 and rows["dev"]["sentences"] == 2 and rows["test"]["sentences"] == 1
    assert data.corpus_present(tmp_path / "msra")
    # the empty tag became O
    assert "0\tO" in paths["train"].read_text(encoding="utf-8")


def test_fetch_verified_rejects_a_bad_checksum(tmp_path, file_server):
    root, url = file_server
    (root / "f.txt").write_text("tampered", encoding="utf-8")
    with pytest.raises(data.ChecksumError):
        data.fetch_verified(f"{url}/f.txt", tmp_path / "f.txt", _sha("original"))
    assert not (tmp_path / "f.txt").exists() and not (tmp_path / "f.txt.part").exists()


def test_prepare_pretrained_none():
    out = data.prepare_pretrained("none")
    assert out["init_checkpoint"] is None and "random" in out["message"]


def test_setup_roundtrip(tmp_path):
    with pytest.raises(FileNotFoundError, match="01_setup_and_data"):
        data.load_setup(tmp_path)
    data.save_setup(tmp_path, {"a": 1})
    assert data.load_setup(tmp_path) == {"a": 1}


# ----------------------------------------------------------------------------- display


def test_highlight_html_escapes_and_marks():
    markup = display.highlight_html("<王小明>在北京", [Entity(1, 4, "PER"), Entity(5, 7, "LOC")], label="pred")
    assert "&lt;" in markup and "<王" not in markup
    assert markup.count("<mark") == 2 and ">王小明<sub" in markup and ">LOC</sub>" in markup


def test_longest_sentences_counts_windows():
    examples = [Example("甲" * n) for n in (10, 200, 63)]
    frame = display.longest_sentences(examples, max_seq_length=64, n=2)
    assert list(frame["length"]) == [200, 63]
    assert list(frame["windows"]) == [6, 2]
    assert list(frame["over_limit"]) == [True, True]


def test_stats_frames():
    from albert_ner.data.stats import corpus_stats

    stats = {"train": corpus_stats([Example("王小明", [Entity(0, 3, "PER")])]), "dev": corpus_stats([Example("北京", [Entity(0, 2, "LOC")])])}
    counts = display.entity_counts_frame(stats)
    assert counts.loc["PER", "train"] == 1 and counts.loc["PER", "dev"] == 0
    assert display.stats_frame(stats).loc["sentences", "train"] == 1


# ----------------------------------------------------------------------------- analysis


def test_classify_sentence_kinds():
    gold = [Entity(0, 3, "PER"), Entity(4, 6, "LOC"), Entity(8, 10, "ORG"), Entity(12, 14, "LOC"), Entity(20, 22, "PER")]
    pred = [Entity(0, 3, "PER"), Entity(4, 6, "ORG"), Entity(8, 11, "ORG"), Entity(12, 15, "PER"), Entity(16, 18, "LOC")]
    kinds = [k for k, _, _ in analysis.classify_sentence(gold, pred)]
    assert kinds == ["correct", "wrong_type", "wrong_boundary", "wrong_boundary_and_type", "spurious", "missed"]


def test_error_tables_and_worst():
    gold = [Example("王小明在北京", [Entity(0, 3, "PER"), Entity(4, 6, "LOC")]), Example("上海", [Entity(0, 2, "LOC")])]
    pred = [Example("王小明在北京", [Entity(0, 2, "PER"), Entity(4, 6, "ORG")]), Example("上海", [Entity(0, 2, "LOC")])]
    counts = analysis.error_counts(gold, pred)
    assert counts.loc["PER", "wrong_boundary"] == 1 and counts.loc["LOC", "wrong_type"] == 1
    assert counts.loc["LOC", "correct"] == 1 and counts.loc["all"].sum() == 3
    confusion = analysis.type_confusion(gold, pred)
    assert confusion.loc["LOC", "ORG"] == 1 and confusion.loc["LOC", "LOC"] == 1
    assert confusion.loc["PER", analysis.NONE] == 1 and confusion.loc[analysis.NONE, "PER"] == 1
    worst = analysis.worst_sentences(gold, pred, n=5)
    assert [w["index"] for w in worst] == [0] and worst[0]["errors"] == 2
    assert "gold" in analysis.worst_sentences_html(worst)


# ----------------------------------------------------------------------------- runs


def _fake_model_dir(path: Path, values: list[float]) -> Path:
    path.mkdir(parents=True)
    with open(path / "metrics.jsonl", "w") as fh:
        for i, v in enumerate(values):
            fh.write(json.dumps({"step": 10 * (i + 1), "loss": 1.0, "eval_f": v, "entity_f1": v / 2,
                                 "samples_per_sec": 5.0 + i}) + "\n")
    (path / "final_metrics.json").write_text(json.dumps({"best_entity_f1": max(values) / 2}))
    return path


def test_record_and_load_runs_incl_sagemaker_artifact(tmp_path):
    ws = tmp_path / "ws"
    runs.record_run(ws, "02_notebook", "notebook", _fake_model_dir(tmp_path / "a", [0.1, 0.5]), seed=1)
    # a SageMaker job's model.tar.gz, recorded as the directory that holds it
    job = _fake_model_dir(tmp_path / "job_model", [0.1, 0.5])
    archive_dir = tmp_path / "job"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / "model.tar.gz", "w:gz") as tar:
        for p in job.iterdir():
            tar.add(p, arcname=p.name)
    runs.record_run(ws, "03_sagemaker_job", "sagemaker-job", archive_dir)
    loaded = runs.load_runs(ws)
    assert [r.name for r in loaded] == ["02_notebook", "03_sagemaker_job"]
    assert loaded[0].info["seed"] == 1 and loaded[1].records[-1]["eval_f"] == 0.5
    assert runs.max_curve_difference(loaded) == 0.0
    summary = runs.summary_frame(loaded)
    assert list(summary["samples_per_sec"]) == [5.5, 5.5]
    frame = runs.curves_frame(loaded)
    assert set(frame["metric"]) == {"eval_f", "entity_f1"} and len(frame) == 8


def test_max_curve_difference_detects_differences(tmp_path):
    a = runs.Run("a", "notebook", _fake_model_dir(tmp_path / "a", [0.1, 0.5]), {})
    b = runs.Run("b", "byoc", _fake_model_dir(tmp_path / "b", [0.1, 0.6]), {})
    c = runs.Run("c", "byos", _fake_model_dir(tmp_path / "c", [0.1]), {})
    assert runs.max_curve_difference([a, b]) == pytest.approx(0.1)
    assert runs.max_curve_difference([a, c]) == float("inf")


def test_per_type_frame():
    scores = {"entity_precision": 0.5, "entity_recall": 0.5, "entity_f1": 0.5,
              "per_type": {"LOC": {"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2}}}
    frame = runs.per_type_frame(scores)
    assert frame.loc["micro avg", "support"] == 2 and frame.loc["LOC", "recall"] == 0.5


def test_train_options():
    options = training.train_options("micro", 30, 3, 10, 8, 40, None, 5)
    assert options == {"model_config": "micro", "epochs": 3.0, "eval_every": 10, "log_every": 10,
                       "batch_size": 8, "max_seq_length": 40, "seed": 5, "max_steps": 30}
    with_ckpt = training.train_options("micro", None, 3, 10, 8, 40, 2e-5, 5, init_checkpoint="ck")
    assert "model_config" not in with_ckpt and with_ckpt["learning_rate"] == 2e-5 and "max_steps" not in with_ckpt


# ----------------------------------------------------------------------------- plots


def test_plots_write_pngs(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from albert_ner.data.stats import corpus_stats
    from albert_ner.workshop import plots

    stats = {"train": corpus_stats([Example("王小明", [Entity(0, 3, "PER")])])}
    records = [{"step": 10, "loss": 2.0, "eval_f": 0.2, "entity_f1": 0.1}, {"step": 20, "loss": 1.0, "eval_f": 0.6, "entity_f1": 0.4}]
    figs = {
        "counts": plots.plot_entity_counts(stats),
        "lengths": plots.plot_length_histogram([3, 10, 70], 64),
        "training": plots.plot_training(records),
        "curves": plots.plot_curves({"run": records}, "eval_f"),
        "throughput": plots.plot_throughput({"run": 12.0}),
    }
    for name, fig in figs.items():
        assert plots.save_figure(fig, tmp_path / f"{name}.png").stat().st_size > 1000
    assert figs["curves"].axes[0].get_xscale() == "symlog"  # 20 steps next to the article's 2374


# ----------------------------------------------------------------------------- notebooks as files


def test_kernel_spec_points_at_this_interpreter(tmp_path, monkeypatch):
    import sys

    monkeypatch.setenv("JUPYTER_PATH", "")
    name = install_kernel(tmp_path)
    spec = json.loads((tmp_path / "share/jupyter/kernels" / name / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec(name).argv[0] == sys.executable


REQUIRED_PARAMETERS = {
    "workspace", "data_source", "data_dir", "pretrained_checkpoint", "model_config", "max_steps", "epochs",
    "batch_size", "max_seq_length", "instance_type", "instance_count", "seed", "use_aws",
}


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if (REPO_ROOT / n).exists()])
def test_notebook_files_are_clean_and_parameterised(name):
    import nbformat

    nb = nbformat.read(str(REPO_ROOT / name), as_version=4)
    nbformat.validate(nb)
    assert REQUIRED_PARAMETERS <= notebook_parameters(REPO_ROOT / name)
    # papermill parses the cell line by line; every parameter must be visible to it too
    import papermill

    assert set(papermill.inspect_notebook(str(REPO_ROOT / name))) == notebook_parameters(REPO_ROOT / name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "commit notebooks without outputs"
            assert len(cell.source.splitlines()) <= 30 or "parameters" in cell.metadata.get("tags", []), cell.source[:80]
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert markdown and all(any("\u4e00" <= ch <= "\u9fff" for ch in m) for m in markdown), "prose in Chinese"
    # prose before every code cell except the first
    kinds = [c.cell_type for c in nb.cells]
    assert all(kinds[i - 1] == "markdown" for i, k in enumerate(kinds) if k == "code" and i > 0)


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if (REPO_ROOT / n).exists()])
def test_notebook_defaults_are_a_notebook_instance_s_not_ci_s(name):
    import papermill

    defaults = {k: v["default"] for k, v in papermill.inspect_notebook(str(REPO_ROOT / name)).items()}
    # The real corpus (downloaded when missing), never generated data unless asked for ...
    assert defaults["data_source"] == '"msra"' and "shared" not in defaults["data_dir"]
    # ... the article's pretrained model where a GPU makes it affordable, and the recipe's own
    # learning rate for whichever model that is (6e-3 would wreck a pretrained ALBERT).
    assert defaults["pretrained_checkpoint"] == '"auto"' and defaults["learning_rate"] == "None"
    assert "download_data" not in defaults
    if name == "04_byos.ipynb":  # local script mode in the image the real job runs
        assert defaults["byos_local_image"] == '"dlc"'


def test_msra_without_network_is_a_clear_error_not_generated_data(tmp_path):
    unreachable = {"train": data.UpstreamFile("http://127.0.0.1:9/msra_train_bio.txt", "0" * 64),
                   "test": data.UpstreamFile("http://127.0.0.1:9/msra_test_bio.txt", "0" * 64)}
    with pytest.raises(RuntimeError) as error:
        data.prepare_corpus(tmp_path / "ws", tmp_path / "msra", upstream=unreachable)
    message = str(error.value)
    assert "http://127.0.0.1:9/msra_train_bio.txt" in message and str(tmp_path / "msra" / "upstream") in message
    assert 'data_source = "synthetic"' in message and "train.txt" in message
    assert not (tmp_path / "ws" / "data" / "train.txt").exists()  # nothing was staged instead
    with pytest.raises(ValueError, match="data_source must be one of msra, synthetic"):
        data.prepare_corpus(tmp_path / "ws", tmp_path / "msra", source="generated")


def test_auto_pretrained_is_the_articles_model_on_a_gpu_only():
    spec, why = data.choose_pretrained("auto", has_gpu=True)
    assert spec == "albert_base_zh_additional_36k_steps" and "GPU" in why
    spec, why = data.choose_pretrained("auto", has_gpu=False)
    assert spec == "none" and "no GPU" in why
    assert data.choose_pretrained("none", has_gpu=True) == ("none", "set explicitly")
    out = data.prepare_pretrained("auto")  # this machine: no GPU
    assert out["init_checkpoint"] is None and "no GPU" in out["message"]


def test_job_inputs_match_the_notebook_options(tmp_path):
    options = training.train_options("micro", 30, 3, 10, 8, 40, None, 5)
    hps, inputs = training.job_inputs({"training": "/t", "validation": "/v"}, options)
    assert hps == options and inputs == {"training": "/t", "validation": "/v"}
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    hps, inputs = training.job_inputs({"training": "/t", "validation": "/v"}, dict(options, init_checkpoint=str(checkpoint)))
    assert hps["init_checkpoint"] == "/opt/ml/input/data/pretrained" and inputs["pretrained"] == str(checkpoint)


# ----------------------------------------------------------------------------- AWS (moto)


def test_aws_helpers_against_moto(tmp_path, monkeypatch):
    pytest.importorskip("moto")
    pytest.importorskip("boto3")
    from albert_ner.workshop import jobs
    from albert_ner.workshop.aws import connect

    # connect() sets AWS_* variables for the notebook's process: register them all with
    # monkeypatch (set, then delete) so they are restored for the rest of the session.
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SAGEMAKER_ROLE",
                "AWS_REGION", "AWS_DEFAULT_REGION", "SAGEMAKER_VALIDATE_ROLE", "SAGEMAKER_TELEMETRY_OPT_OUT"):
        monkeypatch.setenv(key, "placeholder")
        monkeypatch.delenv(key)
    assert not connect(False).enabled
    aws = connect(True, "moto", "eu-west-1")
    try:
        assert aws.mode == "moto" and not aws.costs_money and "moto" in aws.describe()
        bucket = aws.bucket("workshop-bucket")
        assert aws.bucket("workshop-bucket") == bucket  # idempotent
        corpus = data.prepare_corpus(tmp_path, None, source="synthetic", train_sentences=10, dev_sentences=5, test_sentences=5)
        uris = data.upload_channels(data.stage_channels(tmp_path, corpus), bucket, "ws/data", aws.client("s3"))
        assert uris["training"] == "s3://workshop-bucket/ws/data/training/"
        assert aws.execution_role().startswith("arn:aws:iam::") and aws.execution_role() == aws.execution_role()
        uri, created = jobs.ecr_repository(aws, "albert-ner")
        assert created and uri.endswith("/albert-ner") and jobs.ecr_repository(aws, "albert-ner") == (uri, False)
        assert jobs.delete_ecr_repository(aws, "albert-ner") and not jobs.delete_ecr_repository(aws, "albert-ner")
        # a completed job's model.tar.gz is fetched; a missing one is not
        aws.client("s3").put_object(Bucket=bucket, Key="ws/out/model.tar.gz", Body=b"tar")
        info = {"status": "Completed", "model_artifact": f"s3://{bucket}/ws/out/model.tar.gz"}
        assert jobs.fetch_model_artifact(aws, info, tmp_path / "job").read_bytes() == b"tar"
        assert jobs.fetch_model_artifact(aws, dict(info, model_artifact=f"s3://{bucket}/nope.tar.gz"), tmp_path / "x") is None
        assert jobs.fetch_model_artifact(aws, dict(info, status="Failed"), tmp_path / "x") is None
        assert aws.delete_prefix(bucket, "ws/") == 3
    finally:
        aws.close()
    assert aws.moto is None and "AWS_ENDPOINT_URL" not in os.environ


def test_runner_parameters_and_secret_check(tmp_path):
    from albert_ner.workshop import papermill_runner as pr

    params = pr.default_parameters("smoke", tmp_path)
    assert params["workspace"] == str((tmp_path / "workspace").resolve()) and params["model_config"] == "micro"
    assert pr._parse_value("None") is None and pr._parse_value("12") == 12 and pr._parse_value("micro") == "micro"
    out = tmp_path / "nb.ipynb"
    out.write_text('{"outputs": "AKIAPLANTED99"}')
    result = pr.NotebookResult("nb.ipynb", out, 1.0)
    assert pr.check_no_secrets([result], {"AWS_ACCESS_KEY_ID": "AKIAPLANTED99"}) == [("nb.ipynb", "AWS_ACCESS_KEY_ID")]
    assert pr.check_no_secrets([result], {"AWS_ACCESS_KEY_ID": "AKIAOTHER"}) == []


def test_recipe_results_registry_loads_every_committed_run():
    registry = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "recipes.json"
    results = runs.load_recipe_results(registry)
    assert len(results) >= 2
    for result in results:
        assert result.records and all("eval_f" in r and "epoch" in r for r in result.records)
        # 0.0 is a real result (a recipe that tagged nothing within its budget), 1.0 is not.
        assert result.test_entity_f1 is not None and 0.0 <= result.test_entity_f1 < 1.0
    assert max(r.test_entity_f1 for r in results) > 0.85  # the default recipe's committed runs
    import matplotlib

    matplotlib.use("Agg")
    from albert_ner.workshop import plots

    fig = plots.plot_recipe_curves(results)
    lines = fig.axes[0].get_lines()
    assert len(lines) == len(results) + 1  # every run and the article
    article = lines[-1]
    # The article's 2,374 steps are its 3 epochs.
    assert article.get_xdata()[-1] == pytest.approx(3.0)


def test_recipe_results_registry_names_a_missing_run(tmp_path):
    registry = tmp_path / "recipes.json"
    registry.write_text(json.dumps({"runs": [{"name": "gone", "minutes": 1, "metrics": "gone/metrics.jsonl"}]}))
    with pytest.raises(FileNotFoundError, match="'gone'"):
        runs.load_recipe_results(registry)
