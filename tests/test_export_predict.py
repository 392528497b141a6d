"""The exported SavedModel, `predict` and `evaluate`: one prediction path, exact offsets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from albert_ner.cli import main
from albert_ner.data.readers import read_conll
from albert_ner.data.schemes import entities_to_tags
from albert_ner.model_dir import ModelDir
from albert_ner.predict import Predictor, evaluate

TEXTS = [
    "任文博出生于拉萨，财政部发言人曾芳表示。",
    "",
    "ＡＢＣ公司 与 Hello World 在 2024 年合作\t完成",
    "北京" * 70,  # 140 characters: several windows of the 38-character model window
    "é ü 😀 \u3000 〇",
]


@pytest.fixture(scope="module")
def saved_model(trained_model):
    return tf.saved_model.load(str(ModelDir(trained_model).saved_model))


def test_text_signature_equals_python_tokenizer_path(trained_model, saved_model):
    predictor = Predictor.from_model_dir(trained_model)
    serve = saved_model.signatures["serving_default"]
    out = serve(text=tf.constant(TEXTS))
    lengths = out["lengths"].numpy()
    assert lengths.tolist() == [len(t) for t in TEXTS]  # nothing truncated or dropped
    ids = predictor.tokenizer.encode_batch(TEXTS)
    width = max(lengths)
    char_ids = np.zeros((len(TEXTS), width), np.int32)
    for r, row in enumerate(ids):
        char_ids[r, : len(row)] = row
    by_ids = saved_model.signatures["predict_ids"](
        char_ids=tf.constant(char_ids), lengths=tf.constant(lengths)
    )
    np.testing.assert_array_equal(out["tag_ids"].numpy(), by_ids["tag_ids"].numpy())
    np.testing.assert_array_equal(out["entity_scores"].numpy(), by_ids["entity_scores"].numpy())
    tags = out["tags"].numpy()
    labels = json.loads((trained_model / "labels.json").read_text())["tags"]
    assert tags[0, 0].decode() in labels


def test_saved_model_uses_core_ops_only(trained_model):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((ModelDir(trained_model).saved_model / "saved_model.pb").read_bytes())
    ops = set()
    for meta in proto.meta_graphs:
        ops.update(node.op for node in meta.graph_def.node)
        for function in meta.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    core = set(dir(tf.raw_ops))
    # Function calls refer to library functions by name; everything else must be a core op.
    library = {f.signature.name for m in proto.meta_graphs for f in m.graph_def.library.function}
    assert sorted(op for op in ops if op not in core and op not in library) == []
    assert (ModelDir(trained_model).saved_model / "assets").is_dir()


def test_predict_cli_writes_json_lines_with_exact_offsets(trained_model, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert main(["predict", "--model-dir", str(trained_model), "--input", str(source)]) == 0
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["text"] for r in records] == TEXTS
    found = 0
    for r in records:
        for e in r["entities"]:
            assert list(e) == ["type", "start", "end", "text", "score"]
            assert r["text"][e["start"] : e["end"]] == e["text"]
            assert 0.0 <= e["score"] <= 1.0 and e["score"] == round(e["score"], 4)
            found += 1
    assert found > 0


def test_evaluate_json_keys_and_report(trained_model, synthetic_data, capsys):
    assert main(["evaluate", "--model-dir", str(trained_model), "--data-file", str(synthetic_data["test"]), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    for key in ("entity_f1", "entity_precision", "entity_recall", "eval_f", "per_type"):
        assert key in scores
    assert main(["evaluate", "--model-dir", str(trained_model), "--data-file", str(synthetic_data["test"])]) == 0
    report = capsys.readouterr().out
    assert "micro avg" in report and "PER" in report


def test_entity_metrics_agree_with_seqeval_on_real_predictions(trained_model, real_sample):
    gold = read_conll(real_sample["dev"]).examples
    predictor = Predictor.from_model_dir(trained_model)
    predicted = predictor.predict([e.text for e in gold])
    ours = evaluate(predictor, gold)
    y_true = [entities_to_tags(len(e.text), e.entities, "bio") for e in gold]
    y_pred = [entities_to_tags(len(p.text), p.entities, "bio") for p in predicted]
    assert any(p.entities for p in predicted)
    kwargs = dict(mode="strict", scheme=IOB2)
    assert abs(ours["entity_f1"] - f1_score(y_true, y_pred, **kwargs)) < 1e-9
    assert abs(ours["entity_precision"] - precision_score(y_true, y_pred, **kwargs)) < 1e-9
    assert abs(ours["entity_recall"] - recall_score(y_true, y_pred, **kwargs)) < 1e-9


def test_export_command_rebuilds_the_same_predictions(trained_model, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_model, copy)
    shutil.rmtree(copy / "1")
    assert main(["export", "--model-dir", str(copy)]) == 0
    a = Predictor.from_model_dir(trained_model).predict(TEXTS)
    b = Predictor.from_model_dir(copy).predict(TEXTS)
    assert [x.entities for x in a] == [y.entities for y in b]


def test_missing_model_dir_is_a_clear_error(tmp_path, capsys):
    assert main(["predict", "--model-dir", str(tmp_path / "nothing"), "--input", "/dev/null"]) == 2
    assert "not a complete model directory" in capsys.readouterr().err


def test_scores_match_the_keras_tagger_and_old_tag_functions_still_work(trained_model):
    """The SavedModel's scores are the tagger's; a tag_fn returning only tags gives score None."""
    from albert_ner.model.crf import continuation_matrix
    from albert_ner.model.tagger import Tagger
    from albert_ner.model_dir import load_weights

    model_dir = ModelDir(trained_model)
    tagset, tokenizer = model_dir.load_tagset(), model_dir.load_tokenizer()
    tagger = Tagger(
        model_dir.encoder_config(), num_tags=len(tagset.tags), cls_id=tokenizer.vocab.cls_id,
        sep_id=tokenizer.vocab.sep_id, unk_id=tokenizer.vocab.unk_id, **model_dir.tagger_options(),
    )
    tagger.set_allowed_transitions(*tagset.allowed_transitions())
    tagger.build_variables()
    load_weights(tagger, model_dir.weights)
    window = model_dir.load_model_config()["max_seq_length"] - 2
    grammar = continuation_matrix(tagset.tags, tagset.scheme)

    def keras_fn(ids, lengths):
        tags, scores = tagger.predict_tags_and_scores(ids, lengths, window, max(1, window // 2), *grammar)
        return tags.numpy(), scores.numpy()

    saved = Predictor.from_model_dir(trained_model).predict(TEXTS)
    keras = Predictor(keras_fn, tokenizer, tagset).predict(TEXTS)
    assert [x.entities for x in saved] == [y.entities for y in keras]
    for a, b in zip(saved, keras):
        np.testing.assert_allclose([e.score for e in a.entities], [e.score for e in b.entities], rtol=1e-5, atol=1e-6)
    assert any(e.score > 0.5 for x in saved for e in x.entities)
    old_style = Predictor(lambda ids, lengths: keras_fn(ids, lengths)[0], tokenizer, tagset).predict(TEXTS)
    assert [x.entities for x in old_style] == [y.entities for y in saved]
    assert all(e.score is None for x in old_style for e in x.entities)
