"""Tagging throughput and entity F1 on the MSRA test set: this project vs the tools users
would pick instead, one run, one machine.

Tools (each measured in a fresh subprocess per round, rounds interleaved, all pinned to the
same CPUs with the same thread count; median over rounds):

  albert-ner NAME        an exported model directory (`--model-dir NAME=PATH`, repeatable)
                         through `albert_ner.predict.Predictor.from_model_dir` — its
                         length-sorted batches, windows and constrained Viterbi; real F1.
  albert-ner PRESET      `--shape-only PRESET` (e.g. tiny): an untrained model of that shape,
    (untrained)          exported here, to compare speed with the Hugging Face model below.
  HF Albert PRESET       transformers AlbertForTokenClassification of the same shape + torchcrf
    (random weights)     Viterbi, same batching and windows (benchmarks/peers/peer_infer.py).
  Jiagu 0.2.3            `jiagu.ner(jiagu.seg(text))`; it tags words, mapped back to characters
                         (`jiagu_entities`).
  ChineseNER 0.1         its BiLSTM-CRF, one sentence at a time as its own API does.

Throughput counts only the pass over all test sentences: loading and a warm-up pass are
reported separately. Every tool's predictions are scored by the project's scorer
(`albert_ner.scoring.evaluate_predictions`: exact span + type, micro). Peer tools run in the
peer venv (benchmarks/peers/make_venv.sh).

  .venv/bin/python benchmarks/inference_vs_peers.py --msra-dir ../shared/data/msra \\
      --model-dir bilstm=PATH --shape-only tiny --out benchmarks/results/peers
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))

import bench_common as bc  # noqa: E402

PEER_CHILD = HERE / "peers" / "peer_infer.py"
PEERS = ("hf", "jiagu", "chinesener")
TYPES = ["LOC", "ORG", "PER"]

# How each tool's output becomes PER/LOC/ORG character spans (stated in the JSON too).
LABEL_MAPPINGS = {
    "ours": "the model's own tags (labels.json), decoded by the Predictor; types as trained",
    "hf": "not scored: random weights, speed only",
    "jiagu": (
        "word tags B-X / I-X / O with X in PER, LOC, ORG (MSRA's names, kept as they are) are "
        "spread over each word's characters (B-X word → B-X I-X…; I-X word → I-X on every "
        "character), then decoded as BIO by albert_ner.data.schemes.tags_to_entities (lenient: "
        "an I-X word after O or another type starts a new X entity)"
    ),
    "chinesener": (
        "character tags in BMES: B-/M-/E-/S- + PER, LOC, ORG (MSRA's names, kept as they are), "
        "decoded by albert_ner.data.schemes.tags_to_entities(scheme='bmes'); ids outside its "
        "label list (<PAD>, the CRF's START/STOP) read as O"
    ),
}


# ----------------------------------------------------------------------------- label mapping


def jiagu_entities(text: str, words: list[str], word_tags: list[str]) -> tuple[list, int]:
    """Character spans of Jiagu's word-level tags (see LABEL_MAPPINGS["jiagu"]).

    Args:
      text: the sentence Jiagu segmented.
      words, word_tags: `jiagu.seg(text)` and `jiagu.ner(words)`.
    Returns:
      (entities sorted by start, number of words not found in order in `text`; such a word
      and its tag are dropped, the characters stay O).
    """
    from albert_ner.data.schemes import tags_to_entities

    if len(words) != len(word_tags):
        raise ValueError(f"{len(words)} words but {len(word_tags)} tags")
    char_tags = ["O"] * len(text)
    position, lost = 0, 0
    for word, tag in zip(words, word_tags):
        start = text.find(word, position) if word else -1
        if start < 0:
            lost += 1
            continue
        end = start + len(word)
        if tag != "O":
            prefix, _, type_ = tag.partition("-")
            char_tags[start:end] = [f"{prefix}-{type_}"] + [f"I-{type_}"] * (len(word) - 1)
        position = end
    return tags_to_entities(char_tags, "bio")[0], lost


def entities_of(kind: str, texts: list[str], predictions: list) -> tuple[list[list], int]:
    """Each tool's raw predictions → Entity lists per sentence, and a count of dropped pieces."""
    from albert_ner.data.example import Entity
    from albert_ner.data.schemes import tags_to_entities

    if kind == "ours":
        return [[Entity(s, e, t) for s, e, t in spans] for spans in predictions], 0
    if kind == "chinesener":
        return [tags_to_entities(tags, "bmes")[0] if tags else [] for tags in predictions], 0
    if kind == "jiagu":
        out, lost = [], 0
        for text, (words, tags) in zip(texts, predictions):
            entities, missing = jiagu_entities(text, words, tags)
            out.append(entities)
            lost += missing
        return out, lost
    raise ValueError(f"no entities for tool kind {kind!r}")


