"""The lock files (requirements/*.txt, written by `make lock`) agree with pyproject.toml.

Offline and quick: it reads the files, it resolves nothing. What it catches is a dependency
added, removed or re-ranged in pyproject.toml without `make lock` (the install would then not
be what pyproject.toml says), and hand edits that break what the lock promises: a hash for every
pin, production's versions the ones the tests ran with, pre-commit's ruff the lock's ruff.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "requirements/runtime.txt"
DEV_LOCK = ROOT / "requirements/dev.txt"
BENCH_LOCK = ROOT / "requirements/bench.txt"
#: How uv names the project among the packages that asked for a pin.
FROM_PYPROJECT = "mailhub (pyproject.toml)"

_PIN = re.compile(r"^([a-z0-9][a-z0-9._-]*)==(\S+)")
_VIA_INLINE = re.compile(r"^\s+# via (.+)$")
_VIA_LINE = re.compile(r"^\s+#\s{3}(.+)$")


@dataclass
class Pin:
    version: str
    hashes: int = 0
    via: set[str] = field(default_factory=set)


def read_lock(path: Path) -> dict[str, Pin]:
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for line in path.read_text().splitlines():
        if pin := _PIN.match(line):
            current = pins[canonicalize_name(pin[1])] = Pin(pin[2])
        elif current is not None and "--hash=sha256:" in line:
            current.hashes += 1
        elif current is not None and (via := _VIA_INLINE.match(line) or _VIA_LINE.match(line)):
            current.via.add(via[1])
    return pins


def declared(*extras: str) -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    requirements = [Requirement(line) for line in lines]
    return {
        canonicalize_name(r.name): r
        for r in requirements
        if r.marker is None or r.marker.evaluate({"python_version": "3.11"})
    }


LOCKS = {
    "runtime": (RUNTIME_LOCK, ()),
    # The dev install: ./scripts/bootstrap's, with the tools and honcho for ./scripts/start.
    "dev": (DEV_LOCK, ("dev", "run")),
    # ./scripts/bench's: the dev install and the peer it measures against, with the charts.
    "bench": (BENCH_LOCK, ("dev", "run", "bench")),
}


@pytest.mark.parametrize("lock", LOCKS)
def test_the_lock_pins_exactly_what_pyproject_declares_within_its_ranges(lock: str) -> None:
    path, extras = LOCKS[lock]
    pins = read_lock(path)
    wanted = declared(*extras)
    direct = {name for name, pin in pins.items() if FROM_PYPROJECT in pin.via}
    hint = "run `make lock` after changing pyproject.toml's dependencies"
    assert sorted(set(wanted) - direct) == [], f"declared but not locked: {hint}"
    assert sorted(direct - set(wanted)) == [], f"locked but no longer declared: {hint}"
    outside = {
        name: f"{pins[name].version} not in {r.specifier}"
        for name, r in wanted.items()
        if not r.specifier.contains(pins[name].version, prereleases=True)
    }
    assert outside == {}, hint


@pytest.mark.parametrize("lock", LOCKS)
def test_every_pin_has_its_hashes(lock: str) -> None:
    pins = read_lock(LOCKS[lock][0])
    assert pins
    assert [name for name, pin in pins.items() if not pin.hashes] == []


def test_production_runs_the_versions_the_tests_ran_with() -> None:
    runtime, dev = read_lock(RUNTIME_LOCK), read_lock(DEV_LOCK)
    assert set(runtime) <= set(dev)
    assert {n: p.version for n, p in runtime.items() if dev[n].version != p.version} == {}


def test_the_benchmark_runs_the_versions_the_tests_ran_with() -> None:
    dev, bench = read_lock(DEV_LOCK), read_lock(BENCH_LOCK)
    assert set(dev) <= set(bench)
    assert {n: p.version for n, p in dev.items() if bench[n].version != p.version} == {}


def test_neither_production_nor_the_dev_install_gets_the_benchmark_peer() -> None:
    peer = {"django-post-office", "matplotlib"}
    assert peer <= set(declared("bench")) - set(declared("dev", "run"))
    assert sorted(peer & (set(read_lock(RUNTIME_LOCK)) | set(read_lock(DEV_LOCK)))) == []


def test_production_gets_neither_honcho_nor_the_dev_tools() -> None:
    tools = {"honcho", "ruff", "mypy", "pytest", "hypothesis", "schemathesis", "pre-commit", "uv"}
    assert tools <= set(declared("dev", "run")) - set(declared())
    assert sorted(tools & set(read_lock(RUNTIME_LOCK))) == []


def test_pre_commit_runs_the_locked_ruff() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    locked = f"ruff=={read_lock(DEV_LOCK)['ruff'].version}"
    for name in ("ruff-check", "ruff-format"):
        assert hooks[name]["additional_dependencies"] == [locked], name
