"""`albert-ner pretrain`: masking statistics, text input, the encoder directory it writes
(loaded back exactly, taken by `train --init-checkpoint`), starting from brightmart and
Hugging Face checkpoints, exact resume of a killed run, the time budget.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import checkpoint_factory as factory  # noqa: E402  (tests/ is on sys.path under pytest)

from albert_ner.cli import main  # noqa: E402
from albert_ner.data.readers import read_corpus  # noqa: E402
from albert_ner.pretrain.data import line_pieces, read_texts, split_sentences  # noqa: E402
from albert_ner.pretrain.masking import MaskingSpec, masked_batch, word_start_flags  # noqa: E402
from albert_ner.text.vocab import Vocab  # noqa: E402

TIMING_KEYS = {"samples_per_sec", "wall_time", "eval_seconds"}
IDS = np.array([[3, 17, 45, 99, 7, 64, 30, 12, 4, 0], [3, 88, 9, 41, 4, 0, 0, 0, 0, 0]], np.int32)


# --------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def text_data(real_sample, tmp_path_factory) -> dict:
    """A few hundred lines of text: a plain text file and the labelled corpus it came from."""
    directory = tmp_path_factory.mktemp("pretrain_text")
    texts = [e.text for e in read_corpus(real_sample["train"]).examples[:400]]
    plain = directory / "domain.txt"
    plain.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return {"plain": plain, "corpus": real_sample["train"], "dev": real_sample["dev"],
            "texts": texts, "vocab": Vocab.build(texts)}


def pretrain_argv(text_file, out: Path, *extra: str) -> list[str]:
    return ["pretrain", "--text-file", str(text_file), "--output-dir", str(out),
            "--batch-size", "16", "--max-seq-length", "40", "--log-every", "5", *extra]


def fine_tune_argv(data: dict, init: Path, out: Path) -> list[str]:
    return ["train", "--init-checkpoint", str(init), "--train-file", str(data["corpus"]),
            "--dev-file", str(data["dev"]), "--output-dir", str(out), "--max-steps", "3",
            "--eval-every", "3", "--batch-size", "8", "--max-seq-length", "40",
            "--max-train-sentences", "48", "--no-export"]


def metrics_without_timing(directory: Path) -> list[dict]:
    lines = (directory / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


def encoder_from(spec) -> tuple[object, object]:
    from albert_ner.checkpoints import resolve_pretrained
    from albert_ner.model.encoder import Encoder

    pretrained = resolve_pretrained(spec)
    encoder = Encoder(pretrained.config)
    report = pretrained.load_into(encoder, verbose=False)
    return encoder, report


# --------------------------------------------------------------------------- masking
def test_masking_statistics_and_special_tokens():
    vocab = Vocab(["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(0x4E00 + i) for i in range(500)])
    spec = MaskingSpec.from_vocab(vocab, max_seq_length=42)
    rng = np.random.default_rng(0)
    sequences = [np.asarray([3, *rng.integers(6, 506, size=40), 4], np.int32) for _ in range(1500)]
    sequences += [np.asarray([3, *rng.integers(6, 506, size=n), 4], np.int32) for n in (1, 2, 7)]
    masked, positions, labels, weights = masked_batch(sequences, list(range(len(sequences))), spec, seed=1, epoch=0)
    original = np.zeros_like(masked)
    for row, seq in enumerate(sequences):
        original[row, : len(seq)] = seq
    real = weights > 0
    chosen = positions[real]
    rows = np.nonzero(real)[0]
    lengths = np.array([len(s) for s in sequences])
    # Never [CLS] (0), [SEP] (last) or padding; labels are the original ids.
    assert chosen.min() >= 1 and np.all(chosen <= lengths[rows] - 2)
    np.testing.assert_array_equal(labels[real], original[rows, chosen])
    # 15 % of the characters (6 of 40 per long row), at least one for the shortest rows.
    assert np.all(weights[:1500].sum(1) == 6) and np.all(weights[1500:].sum(1) >= 1)
    # Positions not chosen are untouched, framing tokens included.
    untouched = np.ones_like(masked, bool)
    untouched[rows, chosen] = False
    np.testing.assert_array_equal(masked[untouched], original[untouched])
    # 80 % [MASK], 10 % a random ordinary token, 10 % unchanged (9,000+ draws: ±2 %).
    after = masked[rows, chosen]
    share_mask = np.mean(after == spec.mask_id)
    share_same = np.mean(after == labels[real])
    share_random = 1.0 - share_mask - share_same
    assert abs(share_mask - 0.8) < 0.02 and abs(share_random - 0.1) < 0.02 and abs(share_same - 0.1) < 0.02
    replaced = after[(after != spec.mask_id) & (after != labels[real])]
    assert replaced.min() >= 6  # never [PAD]/[unused1]/[UNK]/[CLS]/[SEP]/[MASK]


def test_masks_are_a_pure_function_of_seed_epoch_and_index():
    vocab = Vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(0x4E00 + i) for i in range(50)])
    spec = MaskingSpec.from_vocab(vocab, max_seq_length=32)
    sequences = [np.asarray([2, *range(5, 35), 3], np.int32) for _ in range(4)]
    first = masked_batch(sequences, [2, 0], spec, seed=3, epoch=1)
    again = masked_batch(sequences, [2, 0], spec, seed=3, epoch=1)
    alone = masked_batch(sequences, [0], spec, seed=3, epoch=1)
    other_epoch = masked_batch(sequences, [2, 0], spec, seed=3, epoch=2)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first[1][1], alone[1][0])  # batch company does not matter
    assert not np.array_equal(first[1], other_epoch[1])  # dynamic: new masks each epoch


def test_whole_word_masking_masks_complete_words():
    pytest.importorskip("jieba")
    texts = ["国务院总理李鹏今天在北京会见了日本外务大臣。", "中华人民共和国成立于一九四九年十月一日。"] * 50
    vocab = Vocab.build(texts)
    from albert_ner.text.tokenizer import CharTokenizer

    tokenizer = CharTokenizer(vocab)
    sequences = [np.asarray([vocab.cls_id, *tokenizer.encode(t), vocab.sep_id], np.int32) for t in texts]
    starts = word_start_flags(texts)
    assert starts[0].tolist()[:5] == [True, False, False, True, False]  # 国务院 | 总理
    spec = MaskingSpec.from_vocab(vocab, max_seq_length=64)
    _, positions, _, weights = masked_batch(sequences, list(range(len(texts))), spec, 0, 0, starts)
    for row in range(len(texts)):
        chosen = set(positions[row][weights[row] > 0].tolist())
        word_ids = np.cumsum(starts[row])  # character j (position j + 1) belongs to word word_ids[j]
        for word in {word_ids[p - 1] for p in chosen}:
            members = {j + 1 for j in np.flatnonzero(word_ids == word)}
            assert members <= chosen, (texts[row], sorted(chosen))


# --------------------------------------------------------------------------- text input
def test_sentence_splitter_keeps_text_and_window():
    line = "他说：“我们走吧！”大家都同意了。然后……出发；目的地是北京？" * 3
    sentences = split_sentences(line)
    assert "".join(sentences) == line
    assert sentences[0] == "他说：“我们走吧！”" and sentences[1] == "大家都同意了。"
    pieces = line_pieces(line, window=20)
    assert "".join(pieces) == line and max(map(len, pieces)) <= 20
    assert pieces[0] == "他说：“我们走吧！”大家都同意了。"  # whole sentences packed greedily
    long_sentence = "长" * 45 + "。"
    assert [len(p) for p in line_pieces(long_sentence, 20)] == [20, 20, 6]


def test_text_files_corpora_and_directories(tmp_path, text_data):
    directory = tmp_path / "texts"
    directory.mkdir()
    (directory / "a.txt").write_text("\ufeff第一行文本。\n\n  第二行  \n", encoding="utf-8")
    (directory / "b.jsonl").write_text(json.dumps({"text": "张三在北京。", "entities": []}, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    (directory / ".hidden").write_text("不读\n", encoding="utf-8")
    lines, summaries = read_texts([directory, text_data["corpus"]])
    corpus_texts = [e.text for e in read_corpus(text_data["corpus"]).examples]
    assert lines == ["第一行文本。", "第二行", "张三在北京。", *corpus_texts]
    assert len(summaries) == 3


@pytest.mark.parametrize("content, expected", [
    ("第一行\n第二".encode("utf-8") + b"\xff\xfe\n", "bad.txt:2: file is not valid UTF-8"),
    (b"", "bad.txt: holds no text"),
    (b"\n  \n\n", "bad.txt: holds no text"),
])
def test_bad_text_file_is_one_clear_error(tmp_path, capsys, content, expected):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    assert main(pretrain_argv(bad, tmp_path / "out", "--model-config", "micro")) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_missing_text_file_and_vocab_without_mask_are_errors(tmp_path, capsys, text_data):
    assert main(pretrain_argv(tmp_path / "nope.txt", tmp_path / "out")) == 2
    assert "nope.txt: no such file" in capsys.readouterr().err
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(t for t in text_data["vocab"].tokens if t != "[MASK]") + "\n", encoding="utf-8")
    assert main(pretrain_argv(text_data["plain"], tmp_path / "out", "--vocab-file", str(vocab))) == 2
    assert "no [MASK] token" in capsys.readouterr().err


# --------------------------------------------------------------------------- runs
def test_pretrain_from_scratch_writes_an_encoder_dir_that_loads_exactly(tmp_path, text_data, capsys):
    from albert_ner.pretrain.loop import Pretrainer, PretrainArgs

    out = tmp_path / "pretrained"
    trainer = Pretrainer(PretrainArgs(
        text_files=[text_data["plain"]], output_dir=str(out), model_config="micro", max_steps=12,
        eval_every=6, log_every=6, batch_size=16, max_seq_length=40,
        precision="fp32",  # compared bit for bit with an encoder reloaded in float32
    ))
    trainer.run()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [6, 12]
    for key in ("loss", "mlm_loss", "mlm_accuracy", "samples_per_sec"):
        assert key in records[-1]
    assert records[-1]["mlm_loss"] < records[0]["mlm_loss"]
    printed = capsys.readouterr().out
    assert "mlm_loss = " in printed and "ETA" in printed

    encoder, report = encoder_from(out)
    assert report.layout == "albert-ner" and len(report.loaded) == 22
    assert report.ignored == {"pretraining heads": [
        "mlm/transform/kernel", "mlm/transform/bias", "mlm/norm/gamma", "mlm/norm/beta", "mlm/output_bias"]}
    np.testing.assert_array_equal(encoder(IDS).numpy(), trainer.model.encoder(IDS).numpy())

    # Continued pretraining from this directory takes the masked-LM head along.
    from albert_ner.checkpoints import resolve_pretrained
    from albert_ner.model.mlm import MaskedLM

    again = MaskedLM(encoder.config)
    again.build_variables()
    assert resolve_pretrained(out).load_mlm_head(again.mlm).startswith("masked-LM head: loaded 5 variables")
    np.testing.assert_array_equal(again.mlm.output_bias.numpy(), trainer.model.mlm.output_bias.numpy())


@pytest.mark.slow
def test_pretrain_from_brightmart_then_fine_tune(tmp_path, text_data, capsys):
    from albert_ner.pretrain.loop import Pretrainer, PretrainArgs

    vocab = text_data["vocab"]
    directory = tmp_path / "albert_tiny_zh"
    directory.mkdir()
    tensors = factory.brightmart_tensors(np.random.default_rng(5), len(vocab), 16, 48, 96, scale=0.05)
    extras = factory.pretraining_extras(tensors, 48, len(vocab), 48)
    factory.write_tf1_checkpoint(directory / "albert_model.ckpt", {**tensors, **extras})
    factory.write_json(directory / "albert_config.json", {
        "hidden_size": 48, "embedding_size": 16, "num_hidden_layers": 3, "num_attention_heads": 4,
        "intermediate_size": 96, "hidden_act": "gelu", "vocab_size": len(vocab), "ln_type": "postln",
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "max_position_embeddings": 512,
        "type_vocab_size": 2, "initializer_range": 0.02})
    vocab.save(directory / "vocab.txt")

    out = tmp_path / "adapted"
    trainer = Pretrainer(PretrainArgs(
        text_files=[text_data["corpus"]], output_dir=str(out), init_checkpoint=str(directory),
        max_steps=6, eval_every=6, batch_size=16, max_seq_length=40,
        precision="fp32",  # compared bit for bit with an encoder reloaded in float32
    ))
    trainer.run()
    printed = capsys.readouterr().out
    assert "layout brightmart" in printed and "loaded 22 encoder variables" in printed
    assert "newly initialised: the masked-LM head" in printed

    encoder, report = encoder_from(out)
    assert len(report.loaded) == 22 and report.layout == "albert-ner"
    assert encoder.config.embedding_layout == "brightmart" and encoder.config.num_hidden_layers == 3
    np.testing.assert_array_equal(encoder(IDS).numpy(), trainer.model.encoder(IDS).numpy())
    moved = encoder.embeddings.word_embeddings.embeddings.numpy()
    assert not np.allclose(moved, tensors["bert/embeddings/word_embeddings"])  # pretraining trained

    assert main(fine_tune_argv(text_data, out, tmp_path / "ner")) == 0
    printed = capsys.readouterr().out
    assert "layout albert-ner" in printed and "loaded 22 encoder variables" in printed
    saved = json.loads((tmp_path / "ner" / "model_config.json").read_text())["encoder"]
    assert saved["hidden_size"] == 48 and saved["embedding_layout"] == "brightmart"


@pytest.mark.slow
def test_pretrain_from_hugging_face_albert_then_fine_tune(tmp_path, text_data, capsys):
    transformers = pytest.importorskip("transformers")
    vocab = text_data["vocab"]
    config = transformers.AlbertConfig(
        vocab_size=len(vocab), embedding_size=16, hidden_size=48, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=96, hidden_act="gelu", hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0, layer_norm_eps=1e-12,
    )
    model = transformers.AlbertForMaskedLM(config)
    factory.randomize_torch_model(model, seed=3, scale=0.05)
    model.save_pretrained(tmp_path / "hf_albert")
    vocab.save(tmp_path / "hf_albert" / "vocab.txt")

    out = tmp_path / "adapted"
    assert main(pretrain_argv(text_data["plain"], out, "--init-checkpoint", str(tmp_path / "hf_albert"),
                              "--max-steps", "6", "--eval-every", "6", "--whole-word-mask")) == 0
    printed = capsys.readouterr().out
    assert "layout hf-albert" in printed and "masked-LM head: loaded 5 variables" in printed
    saved = json.loads((out / "encoder_config.json").read_text())
    # The exact (erf) GELU of a Hugging Face "gelu" survives: no TF1 config could say it.
    assert saved["gelu_approximate"] is False and saved["embedding_layout"] == "google"

    encoder, report = encoder_from(out)
    reference, _ = encoder_from(tmp_path / "hf_albert")
    assert len(report.loaded) == len(_encoder_slots(reference))
    assert not np.allclose(encoder(IDS).numpy(), reference(IDS).numpy())  # pretraining trained

    assert main(fine_tune_argv(text_data, out, tmp_path / "ner")) == 0
    assert "layout albert-ner" in capsys.readouterr().out


def _encoder_slots(encoder) -> dict:
    from albert_ner.checkpoints.layouts import encoder_variables

    return encoder_variables(encoder)


@pytest.mark.slow
def test_killed_pretraining_resumes_to_identical_metrics(tmp_path, text_data):
    steps = ["--model-config", "micro", "--max-steps", "60", "--eval-every", "10", "--seed", "5",
             "--whole-word-mask"]
    assert main(pretrain_argv(text_data["plain"], tmp_path / "full", *steps)) == 0

    killed = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-m", "albert_ner.cli", *pretrain_argv(text_data["plain"], killed, *steps)],
        env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and child.poll() is None:
        metrics = killed / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.1)
    assert child.poll() is None, "the child finished before it could be killed; slow it down"
    child.send_signal(signal.SIGKILL)
    child.wait()
    state = json.loads((killed / "checkpoints" / "latest" / "state.json").read_text())
    assert 0 < state["step"] < 60

    assert main(pretrain_argv(text_data["plain"], killed, *steps, "--resume")) == 0
    assert metrics_without_timing(killed) == metrics_without_timing(tmp_path / "full")
    full = np.load(tmp_path / "full" / "encoder_weights.npz")
    resumed = np.load(killed / "encoder_weights.npz")
    for name in full.files:
        np.testing.assert_array_equal(full[name], resumed[name], err_msg=name)


def test_time_budget_stops_cleanly_and_writes_the_encoder(tmp_path, text_data, capsys):
    import keras

    out = tmp_path / "budget"
    try:
        assert main(pretrain_argv(text_data["plain"], out, "--model-config", "micro", "--max-minutes", "0.02",
                                  "--eval-every", "1000", "--precision", "bf16")) == 0
    finally:  # the mixed-precision policy is process-wide: later tests build float32 models
        keras.mixed_precision.set_global_policy("float32")
    printed = capsys.readouterr().out
    assert "time budget of 0.02 minutes reached" in printed
    final = json.loads((out / "final_metrics.json").read_text())
    assert 1 <= final["steps"] < 1000 and "mlm_accuracy" in final
    assert (out / "encoder_weights.npz").exists() and (out / "vocab.txt").exists()


def test_pretrain_the_no_transformer_stack_then_fine_tune_from_it(tmp_path, text_data):
    """`pretrain --model-config chars` trains embeddings + bigrams + BiLSTM as a masked LM; a
    tagger started from that directory gets every one of those weights and the same stack."""
    from albert_ner.checkpoints import CheckpointError
    from albert_ner.pretrain.loop import Pretrainer, PretrainArgs
    from albert_ner.train.loop import Trainer, TrainArgs
    from albert_ner.train.recipe import SEQUENCE_LEARNING_RATE

    out = tmp_path / "chars"
    Pretrainer(PretrainArgs(
        text_files=[text_data["plain"]], output_dir=str(out), model_config="chars",
        lstm_units=16, bigram_buckets=512, bigram_size=8, max_steps=8, eval_every=4,
        log_every=4, batch_size=16, max_seq_length=40,
    )).run()
    stack = {"lstm_units": 16, "bigram_buckets": 512, "bigram_size": 8}
    assert json.loads((out / "stack_options.json").read_text()) == stack
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 8] and "mlm_accuracy" in records[-1]
    with np.load(out / "encoder_weights.npz") as stored:
        arrays = {name: stored[name] for name in stored.files}
    assert {"embeddings/word_embeddings", "bigrams/embeddings", "bilstm/forward/kernel",
            "bilstm/backward/recurrent_kernel", "bilstm/backward/bias", "mlm/output_bias"} <= set(arrays)
    assert arrays["bigrams/embeddings"].shape == (512, 8)

    def fine_tune_args(**overrides) -> TrainArgs:
        values = dict(train_file=str(text_data["corpus"]), dev_file=str(text_data["dev"]),
                      output_dir=str(tmp_path / "ner"), init_checkpoint=str(out), max_steps=2,
                      eval_every=2, batch_size=8, max_seq_length=40, max_train_sentences=48,
                      export=False)
        return TrainArgs(**{**values, **overrides})

    trainer = Trainer(fine_tune_args())
    # The stack comes from the checkpoint, the learning rate from the BiLSTM recipe.
    assert {k: getattr(trainer.args, k) for k in stack} == stack
    assert trainer.learning_rate == SEQUENCE_LEARNING_RATE
    model = trainer.model
    np.testing.assert_array_equal(model.encoder.word_embeddings.embeddings.numpy(), arrays["embeddings/word_embeddings"])
    np.testing.assert_array_equal(model.bigrams.table.embeddings.numpy(), arrays["bigrams/embeddings"])
    for direction in ("forward", "backward"):
        cell = getattr(model.lstm, f"{direction}_lstm").cell
        np.testing.assert_array_equal(cell.kernel.numpy(), arrays[f"bilstm/{direction}/kernel"])
        np.testing.assert_array_equal(cell.recurrent_kernel.numpy(), arrays[f"bilstm/{direction}/recurrent_kernel"])
        np.testing.assert_array_equal(cell.bias.numpy(), arrays[f"bilstm/{direction}/bias"])
    assert trainer.run()["step"] == 2

    # A stack that does not fit the checkpoint's layers is refused before training starts, and
    # the failed set-up leaves no mixed-precision policy behind for later models.
    import keras

    with pytest.raises(CheckpointError, match=r"bilstm/forward/kernel has shape \(136, 64\)"):
        Trainer(fine_tune_args(lstm_units=8, output_dir=str(tmp_path / "ner8"), precision="bf16"))
    assert keras.mixed_precision.global_policy().name == "float32"
