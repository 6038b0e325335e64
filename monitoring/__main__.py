"""``python -m monitoring prometheus`` (``make monitoring``, through scripts/monitoring) and
``python -m monitoring snapshot`` (``make dashboard-snapshot``); ``--help`` says what they take."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from monitoring.dashboard import DASHBOARD, panels
from monitoring.prometheus import (
    DEFAULT_DIR,
    ROOT,
    PrometheusApi,
    PrometheusError,
    Targets,
    prometheus_command,
    write_local_config,
)

DEFAULT_PROMETHEUS = "127.0.0.1:9090"


def _prometheus(arguments: argparse.Namespace) -> int:
    token = os.environ.get("MAILHUB_METRICS_TOKEN", "")
    if not token:
        print("monitoring: MAILHUB_METRICS_TOKEN is not set (./scripts/start writes it to .env)")
        return 1
    config = write_local_config(
        arguments.dir,
        targets=Targets(web=arguments.web, flower=arguments.flower),
        token=token,
        scrape_interval=arguments.scrape_interval,
    )
    command = prometheus_command(
        binary="prometheus", config=config, data_dir=arguments.dir / "data", listen=arguments.listen
    )
    # Where `snapshot` finds it by default.
    (arguments.dir / "url").write_text(f"http://{arguments.listen}\n")
    sys.stdout.flush()
    os.execvp(command[0], command)  # noqa: S606 # Prometheus becomes this process, for Ctrl+C


def _snapshot(arguments: argparse.Namespace) -> int:
    from monitoring import snapshot  # matplotlib: only this command needs it

    api = PrometheusApi(arguments.prometheus)
    end = time.time()
    start = end - arguments.minutes * 60
    step = arguments.step or max(5.0, (end - start) / 150)
    shown = panels(arguments.dashboard)
    try:
        data = snapshot.fetch(api, shown, start=start, end=end, step=step)
    except PrometheusError as error:
        print(f"monitoring: {error} (is `make monitoring` running?)", file=sys.stderr)
        return 1
    empty = [panel.title for panel in shown if not data.get(panel.id)]
    written = snapshot.draw_each(shown, data, arguments.out)
    when = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M UTC")
    grid = snapshot.draw_grid(
        shown,
        data,
        arguments.grid or arguments.out / "dashboard.png",
        title=f"Mailhub: the last {arguments.minutes:g} minutes to {when} ({arguments.prometheus})",
    )
    print(f"{len(written)} panels in {arguments.out}/, all of them in {grid}")
    if empty:
        print("no data for: " + "; ".join(empty), file=sys.stderr)
    return 0


def _running_prometheus() -> str:
    recorded = DEFAULT_DIR / "url"
    return recorded.read_text().strip() if recorded.exists() else f"http://{DEFAULT_PROMETHEUS}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    prometheus = commands.add_parser(
        "prometheus",
        help="run Prometheus against this machine's stack (make monitoring)",
        description="Writes DIR/prometheus.yml (deploy/prometheus/prometheus.yml with these "
        "targets) and the token file (MAILHUB_METRICS_TOKEN, from the environment) beside it, "
        "then runs Debian's prometheus with them, its samples in DIR/data.",
    )
    prometheus.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    prometheus.add_argument("--web", default="127.0.0.1:8000", help="host:port of the API")
    prometheus.add_argument("--flower", default="127.0.0.1:5555", help="host:port of Flower")
    prometheus.add_argument("--listen", default=DEFAULT_PROMETHEUS, help="host:port to serve on")
    prometheus.add_argument("--scrape-interval", default="10s")
    prometheus.set_defaults(run=_prometheus)

    snapshot = commands.add_parser(
        "snapshot",
        help="draw every dashboard panel from Prometheus's data",
        description="Asks Prometheus for each query of each panel of the Grafana dashboard and "
        "draws one PNG per panel, and one of them all on Grafana's grid.",
    )
    snapshot.add_argument(
        "--prometheus",
        default=_running_prometheus(),
        help="Prometheus's URL (default: the one `make monitoring` runs)",
    )
    snapshot.add_argument("--minutes", type=float, default=15, help="how far back")
    snapshot.add_argument("--step", type=float, help="seconds between points")
    snapshot.add_argument("--dashboard", type=Path, default=DASHBOARD)
    snapshot.add_argument("--out", type=Path, default=ROOT / "var" / "dashboard-snapshot")
    snapshot.add_argument("--grid", type=Path, help="the grid image (default: OUT/dashboard.png)")
    snapshot.set_defaults(run=_snapshot)

    arguments = parser.parse_args(argv)
    return arguments.run(arguments)


if __name__ == "__main__":
    sys.exit(main())
