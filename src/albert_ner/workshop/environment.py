"""What this machine offers the workshop: TensorFlow, GPUs, the SageMaker SDK, Docker, AWS.

Notebook 01 shows `check_environment()` as a table; later notebooks use `local_instance_type`
and `docker_available` to choose between SageMaker local mode and the process runner.
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess

from albert_ner.workshop.safety import credentials_summary


def _version(module: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - absent or broken: both mean "not usable"
        return None
    return getattr(mod, "__version__", "present")


def _run_ok(argv: list[str], timeout: float = 10.0) -> bool:
    if shutil.which(argv[0]) is None:
        return False
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def docker_available() -> bool:
    """True when the docker CLI exists *and* its daemon answers (local mode needs both)."""
    return _run_ok(["docker", "info"])


def docker_compose_available() -> bool:
    return _run_ok(["docker", "compose", "version"]) or _run_ok(["docker-compose", "version"])


def nvidia_gpu_available() -> bool:
    return _run_ok(["nvidia-smi"])


def local_instance_type() -> str:
    """SageMaker local mode's instance type: `local_gpu` when nvidia-smi works, else `local`."""
    return "local_gpu" if nvidia_gpu_available() else "local"


def check_environment(probe_docker: bool = True) -> dict:
    """A flat dict describing the machine (values are strings, numbers, booleans or None)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
        "keras": _version("keras"),
        "gpus": len(gpus),
        "gpu_names": ", ".join(g.name for g in gpus) or None,
        "nvidia_smi": nvidia_gpu_available(),
        "sagemaker_sdk": _version("sagemaker"),
        "boto3": _version("boto3"),
        "albert_ner_sagemaker": _version("albert_ner.sagemaker") is not None,
        "docker_cli": shutil.which("docker") is not None,
        "docker_daemon": docker_available() if probe_docker else None,
        "aws_credentials": credentials_summary(),
        "aws_region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        "on_sagemaker_notebook": os.path.exists("/opt/ml/metadata/resource-metadata.json"),
    }
    return info
