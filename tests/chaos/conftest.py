"""The fault-injection suite: run only when asked for by path (`pytest tests/chaos`, `make chaos`).

It kills workers, stops RabbitMQ and restarts PostgreSQL, which would break any other test run
on the machine; so a plain `pytest` (the whole suite) deselects it, and the scenarios that stop
a shared service first wait until no other test run or benchmark is active. At the end of the
session the report (one row per scenario) is printed and written to var/chaos-report.md.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.builders import Actor, make_actor
from tests.chaos.stack import REPORT, report_markdown
from tests.support.workers import ROOT

CHAOS_DIR = Path(__file__).resolve().parent
REPORT_PATH = ROOT / "var" / "chaos-report.md"
# How long a scenario that stops a shared service waits for other test runs to finish.
WAIT_FOR_OTHERS_SECONDS = float(os.environ.get("MAILHUB_CHAOS_WAIT_SECONDS", "1200"))
POLL_SECONDS = 30
SCENARIO_ORDER = (
    "test_workers",
    "test_smtp",
    "test_relays",
    "test_burst",
    "test_cluster",
    "test_broker",
    "test_database",
)

# aiosmtpd logs every SMTP command at INFO: thousands of lines per scenario, in every failure.
logging.getLogger("mail.log").setLevel(logging.WARNING)


def _asked_for(config: pytest.Config) -> bool:
    base = config.invocation_params.dir
    for arg in config.args:
        path = (base / arg.split("::", 1)[0]).resolve()
        if path == CHAOS_DIR or CHAOS_DIR in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _asked_for(config):
        # In the report's order; the scenarios that stop a shared service last, so that the
        # others need not wait for the machine to be free.
        order = {stem: index for index, stem in enumerate(SCENARIO_ORDER)}
        items.sort(key=lambda item: order.get(item.path.stem, len(order)))
        return
    chaos = [item for item in items if CHAOS_DIR in item.path.parents]
    if chaos:
        config.hook.pytest_deselected(items=chaos)
        items[:] = [item for item in items if item not in chaos]


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not REPORT:
        return
    table = report_markdown(REPORT)
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(table)
    terminalreporter.write_sep("=", "chaos: what became of the mail under each fault")
    terminalreporter.write(table)
    terminalreporter.write_line(f"(written to {REPORT_PATH.relative_to(ROOT)})")


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rpartition(")")[2].split()[1])
    return pids


def other_runs() -> list[str]:
    """Test runs and benchmarks on this machine other than this one (and its parents)."""
    listed = subprocess.run(
        ["pgrep", "-af", "pytest|benchmarks"], capture_output=True, text=True, check=False
    ).stdout
    mine = _ancestors()
    return [
        line
        for line in listed.splitlines()
        if line.strip() and int(line.split(maxsplit=1)[0]) not in mine
    ]


@pytest.fixture
def machine_to_ourselves(capsys: pytest.CaptureFixture[str]) -> None:
    """Wait (up to MAILHUB_CHAOS_WAIT_SECONDS) until nobody else runs tests or benchmarks:
    stopping RabbitMQ or restarting PostgreSQL would break their runs."""
    deadline = time.monotonic() + WAIT_FOR_OTHERS_SECONDS
    while others := other_runs():
        if time.monotonic() > deadline:
            pytest.fail(
                f"other test runs still active after {WAIT_FOR_OTHERS_SECONDS:.0f} s; not "
                "stopping a shared service under them:\n" + "\n".join(others)
            )
        with capsys.disabled():  # shown as it happens: the run seems stuck otherwise
            print(f"\nchaos: waiting for {len(others)} other run(s): {others[0][:100]}")
        time.sleep(POLL_SECONDS)


@pytest.fixture
def actor(transactional_db) -> Actor:
    """The scenario's own client (and its API key): every row counted belongs to it."""
    return make_actor("chaos")
