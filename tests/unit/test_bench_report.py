"""The run as JSON: its shape, what charts read from it, its file name."""

import json
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import report
from benchmarks.procs import machine
from benchmarks.stats import Target
from benchmarks.table import Row, heading
from benchmarks.versus import compare, median_figures

FIXTURE = Path(__file__).parent / "fixtures" / "bench-run.json"
STARTED = datetime(2026, 12, 4, 11, 31, 32, tzinfo=UTC)


def a_run(**overrides):
    rounds = [
        {
            "drain": {"mailhub": {"rate": 800.0}, "post_office": {"rate": 900.0}},
            "batch": {"mailhub": {"seconds": 12.5}},
        }
    ]
    median = median_figures(rounds)
    arguments = {
        "started": STARTED,
        "finished": STARTED.replace(minute=40),
        "commit": "abc1234",
        "dirty": False,
        "machine": machine(),
        "options": {"messages": 10_000, "peers_only": True},
        "load": {"start": (0.5, 0.4, 0.3), "end": (1.5, 1.0, 0.5)},
        "rows": [
            heading("API single-message accept"),
            Row("rate", 412.0, "req/s", Target(">=", 1000)),
            heading("Correctness, the whole run"),
            Row("lost: accepted but not final", 0, "msgs", Target("==", 0)),
            Row("plan reads delivery_due", "yes", wanted="yes", ok=True),
        ],
        "peer": {
            "name": "django-post-office",
            "version": "3.12.0",
            "settings": {"THREADS_PER_PROCESS": 20, "BATCH_SIZE": 1000},
            "concurrency": 4,
        },
        "rounds": rounds,
        "median": median,
        "compared": compare(median),
    }
    return report.document(**{**arguments, **overrides})


def test_the_document_holds_the_machine_the_commit_every_row_and_the_peer_comparison():
    document = json.loads(json.dumps(a_run()))
    assert document["schema"] == report.SCHEMA
    assert document["commit"] == "abc1234"
    assert document["machine"]["cpus"] >= 1
    assert document["load_average"]["start"] == [0.5, 0.4, 0.3]
    rate, lost, plan = document["rows"]
    assert rate == {
        "section": "API single-message accept",
        "label": "rate",
        "value": 412.0,
        "unit": "req/s",
        "target": {"op": ">=", "bound": 1000},
        "result": "NOT met: 41% of target",
    }
    assert lost["section"] == "Correctness, the whole run"
    assert (plan["value"], plan["target"], plan["result"]) == ("yes", None, "met")
    peer = document["peer"]
    assert peer["version"] == "3.12.0"
    assert peer["rounds"][0]["drain"]["post_office"]["rate"] == 900.0
    drain = peer["comparison"][0]
    assert (drain["mailhub"], drain["peer"], drain["target"]) == (
        800.0,
        900.0,
        {"op": ">=", "bound": 1.3},
    )
    assert drain["result"].startswith("NOT met")
    assert document["soak"] is None


def test_a_run_without_the_peer_says_so():
    assert a_run(peer=None, rounds=[], median=None, compared=[])["peer"] is None


def test_the_file_is_named_by_the_utc_start_and_written_where_asked(tmp_path):
    path = report.write(a_run(), tmp_path / "var" / "bench", STARTED)
    assert path.name == "2026-12-04T113132Z.json"
    assert json.loads(path.read_text())["started"] == "2026-12-04T11:31:32+00:00"


def test_the_charts_fixture_has_the_shape_the_report_writes():
    fixture = json.loads(FIXTURE.read_text())
    document = json.loads(json.dumps(a_run(soak={"interval": 1.0, "samples": []})))
    assert set(fixture) == set(document)
    assert set(fixture["peer"]) == set(document["peer"])
    assert set(fixture["rows"][0]) == set(document["rows"][0])
    assert set(fixture["peer"]["comparison"][0]) == set(document["peer"]["comparison"][0])