def score(gold: list, kind: str, predictions: list) -> dict:
    """Entity P/R/F1 (micro, exact span + type) by the project's scorer, per type too."""
    from albert_ner.data.example import Example
    from albert_ner.scoring import evaluate_predictions

    texts = [g.text for g in gold]
    entities, dropped = entities_of(kind, texts, predictions)
    scores = evaluate_predictions(gold, [Example(t, e) for t, e in zip(texts, entities)], TYPES)
    keep = ("entity_precision", "entity_recall", "entity_f1", "per_type")
    return {**{k: scores[k] for k in keep}, "dropped_words": dropped}


# ----------------------------------------------------------------------------- our children


def _tf_threads(threads: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def ours_child() -> int:
    """Tags the texts with Predictor.from_model_dir (spans out) and writes the result."""
    spec, result_path = bc.child_io()
    bc.pin_to(spec["cpus"])
    _tf_threads(spec["threads"])
    import tensorflow as tf

    from albert_ner.predict import Predictor

    def load():
        return Predictor.from_model_dir(spec["model_dir"], batch_tokens=spec["batch_tokens"])

    def tag(predictor, texts):
        return [[[e.start, e.end, e.type] for e in ex.entities] for ex in predictor.predict(texts)]

    texts = bc.read_texts(spec["texts_file"])
    predictions, timing = bc.time_tagging(load, tag, texts, spec["warmup"])
    bc.write_result(result_path, {
        **timing, "predictions": predictions, "threads": {
            "tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
        "versions": {"python": sys.version.split()[0], "tensorflow": tf.__version__},
    })
    return 0


def export_child() -> int:
    """Builds an untrained tagger of a preset's shape and exports it as a model directory.

    The library has no "empty model directory from a config" function; this writes the
    files `albert-ner train` writes (model_dir.ModelDir layout) and exports with
    `albert_ner.export.export_saved_model`.
    """
    spec, result_path = bc.child_io()
    bc.pin_to(spec["cpus"])
    _tf_threads(spec["threads"])
    import keras

    from albert_ner.data.schemes import TagSet
    from albert_ner.export import export_saved_model
    from albert_ner.model.config import EncoderConfig
    from albert_ner.model.tagger import Tagger
    from albert_ner.model_dir import ModelDir, save_weights, write_json
    from albert_ner.text.tokenizer import CharTokenizer
    from albert_ner.text.vocab import Vocab

    started = time.perf_counter()
    # The test text's characters first (so the tagger sees real ids), padded with reserved
    # tokens to the preset's vocabulary size: the embedding table has the real shape.
    built = Vocab.build(bc.read_texts(spec["texts_file"]), max_size=spec["vocab_size"]).tokens
    taken = set(built)
    filler = (f"[unused{i}]" for i in range(2, 10**6) if f"[unused{i}]" not in taken)
    vocab = Vocab(list(built) + [next(filler) for _ in range(spec["vocab_size"] - len(built))])
    tagset = TagSet(TYPES)
    config = EncoderConfig.resolve(spec["preset"], vocab_size=len(vocab))
    model_dir = ModelDir(spec["model_dir"])
    model_dir.path.mkdir(parents=True, exist_ok=True)
    vocab.save(model_dir.vocab)
    write_json(model_dir.labels, tagset.to_json())
    write_json(model_dir.config, {
        "encoder": config.to_dict(), "head": "crf", "num_tags": len(tagset.tags),
        "max_seq_length": spec["max_seq_length"], "classifier_dropout": 0.1,
        "lstm_units": 0, "bigram_buckets": 0, "bigram_size": 0,
    })
    keras.utils.set_random_seed(0)
    tagger = Tagger(config, num_tags=len(tagset.tags), head="crf", classifier_dropout=0.1,
                    cls_id=vocab.cls_id, sep_id=vocab.sep_id)
    tagger.set_allowed_transitions(*tagset.allowed_transitions())
    tagger.build_variables()
    save_weights(tagger, model_dir.weights)
    export_saved_model(tagger, model_dir, CharTokenizer(vocab), tagset)
    bc.write_result(result_path, {"export_seconds": time.perf_counter() - started,
                                  "encoder": config.to_dict(), "num_tags": len(tagset.tags)})
    return 0


# ----------------------------------------------------------------------------- the parent


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--msra-dir", default=os.environ.get("MSRA_DIR", "../shared/data/msra"),
                   help="folder with test.txt (CHAR<TAB>TAG lines, blank line between sentences)")
    p.add_argument("--limit", type=int, help="first N test sentences only (smoke runs)")
    p.add_argument("--model-dir", action="append", default=[], metavar="NAME=PATH",
                   help="an exported albert-ner model directory (repeatable)")
    p.add_argument("--shape-only", metavar="PRESET",
                   help="also export an untrained model of this preset's shape (e.g. tiny) and "
                        "time it against a Hugging Face model of the same shape")
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma list of {', '.join(PEERS)}, or none")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=100, help="warm-up sentences before timing")
    p.add_argument("--cpus", help="CPU ids for every tool, e.g. 0 or 0,1 (default: all)")
    p.add_argument("--threads", type=int, help="framework threads for every tool (default: one per CPU)")
    p.add_argument("--batch-tokens", type=int, help="padded characters per batch (default: the Predictor's)")
    p.add_argument("--max-seq-length", type=int, default=128, help="window + 2 of --shape-only and HF")
    p.add_argument("--vocab-size", type=int, default=21128, help="vocabulary of --shape-only and HF")
    p.add_argument("--peer-python", help=f"the peer venv's python (default {bc.DEFAULT_PEER_VENV}/bin/python)")
    p.add_argument("--work-dir", help="child specs/logs/results (default: a new temporary directory)")
    p.add_argument("--out", default="benchmarks/results/peers", help="directory for inference.json")
    p.add_argument("--child", choices=("ours", "export"), help=argparse.SUPPRESS)
    args, rest = p.parse_known_args(argv)
    if rest and not args.child:  # a child also gets --spec/--result (bench_common.child_io)
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def plan_tools(args, workdir: Path, common: dict) -> tuple[list[dict], dict | None]:
    """The tools to measure, in round order, and the shape-only export's result (if any)."""
    tools = []
    for item in args.model_dir:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--model-dir wants NAME=PATH, got {item!r}")
        tools.append({"name": f"albert-ner {name}", "kind": "ours", "weights": "trained",
                      "spec": {**common, "model_dir": str(Path(path).resolve())}})
    peers = [] if args.peers.strip() in ("", "none") else [p.strip() for p in args.peers.split(",")]
    unknown = set(peers) - set(PEERS)
    if unknown:
        raise SystemExit(f"--peers: unknown {', '.join(sorted(unknown))} (choose from {', '.join(PEERS)})")
    exported = None
    if args.shape_only:
        shape_dir = workdir / f"shape_{args.shape_only}"
        print(f"exporting an untrained {args.shape_only} model to {shape_dir}", flush=True)
        exported = bc.run_child([sys.executable, Path(__file__).resolve(), "--child", "export"],
                                {**common, "preset": args.shape_only, "model_dir": str(shape_dir),
                                 "vocab_size": args.vocab_size, "max_seq_length": args.max_seq_length},
                                workdir, f"export_{args.shape_only}", common["threads"])
        tools.append({"name": f"albert-ner {args.shape_only} (untrained)", "kind": "ours",
                      "weights": "random", "spec": {**common, "model_dir": str(shape_dir)}})
        if "hf" in peers:
            shape = dict(exported["encoder"], classifier_dropout=0.1)
            window = args.max_seq_length - 2
            tools.append({"name": f"HF Albert {args.shape_only} (random weights)", "kind": "hf",
                          "weights": "random",
                          "spec": {**common, "tool": "hf", "shape": shape, "num_tags": exported["num_tags"],
                                   "vocab_file": str(shape_dir / "vocab.txt"),
                                   "window": window, "stride": max(1, window // 2)}})
    elif "hf" in peers:
        print("note: the HF model needs a shape: add --shape-only tiny to time it", flush=True)
    if "jiagu" in peers:
        tools.append({"name": "Jiagu 0.2.3", "kind": "jiagu", "weights": "shipped",
                      "spec": {**common, "tool": "jiagu"}})
    if "chinesener" in peers:
        tools.append({"name": "ChineseNER 0.1", "kind": "chinesener", "weights": "shipped",
                      "spec": {**common, "tool": "chinesener"}})
    if not tools:
        raise SystemExit("nothing to measure: give --model-dir, --shape-only or --peers")
    return tools, exported


def summarize(tool: dict, rounds: list[dict], gold: list) -> dict:
    first = rounds[0]
    stable = all(r["predictions"] == first["predictions"] for r in rounds[1:])
    scores = score(gold, tool["kind"], first["predictions"]) if tool["weights"] != "random" else None
    median = lambda key: bc.median([r[key] for r in rounds])  # noqa: E731
    return {
        "name": tool["name"], "kind": tool["kind"], "weights": tool["weights"],
        "label_mapping": LABEL_MAPPINGS["ours" if tool["kind"] == "ours" else tool["kind"]],
        "chars_per_sec": median("chars_per_sec"), "sentences_per_sec": median("sentences_per_sec"),
        "seconds": median("seconds"), "load_seconds": median("load_seconds"),
        "warmup_seconds": median("warmup_seconds"), "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds),
        "entity_precision": scores and scores["entity_precision"],
        "entity_recall": scores and scores["entity_recall"],
        "entity_f1": scores and scores["entity_f1"],
        "per_type": scores and scores["per_type"],
        "dropped_words": scores and scores["dropped_words"],
        "predictions_identical_across_rounds": stable,
        "threads": first["threads"], "versions": first["versions"],
        "model_dir": tool["spec"].get("model_dir"),
        "rounds": [{k: v for k, v in r.items() if k != "predictions"} for r in rounds],
    }


def markdown(tools: list[dict]) -> str:
    lines = ["| tool | weights | chars/s | sentences/s | load s | warm-up s | peak RSS MB | entity P | entity R | entity F1 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    f = lambda v, spec: "—" if v is None else format(v, spec)  # noqa: E731
    for t in tools:
        lines.append(
            f"| {t['name']} | {t['weights']} | {f(t['chars_per_sec'], ',.0f')} | {f(t['sentences_per_sec'], ',.1f')} "
            f"| {f(t['load_seconds'], '.1f')} | {f(t['warmup_seconds'], '.1f')} | {f(t['peak_rss_mb'], ',.0f')} "
            f"| {f(t['entity_precision'], '.4f')} | {f(t['entity_recall'], '.4f')} | {f(t['entity_f1'], '.4f')} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child == "ours":
        return ours_child()
    if args.child == "export":
        return export_child()
    from albert_ner.data.readers import read_conll
    from albert_ner.predict import DEFAULT_BATCH_TOKENS

    test_file = Path(args.msra_dir) / "test.txt"
    if not test_file.exists():
        raise SystemExit(f"error: {test_file} not found (--msra-dir)")
    gold = read_conll(test_file).examples[: args.limit]
    peers_wanted = args.peers.strip() not in ("", "none")
    peer = bc.peer_python(args.peer_python, without="--peers none") if peers_wanted else None
    cpus = bc.parse_cpus(args.cpus)
    threads = args.threads or len(cpus)
    out = Path(args.out)
    # Child specs, logs and results (and the shape-only export) stay out of --out, which
    # holds only what is worth keeping.
    workdir = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="peers_inference_"))
    print(f"child logs in {workdir}", flush=True)
    workdir.mkdir(parents=True, exist_ok=True)
    texts_file = workdir / "texts.json"
    bc.write_texts(texts_file, [g.text for g in gold])
    machine = bc.machine_info()
    common = {"texts_file": str(texts_file), "cpus": cpus, "threads": threads, "warmup": args.warmup,
              "batch_tokens": args.batch_tokens or DEFAULT_BATCH_TOKENS}

    tools, exported = plan_tools(args, workdir, common)
    commands = {"ours": [sys.executable, Path(__file__).resolve(), "--child", "ours"],
                "peer": [peer, PEER_CHILD]}
    measured = {t["name"]: [] for t in tools}
    for round_ in range(1, args.rounds + 1):
        for i, tool in enumerate(tools):  # interleaved: every tool once per round, same order
            side = "ours" if tool["kind"] == "ours" else "peer"
            result = bc.run_child(commands[side], tool["spec"], workdir, f"tool{i}_round{round_}", threads)
            measured[tool["name"]].append(result)
            print(f"round {round_} {tool['name']}: {result['chars_per_sec']:,.0f} chars/s "
                  f"(load {result['load_seconds']:.1f} s, peak RSS {result['peak_rss_mb']:,.0f} MB)", flush=True)

    results = [summarize(t, measured[t["name"]], gold) for t in tools]
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report = {
        "benchmark": "inference_vs_peers",
        "machine": machine,
        "settings": {"test_file": str(test_file.resolve()), "sentences": len(gold),
                     "characters": sum(len(g.text) for g in gold), "limit": args.limit,
                     "rounds": args.rounds, "warmup_sentences": args.warmup, "cpus": cpus,
                     "threads": threads, "batch_tokens": common["batch_tokens"],
                     "shape_only": args.shape_only, "work_dir": str(workdir),
                     "shape_export_seconds": exported and exported["export_seconds"],
                     "scorer": "albert_ner.scoring.evaluate_predictions (exact span + type, micro)"},
        "tools": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "inference.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print()
    print(markdown(results))
    print(f"\nwrote {out / 'inference.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
