"""Helpers shared by the peer benchmarks, on both sides of the comparison.

Standard library only: this file is imported by the project-side scripts (project venv) and
by the peer-side children in this folder (peer venv, which has no `albert_ner`). Every child
process is started the same way (`run_child`): it gets a JSON spec file, pins itself to the
given CPUs, does its work and writes a JSON result file; the parent keeps the numbers.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import random
import resource
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_PEER_VENV = REPO / "benchmarks" / ".venv-peers"
MAKE_VENV = "benchmarks/peers/make_venv.sh"

# lscpu flags that decide how fast fp32/bf16 matrix products can be on a CPU.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")

# The tag set both training sides use (albert_ner.data.schemes.TagSet order for LOC/ORG/PER).
TAGS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
# Token ids 0..5 are the special tokens of a built vocab ([PAD], [unused1], [UNK], [CLS],
# [SEP], [MASK]); synthetic characters use the ids after them.
CLS_ID, SEP_ID, FIRST_CHAR_ID = 3, 4, 6


# ----------------------------------------------------------------------------- the peer venv


def peer_python(path: str | None = None, without: str = "--sides ours") -> Path:
    """The peer venv's python, or SystemExit naming the command that builds the venv (and
    `without`, the option that skips the peers)."""
    python = Path(path) if path else DEFAULT_PEER_VENV / "bin" / "python"
    if not python.exists():
        raise SystemExit(
            f"error: the peer venv's python {python} does not exist.\n"
            f"Build it with:  {MAKE_VENV}"
            + (f" {python.parent.parent}" if path else "")
            + f"\n(or run only this project's side with {without})"
        )
    return python


# ----------------------------------------------------------------------------- the machine


def _lscpu() -> dict:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine_info() -> dict:
    """CPU model, the flags in CPU_FLAGS, cores, memory, load, OS, date and this command."""
    cpu = _lscpu()
    flags = set(cpu.get("Flags", "").split())
    return {
        "cpu_model": cpu.get("Model name", platform.processor() or "unknown"),
        "cpu_flags": {flag: flag in flags for flag in CPU_FLAGS},
        "cpus_online": os.cpu_count(),
        "threads_per_core": cpu.get("Thread(s) per core"),
        "memory_gib": _mem_total_gib(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python_parent": platform.python_version(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "cwd": os.getcwd(),
    }


def parse_cpus(text: str | None) -> list[int]:
    """"0,1" or "0-3" → CPU ids; None → every CPU this process may run on."""
    if not text:
        return sorted(os.sched_getaffinity(0))
    cpus = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return sorted(cpus)


def pin_to(cpus: list[int]) -> None:
    """Children call this first: same CPUs for every tool, so no tool gets more cores."""
    os.sched_setaffinity(0, cpus)


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def thread_env(threads: int) -> dict:
    """Environment for a child: OpenMP/MKL pools of the same size as the frameworks' pools."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ----------------------------------------------------------------------------- child processes


def run_child(argv: list, spec: dict, workdir: Path, label: str, threads: int) -> dict:
    """Runs `argv --spec FILE --result FILE` and returns the child's result dict.

    The child's output is kept in WORKDIR/LABEL.log; on failure its tail is shown.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    spec_file, result_file = workdir / f"{label}.spec.json", workdir / f"{label}.result.json"
    log_file = workdir / f"{label}.log"
    spec_file.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    result_file.unlink(missing_ok=True)
    cmd = [str(a) for a in argv] + ["--spec", str(spec_file), "--result", str(result_file)]
    with open(log_file, "w", encoding="utf-8") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=thread_env(threads)).returncode
    if code != 0 or not result_file.exists():
        tail = "".join(log_file.read_text(encoding="utf-8", errors="replace").splitlines(True)[-25:])
        raise RuntimeError(f"{label} failed (exit {code}): {shlex.join(cmd)}\n--- {log_file} (tail) ---\n{tail}")
    return json.loads(result_file.read_text(encoding="utf-8"))


def child_io(argv: list[str] | None = None) -> tuple[dict, Path]:
    """In a child: reads --spec FILE, returns (spec, result path)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--result", required=True)
    args, _ = parser.parse_known_args(argv)
    return json.loads(Path(args.spec).read_text(encoding="utf-8")), Path(args.result)


def write_result(path: Path, result: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def write_texts(path: Path, texts: list[str]) -> None:
    """The sentences every inference child tags: one JSON list, written once by the parent."""
    Path(path).write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")


def read_texts(path: str | Path) -> list[str]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def time_tagging(load, tag, texts: list[str], warmup: int) -> tuple[list, dict]:
    """The inference protocol every tool follows, so only the tagging itself is timed.

    load() → a tagger; tag(tagger, texts) → one prediction per text. Loading, then a warm-up
    pass over the first `warmup` texts, are timed separately from the pass over all texts
    whose predictions are returned.
    """
    import time

    started = time.perf_counter()
    tagger = load()
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    tag(tagger, texts[:warmup])
    warmup_seconds = time.perf_counter() - started
    started = time.perf_counter()
    predictions = tag(tagger, texts)
    seconds = time.perf_counter() - started
    chars = sum(len(t) for t in texts)
    return predictions, {
        "load_seconds": load_seconds,
        "warmup_seconds": warmup_seconds,
        "warmup_sentences": min(warmup, len(texts)),
        "seconds": seconds,
        "sentences": len(texts),
        "characters": chars,
        "chars_per_sec": chars / seconds,
        "sentences_per_sec": len(texts) / seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


# ----------------------------------------------------------------------------- numbers


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def length_sorted_batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """The project's inference batching (albert_ner.text.batching.sentence_batches), restated
    for the peer venv: indices sorted by length, each batch at most max_tokens padded
    characters (rows × longest; an empty sentence counts as 1). A test checks both agree."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, current = [], []
    for i in order:
        if current and max(lengths[i], 1) * (len(current) + 1) > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def synthetic_batch(batch: int, chars: int, vocab_size: int, seed: int = 0) -> tuple[list, list]:
    """The training batch both sides time: (char ids, tag strings), `batch` rows of `chars`.

    Every character is real (no padding); each row holds a few valid BIO entities so the
    CRF's constrained transitions (ours) see a possible gold path. Same seed → same batch
    on both sides.
    """
    rng = random.Random(seed)
    ids, tags = [], []
    for _ in range(batch):
        ids.append([rng.randrange(FIRST_CHAR_ID, vocab_size) for _ in range(chars)])
        row = ["O"] * chars
        i = rng.randrange(0, 8)
        while i < chars - 1:
            length = min(rng.randrange(2, 5), chars - i)
            type_ = rng.choice(("LOC", "ORG", "PER"))
            row[i : i + length] = [f"B-{type_}"] + [f"I-{type_}"] * (length - 1)
            i += length + rng.randrange(3, 15)
        tags.append(row)
    return ids, tags
