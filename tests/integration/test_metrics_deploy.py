"""The Grafana dashboard and Prometheus alert rules under deploy/ name only metrics that GET
/metrics and GET /metrics/http serve (a renamed metric would silently blank a panel or mute an
alert). promtool checks their PromQL (tests/deploy/test_monitoring.py); a live Prometheus
answers every panel (tests/integration/test_dashboard_prometheus.py)."""

import json
import re

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.workers import ROOT

pytestmark = pytest.mark.integration

DEPLOY = ROOT / "deploy"
METRIC = re.compile(r"\bmailhub_[a-z_]+\b")


def served_names(client) -> set[str]:
    """Every family and sample name of /metrics and /metrics/http (a family without workers to
    report has no samples; the request metrics have theirs once a request was answered)."""
    client.get("/api/v1/messages")
    names = set()
    for path in ("/metrics", "/metrics/http"):
        for family in text_string_to_metric_families(client.get(path).content.decode()):
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "mailhub-dashboard.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def alert_expressions() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("source", [dashboard_expressions, alert_expressions])
def test_every_metric_the_examples_use_is_served(client, db, source):
    served = served_names(client)
    expressions = source()

    used = {name for expr in expressions for name in METRIC.findall(expr)}

    assert expressions and used
    assert used <= served, sorted(used - served)
