"""The example Grafana dashboard and Prometheus alert rules under deploy/ name only metrics that
GET /metrics serves (a renamed metric would silently blank a panel or mute an alert).

Their PromQL is checked by promtool: `promtool check rules deploy/prometheus/alerts.yml` and
`promtool test rules deploy/prometheus/alerts_test.yml`."""

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
    """Every family and sample name (a family without workers to report has no samples)."""
    text = client.get("/metrics").content.decode()
    names = set()
    for family in text_string_to_metric_families(text):
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


def test_the_dashboard_uses_an_importable_datasource_and_unique_panel_ids():
    dashboard = json.loads((DEPLOY / "grafana" / "mailhub-dashboard.json").read_text())

    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(panel["datasource"]["uid"] == "${DS_PROMETHEUS}" for panel in dashboard["panels"])
