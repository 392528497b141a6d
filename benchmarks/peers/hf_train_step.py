"""Peer side of benchmarks/train_step_vs_hf.py: one Hugging Face + torchcrf training step, timed.

Runs in the PEER venv (benchmarks/peers/make_venv.sh), started by train_step_vs_hf.py with
`--spec FILE --result FILE`. The spec gives the encoder shape (read by the parent from this
project's presets), batch, precision, threads, CPUs and step counts.

One step, as a PyTorch user would write it for token classification with a CRF head:
  logits = {Albert,Bert}ForTokenClassification(input_ids, attention_mask).logits
  loss   = -torchcrf.CRF(logits[:, 1:-1] in float32, tags, mask).mean
  loss.backward(); clip_grad_norm_(all, clip); AdamW.step(); linear warm-up/decay step
bf16: the model's forward runs under torch.autocast("cpu", bfloat16); the CRF stays float32,
as in the project (its scores are summed over the sentence). Weights are random (built from a
config; nothing is downloaded): speed does not depend on their values.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402


def build_model(shape: dict, num_tags: int):
    """Albert- or BertForTokenClassification with the project's encoder shape."""
    import transformers

    common = dict(
        vocab_size=shape["vocab_size"],
        hidden_size=shape["hidden_size"],
        num_hidden_layers=shape["num_hidden_layers"],
        num_attention_heads=shape["num_attention_heads"],
        intermediate_size=shape["intermediate_size"],
        # The project's TF1-compatible "gelu" is the tanh approximation = HF "gelu_new".
        hidden_act="gelu_new" if shape["gelu_approximate"] else "gelu",
        hidden_dropout_prob=shape["hidden_dropout_prob"],
        attention_probs_dropout_prob=shape["attention_probs_dropout_prob"],
        max_position_embeddings=shape["max_position_embeddings"],
        type_vocab_size=shape["type_vocab_size"],
        layer_norm_eps=shape["layer_norm_eps"],
        num_labels=num_tags,
    )
    if shape["model_type"] == "albert":
        config = transformers.AlbertConfig(
            embedding_size=shape["embedding_size"], num_hidden_groups=1, inner_group_num=1,
            classifier_dropout_prob=shape["classifier_dropout"], **common,
        )
        return transformers.AlbertForTokenClassification(config)
    config = transformers.BertConfig(classifier_dropout=shape["classifier_dropout"], **common)
    return transformers.BertForTokenClassification(config)


def param_groups(model, crf, weight_decay: float, crf_lr: float) -> list[dict]:
    """BERT's AdamW grouping, as the project does: no decay on biases/LayerNorm, and the CRF
    transitions in their own group with a larger learning rate."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
        {"params": list(crf.parameters()), "weight_decay": 0.0, "lr": crf_lr},
    ]


def main() -> int:
    spec, result_path = bc.child_io()
    bc.pin_to(spec["cpus"])
    import torch
    import transformers
    from torchcrf import CRF

    threads = spec["threads"]
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)
    torch.manual_seed(0)

    started = time.perf_counter()
    num_tags = len(bc.TAGS)
    model = build_model(spec["shape"], num_tags)
    model.train()
    crf = CRF(num_tags, batch_first=True)
    optimizer = torch.optim.AdamW(
        param_groups(model, crf, spec["weight_decay"], spec["crf_learning_rate"]),
        lr=spec["learning_rate"], betas=(0.9, 0.999), eps=1e-6,
    )
    total, warmup = spec["schedule_steps"], int(0.1 * spec["schedule_steps"])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / max(warmup, 1) if s < warmup else max(0.0, (total - s) / max(total - warmup, 1))
    )
    params = list(model.parameters()) + list(crf.parameters())

    chars = spec["seq_len"] - 2
    ids, tag_names = bc.synthetic_batch(spec["batch_size"], chars, spec["shape"]["vocab_size"])
    input_ids = torch.tensor([[bc.CLS_ID, *row, bc.SEP_ID] for row in ids], dtype=torch.long)
    attention_mask = torch.ones_like(input_ids)
    tags = torch.tensor([[bc.TAGS.index(t) for t in row] for row in tag_names], dtype=torch.long)
    char_mask = torch.ones(tags.shape, dtype=torch.bool)
    bf16 = spec["precision"] == "bf16"

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        emissions = logits[:, 1:-1].float()  # drop [CLS]/[SEP]: one score row per character
        loss = -crf(emissions, tags, char_mask, reduction="mean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, spec["clip_norm"])
        optimizer.step()
        schedule.step()
        return loss.item()

    build_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(spec["warmup_steps"]):
        step()
    warmup_seconds = time.perf_counter() - started
    losses, started = [], time.perf_counter()
    for _ in range(spec["steps"]):
        losses.append(step())
    seconds = time.perf_counter() - started

    bc.write_result(result_path, {
        "side": "theirs",
        "implementation": f"transformers.{type(model).__name__} + torchcrf.CRF, torch.optim.AdamW",
        "attention": getattr(model.config, "_attn_implementation", None),
        "samples_per_sec": spec["batch_size"] * spec["steps"] / seconds,
        "seconds_per_step": seconds / spec["steps"],
        "build_seconds": build_seconds,
        "warmup_seconds": warmup_seconds,
        "final_loss": losses[-1],
        "parameters": sum(p.numel() for p in params),
        "threads": {"torch_num_threads": torch.get_num_threads(),
                    "torch_num_interop_threads": torch.get_num_interop_threads()},
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__,
                     "mkldnn_bf16": bool(getattr(torch.backends.mkldnn, "is_available", lambda: False)())},
        "peak_rss_mb": bc.peak_rss_mb(),
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
