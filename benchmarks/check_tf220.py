"""Does a SavedModel exported with our TensorFlow (2.21) load and run in TensorFlow 2.20?

The newest SageMaker TensorFlow inference container is built on TF 2.20 while training uses
2.21. This script builds a separate virtual environment with `tensorflow-cpu==2.20.*`
(default runs/tf220-venv, git-ignored; reused when it already has that version), runs both
signatures of MODEL_DIR/1 there and here on the same inputs — raw UTF-8 strings (including
an invalid byte sequence, an empty text and a multi-window text) for `serving_default`, char
ids for `predict_ids` — and compares every output: tag ids, tags and lengths exactly, entity
scores to 1e-5.

Usage:
  python benchmarks/check_tf220.py --model-dir runs/msra [--venv runs/tf220-venv]
Exit status 0 when the outputs agree, 1 when they differ or 2.20 cannot load the model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = "tensorflow-cpu==2.20.*"
SCORE_TOLERANCE = 1e-5
EXTRA_TEXTS = [
    "".encode(),
    "任文博出生于拉萨，财政部发言人曾芳表示。".encode(),
    ("北京大学" * 60).encode(),  # several windows
    "ＡＢＣ公司 与 Hello World 😀".encode(),
    b"\xff\xfe invalid \xe4\xb8",  # not UTF-8: the graph replaces bad bytes with U+FFFD
]


# ---------------------------------------------------------------------------- both sides
def run_signatures(saved_model: str, inputs: dict) -> dict:
    """Runs both signatures; needs only tensorflow and numpy (it runs in the 2.20 venv too).

    Args:
      saved_model: the SavedModel directory (MODEL_DIR/1).
      inputs: {"texts_hex": [hex of UTF-8 bytes], "char_ids": [[int]], "lengths": [int]}.

    Returns:
      {"tensorflow": version, "serving_default": {output: nested list},
       "predict_ids": {...}, "load_seconds": float}.
    """
    import numpy as np
    import tensorflow as tf

    started = time.time()
    loaded = tf.saved_model.load(saved_model)
    load_seconds = time.time() - started
    texts = tf.constant([bytes.fromhex(h) for h in inputs["texts_hex"]])
    width = max([len(row) for row in inputs["char_ids"]] + [1])
    char_ids = np.zeros((len(inputs["char_ids"]), width), np.int32)
    for r, row in enumerate(inputs["char_ids"]):
        char_ids[r, : len(row)] = row
    outputs = {
        "serving_default": loaded.signatures["serving_default"](text=texts),
        "predict_ids": loaded.signatures["predict_ids"](
            char_ids=tf.constant(char_ids), lengths=tf.constant(inputs["lengths"], tf.int32)
        ),
    }

    def plain(value):
        array = value.numpy()
        if array.dtype == object:
            return [[b.decode("utf-8") for b in row] for row in array]
        return array.tolist()

    result = {name: {key: plain(v) for key, v in out.items()} for name, out in outputs.items()}
    result.update(tensorflow=tf.__version__, load_seconds=round(load_seconds, 2))
    return result


def compare(ours: dict, theirs: dict) -> list[str]:
    """Differences between two `run_signatures` results (empty when they agree)."""
    problems = []
    for signature in ("serving_default", "predict_ids"):
        a, b = ours[signature], theirs[signature]
        if sorted(a) != sorted(b):
            problems.append(f"{signature}: outputs {sorted(a)} vs {sorted(b)}")
            continue
        for key in sorted(a):
            if key == "entity_scores":
                import numpy as np

                diff = float(np.max(np.abs(np.asarray(a[key]) - np.asarray(b[key])), initial=0.0))
                if diff > SCORE_TOLERANCE:
                    problems.append(f"{signature}.{key}: max difference {diff:.3g}")
            elif a[key] != b[key]:
                problems.append(f"{signature}.{key}: differs")
    return problems


# ---------------------------------------------------------------------------- the parent
def ensure_venv(venv: Path, spec: str) -> str:
    """Creates the venv and installs `spec` unless it already holds a matching TensorFlow."""
    python = venv / "bin" / "python"
    wanted = spec.split("==", 1)[1].rstrip(".*") if "==" in spec else ""
    if python.exists():
        probe = subprocess.run(
            [str(python), "-c", "import tensorflow as tf; print(tf.__version__)"],
            capture_output=True, text=True, env=_quiet_env(),
        )
        version = probe.stdout.strip().splitlines()[-1] if probe.returncode == 0 and probe.stdout.strip() else ""
        if version and version.startswith(wanted):
            print(f"reusing {venv} (tensorflow {version})", flush=True)
            return str(python)
    if not python.exists():
        print(f"creating {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing {spec} into {venv} (a few hundred MB; minutes)", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", spec], check=True)
    return str(python)


def _quiet_env() -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.pop("PYTHONPATH", None)  # the venv must not see this checkout's packages
    return env


def make_inputs(model_dir: Path, sample_file: Path | None, sample_size: int) -> dict:
    """Texts (MSRA sentences when available, plus edge cases) and their char ids."""
    from albert_ner.model_dir import ModelDir

    texts = list(EXTRA_TEXTS)
    if sample_file is not None and sample_file.exists():
        from albert_ner.data.readers import read_corpus

        texts += [e.text.encode() for e in read_corpus(sample_file).examples[:sample_size]]
    tokenizer = ModelDir(model_dir).load_tokenizer()
    decoded = [t.decode("utf-8", errors="replace") for t in texts]
    ids = [tokenizer.encode(t) for t in decoded]
    return {"texts_hex": [t.hex() for t in texts], "char_ids": ids, "lengths": [len(x) for x in ids]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="model directory whose 1/ SavedModel to check")
    parser.add_argument("--venv", default=str(REPO / "runs" / "tf220-venv"), help="virtual environment for the other TensorFlow")
    parser.add_argument("--spec", default=DEFAULT_SPEC, help="pip requirement of the other TensorFlow")
    parser.add_argument("--sample-file", default=str(REPO.parent / "shared" / "data" / "msra" / "test.txt"),
                        help="corpus whose first sentences are added to the inputs (skipped when absent)")
    parser.add_argument("--sample-size", type=int, default=64, help="sentences taken from --sample-file")
    parser.add_argument("--child", nargs=3, metavar=("SAVED_MODEL", "INPUTS", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # inside the other venv: no albert_ner here
        saved_model, inputs, output = args.child
        result = run_signatures(saved_model, json.loads(Path(inputs).read_text()))
        Path(output).write_text(json.dumps(result))
        return 0
    if not args.model_dir:
        parser.error("--model-dir is required")
    model_dir = Path(args.model_dir)
    saved_model = model_dir / "1"
    if not (saved_model / "saved_model.pb").exists():
        print(f"error: {saved_model}/saved_model.pb not found (export the model first)", file=sys.stderr)
        return 2
    inputs = make_inputs(model_dir, Path(args.sample_file), args.sample_size)
    ours = run_signatures(str(saved_model), inputs)
    python = ensure_venv(Path(args.venv), args.spec)
    with tempfile.TemporaryDirectory() as tmp:
        inputs_file, output_file = Path(tmp) / "inputs.json", Path(tmp) / "out.json"
        inputs_file.write_text(json.dumps(inputs))
        child = subprocess.run(
            [python, str(Path(__file__).resolve()), "--child", str(saved_model), str(inputs_file), str(output_file)],
            capture_output=True, text=True, env=_quiet_env(),
        )
        if child.returncode != 0:
            print(child.stderr[-3000:], file=sys.stderr)
            print(f"verdict: FAIL — TensorFlow in {args.venv} could not load or run {saved_model}")
            return 1
        theirs = json.loads(output_file.read_text())
    problems = compare(ours, theirs)
    print(f"saved model: {saved_model} ({len(inputs['texts_hex'])} texts, raw strings and char ids)")
    print(f"exported with / run here: tensorflow {ours['tensorflow']}; other venv: tensorflow {theirs['tensorflow']} "
          f"(loaded in {theirs['load_seconds']}s)")
    found = sum(1 for row in ours["serving_default"]["entity_scores"] for s in row if s > 0)
    print(f"entities in the outputs: {found}")
    import numpy as np

    for signature in ("serving_default", "predict_ids"):
        a, b = (np.asarray(r[signature]["entity_scores"]) for r in (ours, theirs))
        if a.shape == b.shape:
            print(f"{signature}: entity_scores max |difference| {float(np.max(np.abs(a - b), initial=0.0)):.3g}")
    if problems:
        for line in problems:
            print(f"  {line}")
        print(f"verdict: DIFFERENT — {len(problems)} output(s) differ between {ours['tensorflow']} and {theirs['tensorflow']}")
        return 1
    print(f"verdict: OK — both signatures give identical tags and lengths, entity scores within "
          f"{SCORE_TOLERANCE:g}, in tensorflow {ours['tensorflow']} and {theirs['tensorflow']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
