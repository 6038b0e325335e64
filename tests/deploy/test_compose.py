"""The compose file: valid against the Compose specification (and `docker compose config` where a
Compose CLI is installed), the example environment complete and consistent, and the stack shaped
as deploy/README.md says (health checks, scalable workers, one beat, every queue consumed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from importlib import resources
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from tests.deploy.conftest import DEPLOY, ENV_EXAMPLE, consumed_queues, read_env_file

COMPOSE = DEPLOY / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def compose_cli() -> list[str] | None:
    """The Compose CLI of this machine: the docker plugin (v2), else docker-compose (v1)."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_the_compose_file_matches_the_compose_specification(compose):
    # The Compose specification's JSON schema, as vendored by the check-jsonschema package.
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(compose, schema, cls=jsonschema.Draft202012Validator)
    misspelt = {**compose["services"]["beat"], "restat": "always"}
    broken = {**compose, "services": {**compose["services"], "beat": misspelt}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)


def test_compose_config_accepts_the_file_with_the_example_environment(tmp_path):
    cli = compose_cli()
    if cli is None:
        pytest.skip(
            "no Compose CLI on this machine (neither the docker compose plugin nor "
            "docker-compose): the file was checked against the Compose schema only"
        )
    command = [*cli, "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), "config", "-q"]
    env = {**os.environ, "MAILHUB_ENV_FILE": ENV_EXAMPLE.name}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    # Without FLOWER_BASIC_AUTH, Compose refuses the stack rather than start an open Flower.
    without_flower = tmp_path / "without-flower.env"
    without_flower.write_text(
        "\n".join(
            f"{name}={value}"
            for name, value in read_env_file(ENV_EXAMPLE).items()
            if name != "FLOWER_BASIC_AUTH"
        )
    )
    env = {name: value for name, value in env.items() if name != "FLOWER_BASIC_AUTH"}
    env["MAILHUB_ENV_FILE"] = str(without_flower)
    command = [*cli, "-f", str(COMPOSE), "--env-file", str(without_flower), "config", "-q"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH" in result.stdout + result.stderr


def test_every_long_running_service_has_a_health_check_and_a_restart_policy(compose):
    services = compose["services"]
    assert {"postgres", "rabbitmq", "web", "worker-high", "worker", "beat", "flower"} <= set(
        services
    )
    for name, service in services.items():
        if name == "migrate":
            assert service["restart"] == "no"
            continue
        assert service["restart"] == "unless-stopped", name
        # Beat answers to no one: its health is that it runs, which `restart` takes care of.
        if name != "beat":
            assert service["healthcheck"]["test"], name
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["rabbitmq"]["image"].endswith("-management")
    assert {"postgres-data", "rabbitmq-data"} <= set(compose["volumes"])


def test_the_general_worker_scales_because_nothing_pins_one_instance(compose):
    worker = compose["services"]["worker"]
    # --scale worker=N fails on a fixed container name or a published host port.
    assert "container_name" not in worker and "ports" not in worker
    command = worker["command"]
    assert command[command.index("-n") + 1] == "general@%h"


def test_workers_stop_warm_and_every_queue_has_a_pool(compose, queues):
    services = compose["services"]
    workers = {name: s for name, s in services.items() if s.get("command", [])[3:4] == ["worker"]}
    consumed = {name: consumed_queues(service["command"]) for name, service in workers.items()}
    assert set().union(*consumed.values()) == set(queues)
    assert consumed["worker-high"] == {"mail.high", "mailhub.dispatch"}
    # Beat's webhook ticks: on both, so that one runs even while every webhook process waits.
    assert consumed["worker-webhooks"] == {"webhooks", "webhooks.tick"}
    assert "webhooks.tick" in consumed["worker"]
    for name, service in workers.items():
        assert service["stop_grace_period"] == "150s", name
        assert service["init"] is True, name
    beat = [name for name, s in services.items() if s.get("command", [])[3:4] == ["beat"]]
    assert beat == ["beat"]


def test_every_dependency_names_a_service_and_waits_for_its_health(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            expected = (
                "service_completed_successfully" if dependency == "migrate" else "service_healthy"
            )
            assert condition["condition"] == expected, (name, dependency)


def settings_variables() -> set[str]:
    """Every environment variable Mailhub's settings and its gunicorn configuration read."""
    sources = [DEPLOY.parent / "mailhub/settings.py", DEPLOY / "gunicorn.conf.py"]
    names = set()
    for source in sources:
        names |= set(re.findall(r"""env_\w+\(\s*["']([A-Z0-9_]+)["']""", source.read_text()))
        names |= set(re.findall(r"""environ\.get\(\s*["']([A-Z0-9_]+)["']""", source.read_text()))
        names |= set(re.findall(r"""_positive_int\(\s*["']([A-Z0-9_]+)["']""", source.read_text()))
    return names


def test_the_example_environment_sets_only_variables_something_reads():
    example = read_env_file(ENV_EXAMPLE)
    compose_variables = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    read_elsewhere = {
        "POSTGRES_USER",  # the postgres image
        "POSTGRES_PASSWORD",
        "POSTGRES_DB",
        "FLOWER_BASIC_AUTH",  # Flower itself
    }
    unknown = set(example) - settings_variables() - compose_variables - read_elsewhere
    assert not unknown, f"nothing reads {sorted(unknown)}"
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "MAILHUB_SMTP_URL"} <= set(
        example
    )
    # The commented-out compose knobs name variables the compose file uses.
    commented = re.findall(r"^# ([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert commented and set(commented) <= compose_variables


def test_the_example_urls_agree_with_the_database_and_broker_they_point_at():
    example = read_env_file(ENV_EXAMPLE)
    database = urlsplit(example["DATABASE_URL"])
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert database.username == example["POSTGRES_USER"]
    assert database.password == example["POSTGRES_PASSWORD"]
    assert database.path == f"/{example['POSTGRES_DB']}"
    broker = urlsplit(example["CELERY_BROKER_URL"])
    assert (broker.hostname, broker.port, broker.path) == ("rabbitmq", 5672, "/mailhub")
    assert example["MAILHUB_QUEUE_PREFIX"] == ""
    assert "127.0.0.1" in example["DJANGO_ALLOWED_HOSTS"].split(",")  # the health check's host


def test_smtp_submission_is_published_on_587_and_reads_its_certificate_from_the_mount(compose):
    submission = compose["services"]["submission"]
    assert submission["command"] == ["python", "manage.py", "submission_smtp"]
    assert submission["environment"]["MAILHUB_SUBMISSION_BIND"] == "0.0.0.0:2587"
    [published] = submission["ports"]
    assert published.endswith(":${MAILHUB_SUBMISSION_PORT:-587}:2587")
    [mount] = submission["volumes"]
    assert mount.endswith(":/certs:ro")
    example = read_env_file(ENV_EXAMPLE)
    for name in ("MAILHUB_SUBMISSION_TLS_CERT", "MAILHUB_SUBMISSION_TLS_KEY"):
        assert example[name].startswith("/certs/"), name
    assert "2587" in " ".join(submission["healthcheck"]["test"])
