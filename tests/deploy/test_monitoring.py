"""Monitoring as it is shipped: Compose's Prometheus runs deploy/prometheus/ (jobs that name
Compose's services, the token as a secret where the configuration reads it, the alert rules)
and Grafana is provisioned with it and the dashboard; promtool accepts the configuration, the
rules, their unit tests and every query of the dashboard; and the configuration `make
monitoring` generates is the same one pointed at 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from monitoring.dashboard import panels
from monitoring.prometheus import SHIPPED_CONFIG, Targets, local_config, write_local_config
from tests.deploy.conftest import DEPLOY
from tests.support.prometheus import prometheus_program

PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def shipped() -> dict:
    return yaml.safe_load(SHIPPED_CONFIG.read_text())


def mounts(service: dict) -> dict[str, str]:
    """Container path -> host path (relative to deploy/) of a service's bind mounts."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            found[target] = source.removeprefix("./")
    return found


def container_port(service: dict) -> int:
    [published] = service["ports"]
    return int(published.rsplit(":", 1)[1])


def test_compose_runs_prometheus_with_the_shipped_configuration_rules_and_token(compose, shipped):
    prometheus = compose["services"]["prometheus"]
    mounted = mounts(prometheus)
    config_path = next(a.split("=", 1)[1] for a in prometheus["command"] if "config.file" in a)

    assert mounted[config_path] == "prometheus/prometheus.yml"
    rules_dir = Path(config_path).parent
    for rules in shipped["rule_files"]:
        assert mounted[str(rules_dir / rules)] == f"prometheus/{rules}"
    [secret] = prometheus["secrets"]
    assert compose["secrets"][secret["source"]] == {"environment": "MAILHUB_METRICS_TOKEN"}
    files = {job["authorization"]["credentials_file"] for job in shipped["scrape_configs"]}
    assert files == {secret["target"]}
    assert {job["authorization"]["type"] for job in shipped["scrape_configs"]} == {"Bearer"}
    assert container_port(prometheus) == 9090
    assert prometheus["ports"][0].startswith("127.0.0.1:")


def test_every_scrape_job_names_a_compose_service_on_its_port(compose, shipped):
    services = compose["services"]
    ports = {"web": container_port(services["web"]), "flower": container_port(services["flower"])}
    jobs = {job["job_name"]: job for job in shipped["scrape_configs"]}

    assert set(jobs) == {"mailhub", "mailhub-http", "mailhub-flower"}
    assert jobs["mailhub"]["metrics_path"] == "/metrics"
    assert jobs["mailhub-http"]["metrics_path"] == "/metrics/http"
    # /metrics reads Postgres: one instance. /metrics/http counts in-process: all of them.
    assert jobs["mailhub"]["static_configs"] == [{"targets": [f"web:{ports['web']}"]}]
    [discovery] = jobs["mailhub-http"]["dns_sd_configs"]
    assert (discovery["names"], discovery["type"], discovery["port"]) == (["web"], "A", 8000)
    assert jobs["mailhub-flower"]["static_configs"] == [{"targets": [f"flower:{ports['flower']}"]}]


def test_grafana_is_provisioned_with_that_prometheus_and_the_dashboard(compose):
    grafana = compose["services"]["grafana"]
    mounted = mounts(grafana)
    assert mounted["/etc/grafana/provisioning"] == "grafana/provisioning"
    [source] = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    url = urlsplit(source["url"])
    assert (source["type"], source["isDefault"]) == ("prometheus", True)
    assert url.hostname in compose["services"]
    assert url.port == container_port(compose["services"][url.hostname])
    [provider] = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "mailhub.yml").read_text()
    )["providers"]
    dashboards = {
        target: host
        for target, host in mounted.items()
        if Path(target).parent == Path(provider["options"]["path"])
    }
    assert list(dashboards.values()) == ["grafana/mailhub-dashboard.json"]
    assert "GRAFANA_ADMIN_PASSWORD:?" in grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert "env_file" not in grafana  # Mailhub's secrets are not Grafana's business


def test_the_dashboard_asks_its_datasource_variable_which_picks_a_prometheus():
    dashboard = json.loads((GRAFANA / "mailhub-dashboard.json").read_text())
    [variable] = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    sources = [panel["datasource"] for panel in dashboard["panels"]]
    sources += [t["datasource"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert sources and all(s == {"type": "prometheus", "uid": "${datasource}"} for s in sources)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def promtool(*arguments: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    command = [prometheus_program("promtool"), *arguments]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_configuration_the_rules_and_their_tests(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("x")
    config = tmp_path / "prometheus.yml"
    text = SHIPPED_CONFIG.read_text().replace(
        "/etc/prometheus/mailhub-metrics-token", str(token_file)
    )
    config.write_text(text.replace("- alerts.yml", f"- {PROMETHEUS / 'alerts.yml'}"))

    for arguments in (
        ["check", "config", str(config)],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        result = promtool(*arguments)
        assert result.returncode == 0, (arguments, result.stdout + result.stderr)


def test_promtool_parses_every_query_of_the_dashboard(tmp_path):
    rules = [
        {"record": f"dashboard:panel_{panel.id}:{query.ref}", "expr": query.expr}
        for panel in panels()
        for query in panel.queries
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    result = promtool("check", "rules", str(path))

    assert result.returncode == 0, result.stdout + result.stderr
    # ...and a broken one would not pass.
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum(("}]}]})
    )
    assert promtool("check", "rules", str(path)).returncode != 0


def test_the_local_configuration_is_the_shipped_one_pointed_at_this_machine(tmp_path, shipped):
    targets = Targets(web="127.0.0.1:8123", flower="127.0.0.1:5123")
    path = write_local_config(tmp_path, targets=targets, token="s3cret", scrape_interval="1s")
    config = yaml.safe_load(path.read_text())

    token_file = tmp_path / "metrics-token"
    assert token_file.read_text() == "s3cret" and token_file.stat().st_mode & 0o777 == 0o600
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {job["job_name"] for job in shipped["scrape_configs"]}
    assert {name: job["static_configs"] for name, job in jobs.items()} == {
        "mailhub": [{"targets": ["127.0.0.1:8123"]}],
        "mailhub-http": [{"targets": ["127.0.0.1:8123"]}],
        "mailhub-flower": [{"targets": ["127.0.0.1:5123"]}],
    }
    assert not [key for job in jobs.values() for key in job if key.endswith("_sd_configs")]
    assert {job["authorization"]["credentials_file"] for job in jobs.values()} == {
        str(token_file.resolve())
    }
    assert config["rule_files"] == [str(PROMETHEUS / "alerts.yml")]
    assert jobs["mailhub"]["scrape_timeout"] == "1s"  # never longer than the interval
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_job_the_generator_does_not_know_stops_it(monkeypatch, tmp_path):
    extra = yaml.safe_load(SHIPPED_CONFIG.read_text())
    extra["scrape_configs"].append({"job_name": "somewhere", "authorization": {}})
    shipped_copy = tmp_path / "prometheus.yml"
    shipped_copy.write_text(yaml.safe_dump(extra))
    monkeypatch.setattr("monitoring.prometheus.SHIPPED_CONFIG", shipped_copy)

    with pytest.raises(KeyError, match="somewhere"):
        local_config(
            targets=Targets(web="127.0.0.1:1", flower="127.0.0.1:2"),
            token_file=tmp_path / "t",
            scrape_interval="10s",
        )
