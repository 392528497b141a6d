"""Run the workshop notebooks in order with papermill and write an HTML handout.

  python -m albert_ner.workshop.papermill_runner --run-dir runs/workshop
      [--profile cpu|smoke] [-p NAME VALUE ...] [--only 01 02] [--no-html]

Leaves under RUN_DIR:
  workspace/             what the notebooks share (data, channels, runs, figures, analysis)
  notebooks/NN_*.ipynb   the executed notebooks, with outputs
  handout/NN_*.html      the same as HTML (nbconvert), and handout/index.html

The notebooks run on a Jupyter kernel spec written under RUN_DIR/kernel that points at this
interpreter, so a fresh virtualenv without a registered `python3` kernel works too. A cell
that raises stops the run: the executed notebook is still written (with the traceback) and
`NotebookFailed` names it.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

NOTEBOOKS = (
    "01_setup_and_data.ipynb",
    "02_run_on_notebook_gpu.ipynb",
    "03_byoc.ipynb",
    "04_byos.ipynb",
    "05_results_analysis.ipynb",
    "06_deploy_and_batch_inference.ipynb",
)
KERNEL_NAME = "albert-ner-workshop"
REPO_ROOT = Path(__file__).resolve().parents[3]

# Parameter sets. `cpu` is what `make workshop` runs and the notebooks' own defaults: on two CPU
# cores about 10 minutes in all (the micro model trains ~20 steps/s; tiny learns about as much
# per minute at 5x the cost per step). `smoke` is the tests' (about 2 minutes). Data comes
# from $MSRA_DIR (or the shared copy) when present, else is generated; the notebooks' own
# defaults (download MSRA; the pretrained ALBERT with a GPU) are a notebook instance's.
PROFILES = {
    "cpu": {
        # The no-download default recipe (BiLSTM-CRF over character + bigram embeddings) on all
        # of MSRA train: 800 steps of 64 reach test entity F1 ≈ 0.76 (0.7605 with the lexicon,
        # 2026-11-29; BENCHMARKS.md).
        "model_config": "chars", "train_sentences": None, "dev_sentences": 500, "test_sentences": 1000,
        "max_steps": 800, "eval_every": 200, "batch_size": 64, "max_seq_length": 64,
        "learning_rate": 6e-3, "seed": 42, "use_aws": True, "aws_endpoint": "moto",
        "pretrain_steps": 200,
        # 03: with Docker, build the image on a Debian base bootstrapped here (no registry pull)
        "image_base": "local",
        # 04: no AWS login here to pull the DLC: script mode runs in the image 03 built
        "byos_local_image": "albert-ner:latest",
    },
    "smoke": {
        "model_config": "micro", "train_sentences": 500, "dev_sentences": 80, "test_sentences": 80,
        "max_steps": 400, "eval_every": 50, "batch_size": 16, "max_seq_length": 48,
        "learning_rate": 3e-3, "seed": 7, "use_aws": True, "aws_endpoint": "moto",
        "pretrain_steps": 30, "image_base": "local", "byos_local_image": "albert-ner:latest",
        # 06: a short load test against one server (the batching-off comparison is for `cpu`).
        "load_requests": 120, "load_concurrency": 8, "load_malformed": 12, "compare_no_batching": False,
    },
}


class NotebookFailed(RuntimeError):
    """A notebook raised; `output` is the executed notebook holding the traceback."""

    def __init__(self, notebook: str, output: Path, error: BaseException):
        self.notebook, self.output, self.error = notebook, output, error
        super().__init__(f"{notebook} failed (executed copy with the traceback: {output}):\n{error}")


@dataclasses.dataclass
class NotebookResult:
    notebook: str
    output: Path
    seconds: float
    html: Path | None = None


def install_kernel(prefix: str | os.PathLike, name: str = KERNEL_NAME) -> str:
    """Writes a kernel spec for this interpreter under PREFIX/share/jupyter/kernels/NAME
    and puts PREFIX/share/jupyter on JUPYTER_PATH (so this process's papermill finds it)."""
    spec_dir = Path(prefix) / "share" / "jupyter" / "kernels" / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({name})",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    data_dir = str(Path(prefix) / "share" / "jupyter")
    paths = [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    if data_dir not in paths:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([data_dir, *paths])
    return name


def notebook_parameters(path: str | os.PathLike) -> set[str]:
    """Names assigned in the notebook's `parameters`-tagged cell."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    names: set[str] = set()
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            for node in ast.parse(cell.source).body:
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def run_notebook(
    source: str | os.PathLike,
    output: str | os.PathLike,
    parameters: dict | None = None,
    kernel_name: str = KERNEL_NAME,
    cwd: str | os.PathLike | None = None,
    timeout: int = 3600,
    log_output: bool = False,
) -> NotebookResult:
    """Executes one notebook with papermill; raises NotebookFailed when a cell raises.

    Only parameters the notebook declares are injected (papermill would warn on others).
    """
    import papermill

    source, output = Path(source), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    declared = notebook_parameters(source)
    params = {k: v for k, v in (parameters or {}).items() if k in declared}
    started = time.time()
    try:
        papermill.execute_notebook(
            str(source), str(output), parameters=params, kernel_name=kernel_name,
            cwd=str(cwd or source.parent), execution_timeout=timeout,
            log_output=log_output, progress_bar=False,
        )
    except Exception as err:  # noqa: BLE001 - papermill raises PapermillExecutionError and others
        raise NotebookFailed(source.name, output, err) from err
    return NotebookResult(source.name, output, time.time() - started)


def write_html(notebook: str | os.PathLike, target: str | os.PathLike) -> Path:
    """nbconvert's HTML of an executed notebook."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(notebook), as_version=4))
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target


def write_index(results: list[NotebookResult], target: Path) -> Path:
    items = "\n".join(
        f'<li><a href="{r.html.name}">{r.notebook}</a> ({r.seconds:.0f}s)</li>' for r in results if r.html
    )
    target.write_text(
        "<!doctype html><meta charset='utf-8'><title>albert-ner workshop</title>"
        f"<h1>albert-ner workshop — executed notebooks</h1><ol>{items}</ol>\n",
        encoding="utf-8",
    )
    return target


def default_parameters(profile: str, run_dir: Path) -> dict:
    params = dict(PROFILES[profile])
    params["workspace"] = str((run_dir / "workspace").resolve())
    # The notebooks' own default downloads MSRA; this machine has no network but may have a
    # copy ($MSRA_DIR, or the shared one beside the checkout). Without it, generated data.
    msra = Path(os.environ.get("MSRA_DIR") or REPO_ROOT.parent / "shared" / "data" / "msra").resolve()
    if (msra / "train.txt").is_file() and (msra / "dev.txt").is_file():
        params.update(data_source="msra", data_dir=str(msra))
    else:
        params["data_source"] = "synthetic"
    # The CPU profile's recipe: no checkpoint, whatever GPU the machine may have.
    params.setdefault("pretrained_checkpoint", "none")
    return params


def run_all(
    run_dir: str | os.PathLike,
    parameters: dict,
    notebooks_dir: str | os.PathLike = REPO_ROOT,
    notebooks: tuple[str, ...] = NOTEBOOKS,
    html: bool = True,
    log_output: bool = False,
) -> list[NotebookResult]:
    """Executes `notebooks` in order with the same parameters; stops at the first failure."""
    run_dir = Path(run_dir).resolve()
    notebooks_dir = Path(notebooks_dir).resolve()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the kernels inherit it
    kernel = install_kernel(run_dir / "kernel")
    results = []
    for name in notebooks:
        print(f"running {name} ...", flush=True)
        result = run_notebook(notebooks_dir / name, run_dir / "notebooks" / name, parameters,
                              kernel_name=kernel, cwd=notebooks_dir, log_output=log_output)
        if html:
            result.html = write_html(result.output, run_dir / "handout" / name.replace(".ipynb", ".html"))
        print(f"  done in {result.seconds:.0f}s → {result.output}", flush=True)
        results.append(result)
    if html:
        write_index(results, run_dir / "handout" / "index.html")
    return results


def check_no_secrets(results: list[NotebookResult], environ: dict | None = None) -> list[tuple[str, str]]:
    """(notebook, variable) for every AWS credential/account id of the environment that
    appears in an executed notebook or its HTML; empty when the outputs are clean."""
    from albert_ner.workshop.safety import SECRET_ENV_VARS, find_secrets

    environ = os.environ if environ is None else environ
    secrets = {k: environ[k] for k in SECRET_ENV_VARS if len(environ.get(k, "")) >= 4}
    texts = {}
    for r in results:
        for path in (r.output, r.html):
            if path is not None and Path(path).exists():
                texts[Path(path).name] = Path(path).read_text(encoding="utf-8", errors="replace")
    return find_secrets(texts, secrets)


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/workshop", help="where executed notebooks and the handout go")
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES), help="parameter set")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="override a notebook parameter (VALUE is a Python literal or a string)")
    parser.add_argument("--only", nargs="+", help="run only notebooks whose names start with these prefixes")
    parser.add_argument("--notebooks-dir", default=str(REPO_ROOT), help="where the .ipynb files are")
    parser.add_argument("--no-html", dest="html", action="store_false", help="skip the HTML handout")
    parser.add_argument("--log-output", action="store_true", help="stream cell outputs to this terminal")
    args = parser.parse_args(argv)

    run_dir = Path(args.run_dir).resolve()
    params = default_parameters(args.profile, run_dir)
    params.update((k, _parse_value(v)) for k, v in args.parameter)
    notebooks = NOTEBOOKS
    if args.only:
        notebooks = tuple(n for n in NOTEBOOKS if any(n.startswith(p) for p in args.only))
    started = time.time()
    try:
        results = run_all(run_dir, params, args.notebooks_dir, notebooks, args.html, args.log_output)
    except NotebookFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    leaks = check_no_secrets(results)
    if leaks:
        for name, variable in leaks:
            print(f"error: {name} contains the value of ${variable}; do not share it", file=sys.stderr)
        return 1
    print(f"\nworkshop done in {time.time() - started:.0f}s. Everything is under {run_dir}:")
    print(f"  executed notebooks  {run_dir / 'notebooks'}")
    if args.html:
        print(f"  HTML handout        {run_dir / 'handout' / 'index.html'}")
    print(f"  shared workspace    {params['workspace']}")
    for r in results:
        print(f"    {r.notebook:32s} {r.seconds:6.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
