"""The source directory a script-mode (BYOS) job uploads.

The TensorFlow framework container has TensorFlow and NumPy — all this package needs — but not
the package itself. Rather than pip-installing it inside the job, the staged directory holds a
copy of the package next to the entry script; Python puts the script's directory on sys.path,
so `import albert_ner` finds the copy:

  STAGED/
    entry_point.py        copy of albert_ner/sagemaker/entry_point.py
    albert_ner/           copy of the installed package (no caches)
    requirements.txt      optional extra pip requirements
"""

from __future__ import annotations

import shutil
from pathlib import Path

ENTRY_SCRIPT = "entry_point.py"


def stage_source_dir(target: str | Path, requirements: list[str] | None = None) -> Path:
    """Writes the BYOS source directory to `target` (replaced if present); returns it."""
    import albert_ner

    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    package = Path(albert_ner.__file__).resolve().parent
    shutil.copytree(package, target / "albert_ner",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    shutil.copyfile(package / "sagemaker" / "entry_point.py", target / ENTRY_SCRIPT)
    if requirements:
        (target / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    return target
