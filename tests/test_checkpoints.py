"""Pretrained checkpoints: every layout loads completely and computes what its own code computes.

References: Hugging Face `transformers` (torch, eval mode) for the Google ALBERT/BERT TF1
layouts and the Hugging Face directories; a NumPy forward pass written here for brightmart's
albert_zh (post-LN and pre-LN), whose TF1 code has no maintained port. Shapes are tiny
(H 48, E 16, 3 layers) except one shape-only load at albert_base_zh size. Offline throughout:
the downloader is tested against a 127.0.0.1 server this file starts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import checkpoint_factory as factory  # noqa: E402  (tests/ is on sys.path under pytest)
from payload_server import PayloadServer  # noqa: E402

from albert_ner.checkpoints import (  # noqa: E402
    CheckpointError,
    KnownModel,
    fetch_model,
    resolve_pretrained,
)
from albert_ner.checkpoints import download  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VOCAB_FILE = Path(os.environ.get("VOCAB_FILE", REPO.parent / "shared" / "data" / "vocab" / "bert_chinese_vocab.txt"))

V, E, H, HEADS, INTER, LAYERS = 120, 16, 48, 4, 96, 3
TF1_JSON = {
    "attention_probs_dropout_prob": 0.0, "hidden_dropout_prob": 0.0, "hidden_act": "gelu",
    "embedding_size": E, "hidden_size": H, "initializer_range": 0.02, "intermediate_size": INTER,
    "max_position_embeddings": 512, "num_attention_heads": HEADS, "num_hidden_layers": LAYERS,
    "type_vocab_size": 2, "vocab_size": V,
}
IDS = np.array(
    [[3, 17, 45, 99, 7, 64, 118, 12, 4, 30],
     [3, 88, 9, 41, 4, 0, 0, 0, 0, 0]],  # second row padded: the mask must agree too
    dtype=np.int32,
)


# --------------------------------------------------------------------------- helpers
def encoder_output(spec, layout=None) -> tuple[np.ndarray, object, object]:
    """Loads `spec` into a fresh Encoder; returns (sequence output [B, T, H], pretrained, report)."""
    from albert_ner.model.encoder import Encoder

    pretrained = resolve_pretrained(spec, layout=layout)
    encoder = Encoder(pretrained.config)
    report = pretrained.load_into(encoder)
    return encoder(IDS).numpy(), pretrained, report


def assert_fully_consumed(report, encoder_count: int) -> None:
    """All encoder variables loaded, everything else ignored for a known reason."""
    assert len(report.loaded) == encoder_count
    assert "other (not encoder)" not in report.ignored, report.ignored


def hf_reference(model) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(IDS, dtype=torch.long),
            attention_mask=torch.tensor(IDS != 0, dtype=torch.long),
            token_type_ids=torch.zeros(IDS.shape, dtype=torch.long),
        )
    return out.last_hidden_state.numpy()


def hf_albert(hidden_act: str, masked_lm: bool = False):
    import transformers

    config = transformers.AlbertConfig(
        vocab_size=V, embedding_size=E, hidden_size=H, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, intermediate_size=INTER, hidden_act=hidden_act,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0,
        layer_norm_eps=1e-12, attn_implementation="eager",
    )
    model = (transformers.AlbertForMaskedLM if masked_lm else transformers.AlbertModel)(config)
    factory.randomize_torch_model(model, seed=11)
    return model


def hf_bert(hidden_act: str):
    import transformers

    config = transformers.BertConfig(
        vocab_size=V, hidden_size=H, num_hidden_layers=2, num_attention_heads=HEADS,
        intermediate_size=INTER, hidden_act=hidden_act, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12, attn_implementation="eager",
    )
    model = transformers.BertModel(config, add_pooling_layer=True)
    factory.randomize_torch_model(model, seed=12)
    return model


def layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def numpy_brightmart_forward(t: dict, ids: np.ndarray, ln_type: str) -> np.ndarray:
    """albert_zh's modeling.py / modeling_preln.py forward pass, in float64 NumPy."""
    t = {k: v.astype(np.float64) for k, v in t.items()}
    p = "bert/encoder/layer_shared/"
    seq = ids.shape[1]
    x = t["bert/embeddings/word_embeddings"][ids] @ t["bert/embeddings/word_embeddings_2"]
    x = x + t["bert/embeddings/position_embeddings"][:seq] + t["bert/embeddings/token_type_embeddings"][0]
    x = layer_norm(x, t["bert/embeddings/LayerNorm/gamma"], t["bert/embeddings/LayerNorm/beta"])
    bias = (ids == 0)[:, None, None, :] * -10000.0  # [B, 1, 1, T]
    head = H // HEADS

    def dense(v, name):
        return v @ t[p + name + "/kernel"] + t[p + name + "/bias"]

    def norm(v, name):
        return layer_norm(v, t[p + name + "/gamma"], t[p + name + "/beta"])

    def attention(v):
        b = v.shape[0]

        def split(z):
            return z.reshape(b, seq, HEADS, head).transpose(0, 2, 1, 3)

        q, k, val = (split(dense(v, f"attention/self/{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(head) + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ val).transpose(0, 2, 1, 3).reshape(b, seq, H)
        return dense(context, "attention/output/dense")

    def ffn(v):
        return dense(gelu_tanh(dense(v, "intermediate/dense")), "output/dense")

    for _ in range(LAYERS):
        if ln_type == "postln":
            x = norm(x + attention(x), "attention/output/LayerNorm")
            x = norm(x + ffn(x), "output/LayerNorm")
        else:  # pre-LN: the norms sit in front of each sub-layer, no final LayerNorm
            x = x + attention(norm(x, "attention/output/LayerNorm"))
            x = x + ffn(norm(x, "output/LayerNorm"))
    return x


def brightmart_dir(root: Path, ln_type: str = "postln", vocab_size: int = V, seed: int = 5,
                   json_name: str = "albert_config_tiny.json") -> tuple[Path, dict]:
    """A directory as albert_zh's zips unpack: albert_model.ckpt.*, albert_config_*.json, vocab."""
    directory = root / f"albert_tiny_zh_{ln_type}"
    directory.mkdir(parents=True)
    tensors = factory.brightmart_tensors(np.random.default_rng(seed), vocab_size, E, H, INTER)
    extras = factory.pretraining_extras(tensors, H, vocab_size, H)
    factory.write_tf1_checkpoint(directory / "albert_model.ckpt", {**tensors, **extras})
    factory.write_json(directory / json_name, dict(TF1_JSON, vocab_size=vocab_size, ln_type=ln_type))
    factory.write_vocab(directory / "vocab.txt", vocab_size)
    return directory, tensors


# --------------------------------------------------------------------------- numerics per layout
@pytest.mark.parametrize("ln_type", ["postln", "preln"])
def test_brightmart_matches_numpy_reference(tmp_path, ln_type):
    directory, tensors = brightmart_dir(tmp_path, ln_type)
    out, pretrained, report = encoder_output(directory)
    assert pretrained.layout == "brightmart"
    assert pretrained.config.ln_type == ln_type and pretrained.config.embedding_layout == "brightmart"
    assert pretrained.config.gelu_approximate and pretrained.config.layer_norm_eps == 1e-12
    assert_fully_consumed(report, encoder_count=len(tensors))
    assert set(report.ignored) == {"optimizer slots", "pooler", "pretraining heads", "training state"}
    expected = numpy_brightmart_forward(tensors, IDS, ln_type)
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)


def test_brightmart_checkpoint_prefix_is_accepted(tmp_path):
    directory, _ = brightmart_dir(tmp_path)
    pretrained = resolve_pretrained(directory / "albert_model.ckpt")
    assert pretrained.layout == "brightmart"
    assert pretrained.vocab_file == directory / "vocab.txt"


def write_google_tf1_dir(directory, model, albert: bool, ckpt_name: str, config_name: str, config: dict) -> dict:
    """Writes a Google-layout TF1 vendor directory from an HF model's weights (+ pretraining extras).

    Returns the encoder tensors (everything but the pooler), which the load must consume.
    """
    directory.mkdir()
    tensors = factory.hf_state_to_google_tf1(model.state_dict(), albert=albert)
    encoder_tensors = {k: v for k, v in tensors.items() if not k.startswith("bert/pooler")}
    extras = factory.pretraining_extras(encoder_tensors, H, V, E if albert else H)
    factory.write_tf1_checkpoint(directory / ckpt_name, {**tensors, **extras})
    factory.write_json(directory / config_name, config)
    factory.write_vocab(directory / "vocab.txt", V)
    return encoder_tensors


def test_google_albert_tf1_matches_transformers(tmp_path):
    model = hf_albert("gelu_new")  # TF1 "gelu" is the tanh form = HF "gelu_new"
    # brightmart's google-layout zips also call it albert_model.ckpt: detection must use names.
    directory = tmp_path / "albert_tiny_zh_google"
    encoder_tensors = write_google_tf1_dir(
        directory, model, True, "albert_model.ckpt", "albert_config_tiny_g.json",
        dict(TF1_JSON, num_hidden_groups=1, inner_group_num=1),
    )

    out, pretrained, report = encoder_output(directory)
    assert pretrained.layout == "google-albert" and pretrained.config.embedding_layout == "google"
    assert_fully_consumed(report, encoder_count=len(encoder_tensors))
    np.testing.assert_allclose(out, hf_reference(model), atol=1e-4, rtol=0)


def test_google_bert_tf1_matches_transformers(tmp_path):
    model = hf_bert("gelu_new")
    directory = tmp_path / "chinese_L-2_H-48_A-4"
    bert_json = {k: v for k, v in TF1_JSON.items() if k != "embedding_size"}
    encoder_tensors = write_google_tf1_dir(
        directory, model, False, "bert_model.ckpt", "bert_config.json",
        dict(bert_json, num_hidden_layers=2),
    )

    out, pretrained, report = encoder_output(directory)
    assert pretrained.layout == "google-bert" and pretrained.config.model_type == "bert"
    assert pretrained.config.num_hidden_layers == 2
    assert_fully_consumed(report, encoder_count=len(encoder_tensors))
    np.testing.assert_allclose(out, hf_reference(model), atol=1e-4, rtol=0)


def test_hf_albert_safetensors_dir_matches_transformers(tmp_path):
    model = hf_albert("gelu", masked_lm=True)  # saved with the `albert.` prefix + MLM head
    model.save_pretrained(tmp_path / "hf_albert")
    assert (tmp_path / "hf_albert" / "model.safetensors").exists()
    factory.write_vocab(tmp_path / "hf_albert" / "vocab.txt", V)

    out, pretrained, report = encoder_output(tmp_path / "hf_albert")
    assert pretrained.layout == "hf-albert"
    assert pretrained.config.gelu_approximate is False  # HF "gelu" is the exact erf form
    assert_fully_consumed(report, encoder_count=len(encoder_names(pretrained)))
    assert "pretraining heads" in report.ignored
    np.testing.assert_allclose(out, hf_reference(model.albert), atol=1e-4, rtol=0)


def test_hf_bert_pytorch_bin_matches_transformers(tmp_path):
    """An old-style `pytorch_model.bin`: `bert.` prefix, LayerNorm gamma/beta, an MLM bias."""
    import torch

    model = hf_bert("gelu")
    directory = tmp_path / "hf_bert"
    directory.mkdir()
    state = {}
    for key, value in model.state_dict().items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state["bert." + key] = value
    state["cls.predictions.bias"] = torch.zeros(V)
    # transformers 5 writes safetensors even with safe_serialization=False, so the legacy
    # file is written directly, as the voidful/albert_chinese_* repos hold it.
    torch.save(state, directory / "pytorch_model.bin")
    model.config.save_pretrained(directory)
    factory.write_vocab(directory / "vocab.txt", V)

    out, pretrained, report = encoder_output(directory)
    assert pretrained.layout == "hf-bert" and pretrained.config.gelu_approximate is False
    assert_fully_consumed(report, encoder_count=len(encoder_names(pretrained)))
    np.testing.assert_allclose(out, hf_reference(model), atol=1e-4, rtol=0)


def encoder_names(pretrained) -> list[str]:
    from albert_ner.checkpoints.layouts import in_encoder_scope, hf_prefix, ignored_category

    prefix = hf_prefix(pretrained.reader.shapes)
    return [n for n in pretrained.reader.shapes
            if in_encoder_scope(pretrained.layout, n, prefix) and ignored_category(n) is None]


def test_loading_report_is_one_screen(tmp_path, capsys):
    directory, _ = brightmart_dir(tmp_path)
    encoder_output(directory)
    printed = capsys.readouterr().out
    assert "layout brightmart" in printed and "loaded 22 encoder variables" in printed
    assert "optimizer slots: */adam_m (22), */adam_v (22)" in printed
    assert "newly initialised: the tagging head and CRF" in printed
    lines = printed.splitlines()
    assert len(lines) <= 20 and max(len(line) for line in lines[1:]) <= 110, printed


def test_albert_base_zh_shapes_load(tmp_path):
    """The real albert_base_zh shapes (V 21128, E 128, H 768, 12 layers): shapes only."""
    from albert_ner.model.encoder import Encoder

    directory = tmp_path / "albert_base_zh"
    directory.mkdir()
    rng = np.random.default_rng(0)
    tensors = factory.brightmart_tensors(rng, 21128, 128, 768, 3072, scale=0.02)
    tensors["global_step"] = np.array(1, np.int64)
    factory.write_tf1_checkpoint(directory / "albert_model.ckpt", tensors)
    base = dict(TF1_JSON, embedding_size=128, hidden_size=768, intermediate_size=3072,
                num_attention_heads=12, num_hidden_layers=12, vocab_size=21128, ln_type="postln")
    factory.write_json(directory / "albert_config_base.json", base)
    if VOCAB_FILE.exists():
        os.symlink(VOCAB_FILE, directory / "vocab.txt")  # never copied into the repo
    else:
        factory.write_vocab(directory / "vocab.txt", 21128)
    pretrained = resolve_pretrained(directory)
    assert (pretrained.config.hidden_size, pretrained.config.embedding_size) == (768, 128)
    encoder = Encoder(pretrained.config)
    report = pretrained.load_into(encoder, verbose=False)
    assert len(report.loaded) == 22
    got = encoder.embeddings.projection.kernel.numpy()
    np.testing.assert_array_equal(got, tensors["bert/embeddings/word_embeddings_2"])


# --------------------------------------------------------------------------- clear failures
def test_forced_wrong_layout_names_the_layernorm_shape(tmp_path):
    """brightmart/albert_zh issue 137: LayerNorm 312 vs 128, here 48 vs 16 — an error, not noise."""
    directory, _ = brightmart_dir(tmp_path)
    with pytest.raises(CheckpointError) as err:
        encoder_output(directory, layout="google-albert")
    message = str(err.value)
    assert "has shape (512, 48)" in message and "expects (512, 16)" in message
    assert "look like layout brightmart, not the forced google-albert" in message


def test_google_checkpoint_forced_as_brightmart_fails(tmp_path):
    model = hf_albert("gelu_new")
    directory = tmp_path / "g"
    directory.mkdir()
    factory.write_tf1_checkpoint(directory / "albert_model.ckpt",
                                 factory.hf_state_to_google_tf1(model.state_dict(), albert=True))
    factory.write_json(directory / "albert_config.json", TF1_JSON)
    factory.write_vocab(directory / "vocab.txt", V)
    # Position/type embeddings and LayerNorm live at E here but at H in brightmart's layout.
    with pytest.raises(CheckpointError, match=r"bert/embeddings/position_embeddings has shape \(512, 16\) .*expects \(512, 48\)"):
        encoder_output(directory, layout="brightmart")


def test_vocab_size_mismatch_is_an_error(tmp_path):
    directory, _ = brightmart_dir(tmp_path)
    factory.write_vocab(directory / "vocab.txt", V + 5)
    with pytest.raises(CheckpointError, match=f"has {V + 5} lines but the word embeddings .* have {V} rows"):
        resolve_pretrained(directory)


def test_config_vocab_size_mismatch_is_an_error(tmp_path):
    directory, _ = brightmart_dir(tmp_path)
    factory.write_json(directory / "albert_config_tiny.json", dict(TF1_JSON, vocab_size=21128))
    with pytest.raises(CheckpointError, match=f"says vocab_size 21128 but the checkpoint's word embeddings have {V} rows"):
        resolve_pretrained(directory)


def test_extra_layer_in_checkpoint_is_an_error(tmp_path):
    """A 3-layer config over a checkpoint with a layer_3 would silently drop it."""
    model = hf_bert("gelu_new")
    directory = tmp_path / "b"
    directory.mkdir()
    factory.write_tf1_checkpoint(directory / "bert_model.ckpt",
                                 factory.hf_state_to_google_tf1(model.state_dict(), albert=False))
    bert_json = {k: v for k, v in TF1_JSON.items() if k != "embedding_size"}
    factory.write_json(directory / "bert_config.json", dict(bert_json, num_hidden_layers=1))
    factory.write_vocab(directory / "vocab.txt", V)
    with pytest.raises(CheckpointError, match=r"bert/encoder/layer_1/.* has no place in a 1-layer bert encoder"):
        encoder_output(directory)


def test_truncated_tf1_data_file_is_an_error(tmp_path):
    directory, _ = brightmart_dir(tmp_path)
    data = next(directory.glob("albert_model.ckpt.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    with pytest.raises(CheckpointError, match=r"cannot be read \(truncated or corrupt"):
        encoder_output(directory)


def test_truncated_safetensors_is_an_error(tmp_path):
    model = hf_albert("gelu")
    model.save_pretrained(tmp_path / "hf")
    factory.write_vocab(tmp_path / "hf" / "vocab.txt", V)
    weights = tmp_path / "hf" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"safetensors file .*model.safetensors cannot be read \(truncated or corrupt\?\)"):
        resolve_pretrained(tmp_path / "hf")


def test_missing_config_and_unknown_spec_are_errors(tmp_path):
    directory, _ = brightmart_dir(tmp_path)
    (directory / "albert_config_tiny.json").unlink()
    with pytest.raises(CheckpointError, match=r"no albert_config\*.json or bert_config.json next to the checkpoint"):
        resolve_pretrained(directory)
    with pytest.raises(CheckpointError, match="is neither a checkpoint prefix, a directory, nor a known model name"):
        resolve_pretrained(tmp_path / "nothing_here")


# --------------------------------------------------------------------------- tokenizer vs BERT
@pytest.mark.skipif(not VOCAB_FILE.exists(), reason="real Chinese BERT vocab not available")
def test_char_tokenizer_matches_bert_tokenizer_on_real_vocab():
    import transformers

    from albert_ner.text.tokenizer import CharTokenizer
    from albert_ner.text.vocab import Vocab

    ours = CharTokenizer(Vocab.load(VOCAB_FILE), fold_width=False)
    # Positional: transformers 5 silently ignores `vocab_file=` and builds a 5-token vocab.
    bert = transformers.BertTokenizer(str(VOCAB_FILE), do_lower_case=True)
    assert len(bert) == len(ours.vocab) == 21128
    sample = "北京大学ABCxyz 2024年，。！？（）《》“”、Ｈｅｌｌｏ１２３％&@#éü…—\u3000中文NER：Ｑ＆Ａ"
    compared = 0
    for char in sample:
        ids = bert.encode(char, add_special_tokens=False)
        if not ids:  # BERT drops whitespace; we keep the position (documented exception)
            assert char.isspace()
            assert ours.id_of(char) == ours.vocab.token_to_id("[unused1]")
            continue
        assert len(ids) == 1, (char, ids)
        assert ours.id_of(char) == ids[0], f"{char!r}: ours {ours.id_of(char)} vs BERT {ids[0]}"
        compared += 1
    assert compared >= len(sample) - 3


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_train_export_predict_from_checkpoint_dir(tmp_path, capsys):
    from albert_ner.cli import main
    from albert_ner.data.readers import read_corpus
    from albert_ner.data.synthetic import write_synthetic_split
    from albert_ner.text.vocab import Vocab

    files = write_synthetic_split(tmp_path / "data", seed=3, n_train=64, n_dev=16, n_test=8)
    texts = [e.text for name in ("train", "dev") for e in read_corpus(files[name]).examples]
    vocab = Vocab.build(texts)
    directory, _ = brightmart_dir(tmp_path, vocab_size=len(vocab))
    vocab.save(directory / "vocab.txt")
    out = tmp_path / "model"
    code = main([
        "train", "--init-checkpoint", str(directory), "--train-file", str(files["train"]),
        "--dev-file", str(files["dev"]), "--output-dir", str(out), "--max-steps", "20",
        "--max-seq-length", "64", "--batch-size", "8", "--eval-every", "20", "--log-every", "10",
    ])
    printed = capsys.readouterr().out
    assert code == 0
    assert "layout brightmart" in printed and "loaded 22 encoder variables" in printed
    saved = json.loads((out / "model_config.json").read_text(encoding="utf-8"))["encoder"]
    assert saved["hidden_size"] == H and saved["embedding_layout"] == "brightmart"
    assert main(["export", "--model-dir", str(out)]) == 0
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("张三在北京大学工作。\n李四去了上海。\n", encoding="utf-8")
    predictions = tmp_path / "pred.jsonl"
    assert main(["predict", "--model-dir", str(out), "--input", str(texts_file), "--output", str(predictions)]) == 0
    records = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in records] == ["张三在北京大学工作。", "李四去了上海。"]


def test_cli_reports_a_wrong_forced_layout(tmp_path, capsys):
    from albert_ner.cli import main
    from albert_ner.data.synthetic import write_synthetic_split

    files = write_synthetic_split(tmp_path / "data", seed=3, n_train=8, n_dev=4, n_test=4)
    directory, _ = brightmart_dir(tmp_path)
    code = main([
        "train", "--init-checkpoint", str(directory), "--checkpoint-layout", "google-bert",
        "--train-file", str(files["train"]), "--output-dir", str(tmp_path / "m"), "--max-steps", "1",
    ])
    assert code == 2
    assert "look like layout brightmart, not the forced google-bert" in capsys.readouterr().err


# --------------------------------------------------------------------------- downloader
def _zip_of(directory: Path, top: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for file in sorted(directory.iterdir()):
            zf.write(file, f"{top}/{file.name}")
    return buffer.getvalue()


@pytest.fixture
def served_model(tmp_path):
    directory, _ = brightmart_dir(tmp_path / "src")
    payload = _zip_of(directory, "albert_tiny_zh")
    servers = []

    def start(**kwargs):
        servers.append(PayloadServer(payload, **kwargs))
        return servers[-1], payload

    yield start
    for server in servers:
        server.close()


def test_download_resumes_after_a_cut_and_verifies_sha256(tmp_path, served_model):
    server, payload = served_model(cut_first=True)
    registry = {"tiny": KnownModel(server.url, sha256=hashlib.sha256(payload).hexdigest())}
    target = fetch_model("tiny", cache_dir=tmp_path / "cache", registry=registry)
    assert server.requests == [None, f"bytes={len(payload) // 2}-"]
    assert (target / ".complete").exists()
    assert (target / "albert_tiny_zh" / "albert_model.ckpt.index").exists()
    assert (tmp_path / "cache" / "model.zip").read_bytes() == payload
    # cached: no further request
    assert fetch_model("tiny", cache_dir=tmp_path / "cache", registry=registry) == target
    assert len(server.requests) == 2


def test_download_resumes_a_partial_file(tmp_path, served_model):
    server, payload = served_model()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "model.zip.part").write_bytes(payload[:100])
    fetch_model("tiny", cache_dir=cache, registry={"tiny": KnownModel(server.url)})
    assert server.requests == ["bytes=100-"]
    assert (cache / "model.zip").read_bytes() == payload


def test_download_restarts_when_range_is_ignored(tmp_path, served_model):
    server, payload = served_model(honour_range=False)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "model.zip.part").write_bytes(b"garbage")
    fetch_model("tiny", cache_dir=cache, registry={"tiny": KnownModel(server.url)})
    assert (cache / "model.zip").read_bytes() == payload


def test_download_checksum_mismatch_is_an_error(tmp_path, served_model):
    server, _ = served_model()
    registry = {"tiny": KnownModel(server.url, sha256="0" * 64)}
    with pytest.raises(CheckpointError, match=r"model.zip has sha256 [0-9a-f]{64} but 0{64} was expected"):
        fetch_model("tiny", cache_dir=tmp_path / "cache", registry=registry)


def test_offline_download_says_where_to_put_the_file(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    registry = {"albert_base_zh_additional_36k_steps": KnownModel(
        f"http://127.0.0.1:{port}/albert_zh/albert_base_zh_additional_36k_steps.zip")}
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError) as err:
        fetch_model("albert_base_zh_additional_36k_steps", cache_dir=cache, registry=registry, retries=1, timeout=5)
    message = str(err.value)
    assert message.startswith("could not download albert_base_zh_additional_36k_steps from http://127.0.0.1")
    assert f"save it as {cache / 'albert_base_zh_additional_36k_steps.zip'}" in message
    assert "\n" not in message


def test_known_name_resolves_through_the_cache(tmp_path, served_model, monkeypatch):
    server, _ = served_model()
    monkeypatch.setitem(download.KNOWN_MODELS, "albert_tiny_test", KnownModel(server.url))
    monkeypatch.setenv("ALBERT_NER_CACHE", str(tmp_path / "env_cache"))
    pretrained = resolve_pretrained("albert_tiny_test")
    assert pretrained.layout == "brightmart"
    assert pretrained.vocab_file == tmp_path / "env_cache" / "albert_tiny_test" / "albert_tiny_zh" / "vocab.txt"


def test_known_models_point_at_the_vendors_storage():
    urls = {name: m.url for name, m in download.KNOWN_MODELS.items()}
    assert urls["albert_base_zh_additional_36k_steps"] == (
        "https://storage.googleapis.com/albert_zh/albert_base_zh_additional_36k_steps.zip")
    assert urls["chinese_L-12_H-768_A-12"] == (
        "https://storage.googleapis.com/bert_models/2018_11_03/chinese_L-12_H-768_A-12.zip")
