"""Serving and prediction sit beside training, not on top of it (issue 10's layering).

Each check runs in a fresh interpreter: in the test process other tests have long since
imported the training package.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import importlib, json, pkgutil, sys
import albert_ner.serving
modules = ["albert_ner.predict", "albert_ner.scoring", "albert_ner.text.batching"]
modules += [f"albert_ner.serving.{m.name}" for m in pkgutil.iter_modules(albert_ner.serving.__path__)]
for name in modules:
    importlib.import_module(name)
print(json.dumps({"checked": modules, "train": sorted(m for m in sys.modules if m.startswith("albert_ner.train"))}))
"""


def test_prediction_and_serving_do_not_import_the_training_package():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "albert_ner.serving.tfs_inference" in result["checked"]
    assert "albert_ner.serving.tfs_emulator" in result["checked"]
    assert result["train"] == []


@pytest.mark.parametrize("old,new", [
    ("albert_ner.train.metrics", "albert_ner.scoring"),
    ("albert_ner.train.batching", "albert_ner.text.batching"),
])
def test_training_keeps_the_old_names(old, new):
    """Training code and older notebooks import the moved functions from their old modules."""
    import importlib

    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    names = ["evaluate_predictions", "format_report", "entity_scores"] if new.endswith("scoring") else ["sentence_batches"]
    for name in names:
        assert getattr(old_module, name) is getattr(new_module, name)
