"""The lock files: they cover pyproject.toml, agree with each other, pin torch's CPU build, and
a refreshed lock makes `make install` reinstall. Fast: no install, no network.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import textwrap

import pytest

from conftest import REPO

DEV_LOCK = REPO / "requirements" / "dev.lock"
IMAGE_LOCKS = {
    REPO / "container" / "locks" / "image-cpu.lock": ["cpu", "serve"],
    REPO / "container" / "locks" / "image-tf-base.lock": ["serve"],
}
INSTALLER_LOCKS = [REPO / "requirements" / "installer.lock", REPO / "container" / "locks" / "installer.lock"]
ALL_LOCKS = [DEV_LOCK, *IMAGE_LOCKS, *INSTALLER_LOCKS]


def _check_lock():
    spec = importlib.util.spec_from_file_location("check_lock", REPO / "requirements" / "check_lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_locks_cover_pyproject():
    """Fails when pyproject.toml gained or tightened a requirement without `make lock`."""
    check = _check_lock()
    assert check.problems(DEV_LOCK, REPO / "pyproject.toml", ["dev", "workshop"]) == []
    for lock, extras in IMAGE_LOCKS.items():
        assert check.problems(lock, REPO / "pyproject.toml", extras) == [], lock.name


def test_check_lock_names_a_missing_and_an_excluded_pin(tmp_path):
    check = _check_lock()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(textwrap.dedent("""
        [project]
        name = "x"
        version = "0"
        dependencies = ["numpy>=2.5", "uvloop>=0.23; sys_platform == 'win32'"]
        [project.optional-dependencies]
        dev = ["pytest>=8", "hypothesis"]
    """), encoding="utf-8")
    lock = tmp_path / "dev.lock"
    lock.write_text("numpy==2.4.6 \\\n    --hash=sha256:00\npytest==9.2.0 \\\n    --hash=sha256:00\n", encoding="utf-8")
    assert check.problems(lock, pyproject, ["dev"]) == [
        "numpy>=2.5 (dependencies) does not admit the locked numpy==2.4.6",
        "hypothesis (extra 'dev') has no pin in dev.lock",
    ]  # uvloop's marker does not apply on linux: not required
    assert check.main([str(lock), "--extra", "dev", "--pyproject", str(pyproject)]) == 1


def _pins(lock) -> dict[str, str]:
    return dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", lock.read_text(encoding="utf-8"), re.M | re.I))


def test_every_pin_is_exact_and_hashed():
    for lock in ALL_LOCKS:
        text = lock.read_text(encoding="utf-8")
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1])
        requirements = [e for e in entries if not e.startswith("#")]
        assert requirements, lock
        for entry in requirements:
            assert re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*==\S+ \\\n", entry), (lock.name, entry[:80])
            assert "--hash=sha256:" in entry, (lock.name, entry[:80])


def test_the_image_and_installer_locks_pin_what_ci_pins():
    """Same versions in the image as in CI's venv: the image locks are constrained by dev.lock."""
    dev = _pins(DEV_LOCK)
    for lock in [*IMAGE_LOCKS, *INSTALLER_LOCKS]:
        for name, version in _pins(lock).items():
            assert dev.get(name) == version, f"{lock.name}: {name}=={version}, dev.lock has {dev.get(name)}"
    image_cpu = _pins(REPO / "container" / "locks" / "image-cpu.lock")
    assert "tensorflow-cpu" in image_cpu
    # The TensorFlow base brings its own (CUDA) TensorFlow: its lock must not replace it.
    assert not {"tensorflow", "tensorflow-cpu", "keras"} & set(_pins(REPO / "container" / "locks" / "image-tf-base.lock"))


def test_torch_is_the_cpu_build():
    """Plain torch from the index is a multi-GB CUDA build; the lock holds the local CPU wheel's
    version (+cpu) and nothing of CUDA."""
    dev = _pins(DEV_LOCK)
    assert dev["torch"].endswith("+cpu")
    assert not [name for name in dev if name.startswith(("nvidia-", "triton"))]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_a_refreshed_lock_reinstalls(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    installed = venv / ".installed"
    installed.touch()
    newer = installed.stat().st_mtime + 10  # the venv is newer than every input...
    for path in [REPO / "pyproject.toml", *ALL_LOCKS]:
        assert path.stat().st_mtime < newer
    os.utime(installed, (newer, newer))

    def dry_run(*extra):
        return subprocess.run(["make", "-n", "-C", str(REPO), f"VENV={venv}", "install", *extra],
                              capture_output=True, text=True, check=True).stdout

    assert "pip install" not in dry_run()  # ...so nothing to do
    for lock in ("requirements/dev.lock", "requirements/installer.lock"):
        commands = dry_run("-W", lock)  # as if the lock had just been refreshed
        assert f"--require-hashes --no-build-isolation -r requirements/dev.lock" in commands, lock
        assert "--no-deps --no-build-isolation -e ." in commands, lock
