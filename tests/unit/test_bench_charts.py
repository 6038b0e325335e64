"""The charts of a run, drawn from a small run's JSON (matplotlib: the bench extra, which
./scripts/test installs)."""

import json
from pathlib import Path

from benchmarks import charts

FIXTURE = Path(__file__).parent / "fixtures" / "bench-run.json"
PNG = b"\x89PNG\r\n\x1a\n"


def test_every_chart_of_a_full_run_is_drawn_as_a_png(tmp_path):
    written = charts.draw(json.loads(FIXTURE.read_text()), tmp_path / "docs" / "bench")
    assert [path.name for path in written] == [
        "peers.png",
        "ratios.png",
        "targets.png",
        "soak-memory.png",
    ]
    for path in written:
        assert path.read_bytes().startswith(PNG), path.name


def test_a_peers_only_run_gets_the_peer_charts_alone(tmp_path):
    document = json.loads(FIXTURE.read_text())
    document["rows"] = [row for row in document["rows"] if row["target"] is None]
    document["soak"] = None
    assert [path.name for path in charts.draw(document, tmp_path)] == ["peers.png", "ratios.png"]


def test_the_command_names_the_files_it_wrote(tmp_path, capsys):
    charts.main([str(FIXTURE), "--out", str(tmp_path)])
    assert capsys.readouterr().out.split() == [
        str(tmp_path / name)
        for name in ("peers.png", "ratios.png", "targets.png", "soak-memory.png")
    ]
