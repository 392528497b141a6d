"""Fails when a lock file no longer covers what pyproject.toml asks for (run `make lock`).

`make install` installs requirements/dev.lock and then the package with --no-deps, so a
requirement added to pyproject.toml (or a tightened version range) without a refreshed lock
would silently go missing or stay at a version the project no longer accepts. This check runs
before the long install and names what is wrong:

  python requirements/check_lock.py requirements/dev.lock --extra dev [--extra workshop ...]

It needs only `packaging` (in requirements/installer.lock, installed first). Each requirement
of the package's dependencies and of the named extras, whose marker applies to this machine,
must have a pin (`name==version`) in the lock that its version range admits.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# `name==version \` at the start of a line (pip-compile's layout; hashes follow on their own lines)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)\s*(?:\\|;|$)")


def read_pins(lock: Path) -> dict[str, Version]:
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def requirements(pyproject: Path, extras: list[str]) -> list[tuple[Requirement, str]]:
    """(requirement, where it comes from) for the dependencies and the named extras."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    out = [(Requirement(line), "dependencies") for line in project.get("dependencies", [])]
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"error: pyproject.toml has no extra {extra!r}")
        out += [(Requirement(line), f"extra {extra!r}") for line in optional[extra]]
    return out


def problems(lock: Path, pyproject: Path, extras: list[str]) -> list[str]:
    pins = read_pins(lock)
    found = []
    for requirement, source in requirements(pyproject, extras):
        environment = dict(default_environment(), extra="")
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue  # e.g. uvloop on Windows: not part of this platform's lock
        name = canonicalize_name(requirement.name)
        if name not in pins:
            found.append(f"{requirement} ({source}) has no pin in {lock.name}")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            found.append(f"{requirement} ({source}) does not admit the locked {name}=={pins[name]}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path)
    parser.add_argument("--extra", action="append", default=[], help="an extra the lock must cover")
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    args = parser.parse_args(argv)
    found = problems(args.lock, args.pyproject, args.extra)
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    if found:
        print(f"error: {args.lock} is out of date with {args.pyproject.name}: run `make lock` and commit "
              f"the refreshed lock files", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
