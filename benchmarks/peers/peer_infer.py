"""Peer side of benchmarks/inference_vs_peers.py: tag the test sentences with one peer tool.

Runs in the PEER venv (benchmarks/peers/make_venv.sh), started with `--spec FILE --result
FILE`; spec["tool"] is one of:

  hf          transformers AlbertForTokenClassification of the project's shape (random
              weights, speed only) + torchcrf Viterbi, under torch.inference_mode, with the
              project's batching (length-sorted, a padded-character budget) and windowing
              (windows of ≤ max_seq_length - 2 characters, half-window stride, emissions
              blended, one Viterbi pass per sentence). Characters → ids by a plain vocab
              lookup (the project's vocab file), unknown → [UNK].
  jiagu       Jiagu 0.2.3 as its README shows: words = jiagu.seg(text); jiagu.ner(words).
              It tags WORDS; the child returns (words, word tags) and the parent maps them
              to character spans.
  chinesener  ChineseNER 0.1: the model of `ChineseNER.model.load()`, called one sentence at a
              time exactly as its `get_entity_from_sent` does (that function returns only
              entity strings, so the child keeps the per-character BMES tags instead).

Each tool is timed by bench_common.time_tagging: load, warm-up, then one pass over all texts.
Predictions go back raw; the parent scores every tool with the project's scorer.
"""

from __future__ import annotations

import math
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402


# ----------------------------------------------------------------------------- Hugging Face


def _load_vocab(path: str) -> dict[str, int]:
    """token → id of a BERT-style vocab.txt (id = line; only "\\n" ends a line)."""
    with open(path, encoding="utf-8", newline="") as fh:
        tokens = fh.read().split("\n")
    ids: dict[str, int] = {}
    for i, token in enumerate(tokens):
        ids.setdefault(token.removesuffix("\r"), i)
    return ids


def window_emissions(model, char_ids, lengths, window: int, stride: int, cls_id: int, sep_id: int):
    """Emissions [batch, chars, tags] for whole sentences, blended over overlapping windows.

    The same layout as the project's `Tagger.sentence_emissions`, so both sides run the
    encoder over the same number of windows of the same width: window = min(window, longest
    in the batch); starts 0, stride, 2·stride, … with the last window ending at the sentence
    end; triangular blending weights.
    """
    import torch

    batch, n = char_ids.shape
    longest = int(lengths.max())
    window = min(window, max(longest, 1))
    num_windows = 1 + math.ceil(max(longest - window, 0) / stride)
    k = torch.arange(num_windows)[None, :]
    starts = torch.minimum(k * stride, (lengths[:, None] - window).clamp(min=0))  # [batch, windows]
    first_use = torch.cat([torch.ones_like(starts[:, :1], dtype=torch.bool), starts[:, 1:] > starts[:, :-1]], 1)
    offsets = starts[:, :, None] + torch.arange(window)[None, None, :]  # [batch, windows, window]
    padded = torch.nn.functional.pad(char_ids, (0, window))
    pieces = torch.gather(padded, 1, offsets.reshape(batch, -1)).reshape(offsets.shape)
    in_sentence = (offsets < lengths[:, None, None]) & first_use[:, :, None]
    pieces = torch.where(in_sentence, pieces, torch.zeros_like(pieces))
    piece_len = in_sentence.sum(-1).reshape(-1)

    rows = batch * num_windows
    framed = torch.cat([torch.full((rows, 1), cls_id), pieces.reshape(rows, window), torch.zeros(rows, 1, dtype=torch.long)], 1)
    framed[torch.arange(rows), piece_len + 1] = sep_id
    logits = model(input_ids=framed, attention_mask=(framed != 0).long()).logits[:, 1:-1]
    tags = logits.shape[-1]
    scores = logits.float().reshape(batch, num_windows * window, tags)

    position = torch.arange(window, dtype=torch.float32)
    weights = (torch.minimum(position + 1, window - position)[None, None, :] * in_sentence).reshape(batch, -1)
    target = offsets.clamp(max=n + window - 1).reshape(batch, -1)
    summed = torch.zeros(batch, n + window, tags).scatter_add_(
        1, target[:, :, None].expand(-1, -1, tags), scores * weights[:, :, None])
    norm = torch.zeros(batch, n + window).scatter_add_(1, target, weights)
    return (summed / norm.clamp(min=1e-9)[:, :, None])[:, :n]


