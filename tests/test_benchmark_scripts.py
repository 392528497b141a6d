"""The peer-comparison benchmarks (benchmarks/train_step_vs_hf.py, inference_vs_peers.py,
plot_peers.py): what runs without the peer venv.

Peer tools live in their own venv (benchmarks/peers/make_venv.sh) that CI does not build, so
these tests cover the project's side at micro size, the label mappings that turn peer output
into character spans, the shared batching rule, and the error when the peer venv is missing.
"""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from albert_ner.data.example import Entity

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def load_script(name: str):
    """Imports benchmarks/NAME.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def inference():
    return load_script("inference_vs_peers")


# ----------------------------------------------------------------------------- label mappings


def test_jiagu_word_tags_become_character_spans(inference):
    text = "任文博出生于拉萨，财政部发言人曾芳表示。"
    words = ["任", "文博", "出生于", "拉萨", "，", "财政部", "发言人", "曾", "芳", "表示", "。"]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "O", "B-PER", "I-PER", "O", "O"]
    entities, lost = inference.jiagu_entities(text, words, tags)
    assert lost == 0
    assert entities == [Entity(0, 3, "PER"), Entity(6, 8, "LOC"), Entity(9, 12, "ORG"), Entity(15, 17, "PER")]
    assert [text[e.start : e.end] for e in entities] == ["任文博", "拉萨", "财政部", "曾芳"]


def test_jiagu_mapping_edge_cases(inference):
    # An I- word after O opens an entity; two B- words in a row are two entities; a word the
    # text does not contain is dropped and counted, the rest stays aligned.
    text = "去北京大学和上海复旦"
    words = ["去", "北京", "大学", "和", "上海", "复旦"]
    tags = ["O", "O", "I-ORG", "O", "B-LOC", "B-ORG"]
    assert inference.jiagu_entities(text, words, tags) == (
        [Entity(3, 5, "ORG"), Entity(6, 8, "LOC"), Entity(8, 10, "ORG")], 0)
    entities, lost = inference.jiagu_entities("北京欢迎你", ["北京", "XX", "欢迎", "你"], ["B-LOC", "B-PER", "O", "O"])
    assert (entities, lost) == ([Entity(0, 2, "LOC")], 1)
    with pytest.raises(ValueError):
        inference.jiagu_entities("北京", ["北京"], [])


def test_chinesener_bmes_tags_and_scoring(inference):
    from albert_ner.data.example import Example

    texts = ["王小明在北京", "上海"]
    predictions = [["B-PER", "M-PER", "E-PER", "O", "B-LOC", "E-LOC"], ["S-LOC", "O"]]
    entities, dropped = inference.entities_of("chinesener", texts, predictions)
    assert entities == [[Entity(0, 3, "PER"), Entity(4, 6, "LOC")], [Entity(0, 1, "LOC")]]
    gold = [Example(texts[0], [Entity(0, 3, "PER"), Entity(4, 6, "LOC")]), Example(texts[1], [Entity(0, 2, "LOC")])]
    scores = inference.score(gold, "chinesener", predictions)
    assert scores["entity_precision"] == pytest.approx(2 / 3)
    assert scores["entity_recall"] == pytest.approx(2 / 3)
    assert scores["per_type"]["LOC"]["support"] == 2


def test_peer_batching_matches_the_predictor():
    """The HF child batches with bench_common's copy of the Predictor's rule; both must agree."""
    sys.path.insert(0, str(BENCH / "peers"))
    import bench_common

    from albert_ner.text.batching import sentence_batches

    rng = random.Random(3)
    for budget in (1, 50, 512, 8192):
        lengths = [rng.choice([0, 1, 2, rng.randrange(1, 800)]) for _ in range(300)]
        assert bench_common.length_sorted_batches(lengths, budget) == sentence_batches(lengths, budget)


def test_missing_peer_venv_names_the_build_command(tmp_path):
    train = load_script("train_step_vs_hf")
    with pytest.raises(SystemExit) as raised:
        train.main(["--peer-python", str(tmp_path / "no-venv" / "bin" / "python"), "--out", str(tmp_path)])
    assert "make_venv.sh" in str(raised.value)
    assert not (tmp_path / "train_step.json").exists()


# ----------------------------------------------------------------------------- our side, micro


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), *args],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_train_step_project_side_writes_its_json(tmp_path):
    done = run_script(
        "train_step_vs_hf", "--models", "micro", "--precisions", "fp32", "--sides", "ours",
        "--steps", "2", "--warmup-steps", "1", "--rounds", "2", "--batch-size", "4",
        "--seq-len", "16", "--vocab-size", "300", "--out", str(tmp_path), "--work-dir", str(tmp_path / "work"),
    )
    report = json.loads((tmp_path / "train_step.json").read_text())
    assert report["benchmark"] == "train_step_vs_hf"
    assert {"cpu_model", "cpu_flags", "cpus_online", "date_utc", "command"} <= set(report["machine"])
    assert {"avx512f", "avx512_bf16", "amx_bf16"} <= set(report["machine"]["cpu_flags"])
    assert report["settings"]["batch_size"] == 4 and report["settings"]["seq_len"] == 16
    [result] = report["results"]
    assert (result["model"], result["precision"], result["rounds"]) == ("micro", "fp32", 2)
    ours = result["ours"]
    assert ours["samples_per_sec_median"] > 0 and len(ours["rounds"]) == 2
    assert ours["parameters"] > 0
    assert {"tf_intra_op", "tf_inter_op"} <= set(ours["threads"])
    assert "tensorflow" in ours["versions"]
    assert result["theirs"] is None and result["ratio_ours_over_theirs"] is None
    assert "| micro (micro) | fp32 |" in done.stdout


@pytest.fixture(scope="module")
def inference_run(tmp_path_factory, synthetic_data, trained_model):
    """inference_vs_peers.py on 30 generated test sentences: the trained micro model and an
    untrained micro-shaped export, no peers."""
    out = tmp_path_factory.mktemp("inference_vs_peers")
    done = run_script(
        "inference_vs_peers", "--msra-dir", str(Path(synthetic_data["test"]).parent),
        "--limit", "30", "--model-dir", f"micro={trained_model}", "--shape-only", "micro",
        "--peers", "none", "--rounds", "2", "--warmup", "5", "--vocab-size", "400",
        "--out", str(out), "--work-dir", str(out / "work"),
    )
    return out, done.stdout


@pytest.mark.slow
def test_inference_project_side_writes_its_json(inference_run):
    out, stdout = inference_run
    report = json.loads((out / "inference.json").read_text())
    assert report["benchmark"] == "inference_vs_peers"
    assert report["settings"]["sentences"] == 30 and report["settings"]["rounds"] == 2
    assert report["settings"]["shape_export_seconds"] > 0
    trained, untrained = report["tools"]
    assert trained["name"] == "albert-ner micro" and trained["weights"] == "trained"
    assert untrained["name"] == "albert-ner micro (untrained)" and untrained["weights"] == "random"
    for tool in (trained, untrained):
        assert tool["chars_per_sec"] > 0 and tool["sentences_per_sec"] > 0
        assert tool["load_seconds"] > 0 and tool["peak_rss_mb"] > 0
        assert len(tool["rounds"]) == 2 and "predictions" not in tool["rounds"][0]
        assert tool["predictions_identical_across_rounds"] is True
        assert tool["label_mapping"]
    assert 0.0 <= trained["entity_f1"] <= 1.0
    assert set(trained["per_type"]) >= {"LOC", "ORG", "PER"}
    assert untrained["entity_f1"] is None
    assert "| albert-ner micro | trained |" in stdout


@pytest.mark.slow
def test_plot_writes_a_png(inference_run):
    out, _ = inference_run
    done = run_script("plot_peers", "--dir", str(out))
    png = out / "peers.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in done.stdout
