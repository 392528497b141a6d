"""The script-mode (BYOS) entry: `python entry_point.py --max_steps 60 --model_config micro ...`.

The framework container runs this file with every hyperparameter as a `--key value` pair (and
sometimes an extra `--model_dir s3://...`, which is the S3 model location and is ignored: the
model goes to SM_MODEL_DIR). The arguments refine the hyperparameters read from
/opt/ml/input/config or SM_HPS; then the same contract as the BYOC `train` entrypoint runs.

`source_dir.stage_source_dir()` copies this file to the top of the uploaded source directory,
next to a copy of the package, so it must import `albert_ner` absolutely and nothing else.
"""

from __future__ import annotations

import os
import sys


def parse_script_args(argv: list[str]) -> dict[str, str]:
    """`--key value` / `--key=value` pairs → {key: value}; a bare `--flag` means "true".

    Values stay strings, as the platform wrote them; the contract converts them. Anything
    that is not a `--key` is an error naming it.
    """
    values: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or token == "--":
            raise ValueError(f"unexpected argument {token!r}: expected --key value pairs")
        key = token[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
            i += 2
        else:
            value = "true"
            i += 1
        values[key] = value
    return values


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from albert_ner.sagemaker.contract import JobPaths
    from albert_ner.sagemaker.job import run_job

    try:
        hyperparameters = parse_script_args(sys.argv[1:] if argv is None else argv)
    except ValueError as err:
        # Bad arguments are a failed job too: the platform must see the reason.
        paths = JobPaths.from_environ()
        paths.output.mkdir(parents=True, exist_ok=True)
        paths.failure.write_text(f"{err}\n", encoding="utf-8")
        print(f"error: {err}", file=sys.stderr)
        return 1
    return run_job(cli_hyperparameters=hyperparameters)


if __name__ == "__main__":
    sys.exit(main())
