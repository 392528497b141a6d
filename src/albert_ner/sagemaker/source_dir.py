"""The source directory a script-mode (BYOS) job uploads.

The TensorFlow framework container has TensorFlow and NumPy — all this package needs — but not
the package itself. Rather than pip-installing it inside the job, the staged directory holds a
copy of the package next to the entry script; Python puts the script's directory on sys.path,
so `import albert_ner` finds the copy:

  STAGED/
    entry_point.py        copy of albert_ner/sagemaker/entry_point.py
    albert_ner/           copy of the installed package (no caches)
    requirements.txt      the package's own dependencies (jieba: the AWS TensorFlow image lacks
                          it, and without it the default recipe loses its lexicon), then any
                          extra requirements; the job pip-installs them before the entry script
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

ENTRY_SCRIPT = "entry_point.py"


def package_requirements() -> list[str]:
    """The installed package's own dependencies (no extras): what a job's image must add.

    Read from the package metadata, so pyproject.toml stays the one place they are written.
    TensorFlow is not among them (an extra), so the image's own TensorFlow is kept.
    """
    try:
        declared = importlib.metadata.requires("albert-ner") or []
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError("albert-ner is not installed (pip install -e . from the repository), so the "
                           "dependencies a script-mode job needs are unknown") from None
    return [r for r in declared if "extra ==" not in r]


def stage_source_dir(target: str | Path, requirements: list[str] | None = None) -> Path:
    """Writes the BYOS source directory to `target` (replaced if present); returns it.

    requirements.txt always holds `package_requirements()`, then `requirements`.
    """
    import albert_ner

    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    package = Path(albert_ner.__file__).resolve().parent
    shutil.copytree(package, target / "albert_ner",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    shutil.copyfile(package / "sagemaker" / "entry_point.py", target / ENTRY_SCRIPT)
    lines = package_requirements() + list(requirements or [])
    (target / "requirements.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target
