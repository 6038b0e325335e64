"""`make dashboard-snapshot`: the dashboard's panels read from its JSON, each query's series asked
of Prometheus's HTTP API, and every panel drawn (matplotlib: the bench extra, which
./scripts/test installs). Prometheus is stood in for by a fake answering /api/v1/query_range;
tests/integration/test_dashboard_prometheus.py asks the real one."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from monitoring import snapshot
from monitoring.__main__ import main
from monitoring.dashboard import DASHBOARD, Query, legend, panels
from monitoring.prometheus import PrometheusApi, PrometheusError

PNG = b"\x89PNG\r\n\x1a\n"


class FakePrometheus(BaseHTTPRequestHandler):
    """Two series for every query, but a 400 for the one query ``broken`` names."""

    broken = ""
    asked: list[str] = []

    def do_GET(self) -> None:
        params = parse_qs(urlsplit(self.path).query)
        expr = params["query"][0]
        type(self).asked.append(expr)
        if expr == self.broken:
            self._answer(400, {"status": "error", "errorType": "bad_data", "error": "parse error"})
            return
        start, end, step = (float(params[name][0]) for name in ("start", "end", "step"))
        times = [start + i * step for i in range(int((end - start) / step) + 1)]
        result = []
        for kind, slope in (("delivered", 0.5), ("deferred", 0.01)):
            values = [[t, str(slope * i)] for i, t in enumerate(times)]
            if kind == "deferred":
                values[0][1] = "NaN"  # a gap, as Prometheus writes it
            result.append(
                {"metric": {"type": kind, "route": "message-collection"}, "values": values}
            )
        self._answer(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})

    def _answer(self, status: int, document: dict) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def prometheus():
    FakePrometheus.broken, FakePrometheus.asked = "", []
    server = HTTPServer(("127.0.0.1", 0), FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_every_panel_of_the_dashboard_is_read_with_its_grid_place_and_queries():
    document = json.loads(DASHBOARD.read_text())
    found = panels()

    assert len(found) == len(document["panels"])
    assert [(p.y, p.x) for p in found] == sorted((p.y, p.x) for p in found)
    assert all(p.queries and p.x >= 0 and p.x + p.w <= 24 for p in found)
    rabbitmq = next(p for p in found if p.title == "RabbitMQ")
    assert dict(rabbitmq.mappings) == {"0": "down", "1": "up"}


def test_a_legend_is_filled_from_the_series_labels_as_grafana_does():
    labels = {"__name__": "x", "route": "message-detail", "status_class": "2xx"}
    assert legend(Query("A", "x", "{{route}} {{ status_class }}"), labels) == "message-detail 2xx"
    assert legend(Query("A", "x", "p99"), labels) == "p99"
    assert legend(Query("A", "x", ""), labels) == "route=message-detail, status_class=2xx"
    assert legend(Query("B", "x", ""), {}) == "B"
    assert legend(Query("A", "x", "{{client}}"), {"type": "sent"}) == "type=sent"


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (0.1234, "percentunit", "12.3 %"),
        (0.25, "s", "250 ms"),
        (42.0, "s", "42.0 s"),
        (600.0, "s", "10.0 min"),
        (2.41, "reqps", "2.41 req/s"),
        (1234.0, "none", "1,234"),
        (math.nan, "none", "n/a"),
    ],
)
def test_stat_values_are_shown_in_their_panels_unit(value, unit, shown):
    assert snapshot.format_value(value, unit) == shown


def test_the_snapshot_asks_every_query_and_draws_every_panel_and_the_grid(prometheus, tmp_path):
    out, grid = tmp_path / "panels", tmp_path / "docs" / "dashboard.png"

    assert (
        main(
            [
                "snapshot",
                "--prometheus",
                prometheus,
                "--minutes",
                "10",
                "--out",
                str(out),
                "--grid",
                str(grid),
            ]
        )
        == 0
    )

    every = [query.expr for panel in panels() for query in panel.queries]
    assert sorted(FakePrometheus.asked) == sorted(every)
    drawn = sorted(out.glob("*.png"))
    assert len(drawn) == len(panels())
    assert all(path.read_bytes().startswith(PNG) for path in [*drawn, grid])
    assert grid.stat().st_size < 300_000  # small enough for the README


def test_a_query_prometheus_refuses_is_reported_with_its_reason(prometheus):
    FakePrometheus.broken = "sum(("
    with pytest.raises(PrometheusError, match="bad_data: parse error"):
        PrometheusApi(prometheus).query_range("sum((", start=0, end=60, step=15)
    with pytest.raises(PrometheusError, match=r"127\.0\.0\.1:9"):
        PrometheusApi("http://127.0.0.1:9", timeout=2).query("up")