def hf_tool(spec: dict):
    import torch
    import transformers
    from torchcrf import CRF

    from hf_train_step import build_model

    torch.set_num_threads(spec["threads"])
    torch.set_num_interop_threads(spec["threads"])
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}

    def load():
        torch.manual_seed(0)
        vocab = _load_vocab(spec["vocab_file"])
        model = build_model(spec["shape"], spec["num_tags"]).eval()
        return vocab, model, CRF(spec["num_tags"], batch_first=True).eval()

    def tag(tagger, texts):
        vocab, model, crf = tagger
        unk, cls_id, sep_id = vocab["[UNK]"], vocab["[CLS]"], vocab["[SEP]"]
        ids = [[vocab.get(c, unk) for c in text] for text in texts]
        lengths = [len(x) for x in ids]
        out: list = [None] * len(texts)
        with torch.inference_mode():
            for batch in bc.length_sorted_batches(lengths, spec["batch_tokens"]):
                width = max(max(lengths[i] for i in batch), 1)
                char_ids = torch.zeros(len(batch), width, dtype=torch.long)
                for row, i in enumerate(batch):
                    char_ids[row, : lengths[i]] = torch.tensor(ids[i], dtype=torch.long)
                lens = torch.tensor([lengths[i] for i in batch])
                emissions = window_emissions(model, char_ids, lens.clamp(min=1), spec["window"],
                                             spec["stride"], cls_id, sep_id)
                mask = torch.arange(width)[None, :] < lens.clamp(min=1)[:, None]
                for row, path in zip(batch, crf.decode(emissions, mask)):
                    out[row] = len(path[: lengths[row]])  # random weights: only the work counts
        return out

    return load, tag, versions


# ----------------------------------------------------------------------------- Jiagu


def jiagu_tool(spec: dict):
    def load():
        import jiagu

        # Jiagu loads each model on first use; one call loads exactly what ner(seg()) needs
        # (jiagu.init() would also load the POS model, which this pipeline never uses).
        jiagu.ner(jiagu.seg("中国"))
        return jiagu

    def tag(jiagu, texts):
        out = []
        for text in texts:
            words = jiagu.seg(text)
            out.append([words, jiagu.ner(words)])
        return out

    return load, tag, {"jiagu": _dist_version("jiagu")}


# ----------------------------------------------------------------------------- ChineseNER


def _allow_uint8_masks(torch) -> None:
    """ChineseNER 0.1's Viterbi calls `masked_fill_` with a uint8 mask (`.byte()`), which torch
    accepted until 1.x and now rejects. Old torch read a uint8 mask as a boolean one, so
    converting it is exactly the behaviour the package was written against."""
    original = torch.Tensor.masked_fill_

    def masked_fill_(self, mask, value):
        if mask.dtype == torch.uint8:
            mask = mask.bool()
        return original(self, mask, value)

    torch.Tensor.masked_fill_ = masked_fill_


def chinesener_tool(spec: dict):
    import torch

    torch.set_num_threads(spec["threads"])
    torch.set_num_interop_threads(spec["threads"])
    _allow_uint8_masks(torch)

    def load():
        from ChineseNER.model import load as load_model

        argv, sys.argv = sys.argv, sys.argv[:1]  # load() parses sys.argv for its defaults
        try:
            return load_model()
        finally:
            sys.argv = argv

    def tag(model, texts):
        from ChineseNER.utils import get_mask

        model.eval()
        labels = model.label_vocab
        out = []
        for text in texts:
            if not text:
                out.append([])
                continue
            # The lines of ChineseNER's get_entity_from_sent, keeping the tag sequence.
            ids = torch.tensor([model.word_vocab.word_to_id(c) for c in text]).long().unsqueeze(0)
            tag_seq = model.forward(ids, [len(text)], get_mask(ids)).squeeze(0).tolist()
            # Ids outside the label list (<PAD>, or the CRF's START/STOP) are read as O.
            out.append([labels.id_to_label(t) if 0 < t < labels.size() else "O" for t in tag_seq])
        return out

    return load, tag, {"ChineseNER": _dist_version("ChineseNER"), "torch": torch.__version__}


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


TOOLS = {"hf": hf_tool, "jiagu": jiagu_tool, "chinesener": chinesener_tool}


def main() -> int:
    spec, result_path = bc.child_io()
    bc.pin_to(spec["cpus"])
    texts = bc.read_texts(spec["texts_file"])
    load, tag, versions = TOOLS[spec["tool"]](spec)
    predictions, timing = bc.time_tagging(load, tag, texts, spec["warmup"])
    bc.write_result(result_path, {
        **timing, "predictions": predictions,
        "versions": {"python": platform.python_version(), **versions},
        "threads": spec["threads"],
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
