"""Reading settings from the environment: good values parse, bad ones stop the process clearly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from mailhub.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    parse_broker_url,
    parse_database_url,
    parse_smtp_url,
)

REPO_ROOT = Path(__file__).parents[2]
VAR = "MAILHUB_SMTP_URL"


# -- parse_smtp_url ----------------------------------------------------------------------------


def test_a_plain_smtp_url_uses_port_25_without_tls():
    relay = parse_smtp_url(VAR, "smtp://relay.example.com")
    assert (relay.host, relay.port, relay.use_ssl, relay.starttls) == (
        "relay.example.com",
        25,
        False,
        False,
    )
    assert (relay.username, relay.password) == ("", "")


def test_asking_for_starttls_switches_to_the_submission_port():
    relay = parse_smtp_url(VAR, "smtp://relay.example.com?starttls=1")
    assert (relay.port, relay.starttls, relay.use_ssl) == (587, True, False)


def test_an_smtps_url_uses_implicit_tls_on_465_and_decodes_the_credentials():
    relay = parse_smtp_url(VAR, "smtps://u:p%40ss@relay.example.com")
    assert (relay.port, relay.use_ssl, relay.starttls) == (465, True, False)
    assert relay.username == "u"
    assert relay.password == "p@ss"


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("smtp://relay.example.com:2525", 2525),
        ("smtp://relay.example.com:2587?starttls=1", 2587),
        ("smtps://relay.example.com:4650", 4650),
    ],
)
def test_an_explicit_port_is_kept(url, port):
    assert parse_smtp_url(VAR, url).port == port


@pytest.mark.parametrize("value", ["0", "false", "no", "off"])
def test_starttls_can_be_turned_off_explicitly(value):
    relay = parse_smtp_url(VAR, f"smtp://relay.example.com?starttls={value}")
    assert (relay.starttls, relay.port) == (False, 25)


@pytest.mark.parametrize(
    "url",
    [
        "smtps://user:s3cr%40t@relay.example.com",
        "smtp://user:s3cr%40t@relay.example.com:2525?starttls=1",
    ],
)
def test_the_relay_is_printed_without_its_password(url):
    relay = parse_smtp_url(VAR, url)
    printed = str(relay)
    assert "s3cr" not in printed
    assert "user@relay.example.com" in printed
    assert str(relay.port) in printed


@pytest.mark.parametrize(
    "url",
    [
        "http://relay.example.com",
        "relay.example.com:25",
        "smtp://",
        "smtp://:25",
        "smtp://relay.example.com?tls=1",
        "smtp://relay.example.com?starttls=maybe",
        "smtps://relay.example.com?starttls=1",
        "smtp://relay.example.com:abc",
        "smtp://relay.example.com:99999",
        "smtp://[::1",
    ],
)
def test_a_malformed_smtp_url_is_refused_naming_the_variable(url):
    with pytest.raises(ImproperlyConfigured, match=VAR):
        parse_smtp_url(VAR, url)


@pytest.mark.parametrize(
    "url",
    [
        # Without a value parse_qs drops the option, so it is neither rejected nor honoured:
        # "?starttls" gives a plain-text connection on port 25 (and sends AUTH in clear).
        "smtp://user:pass@relay.example.com?starttls",
        "smtp://relay.example.com?tls",
    ],
)
def test_an_smtp_option_without_a_value_is_refused_naming_the_variable(url):
    with pytest.raises(ImproperlyConfigured, match=VAR):
        parse_smtp_url(VAR, url)


def test_a_refused_smtp_url_does_not_leak_its_password_into_the_error():
    with pytest.raises(ImproperlyConfigured) as error:
        parse_smtp_url(VAR, "http://user:hunter2@relay.example.com")
    assert "hunter2" not in str(error.value)


# -- env_bool / env_int / env_float ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[("1", True), ("true", True), (" Yes ", True), ("ON", True)],
        *[("0", False), ("false", False), ("No", False), ("off", False), ("", False)],
    ],
)
def test_a_boolean_is_read_from_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("MAILHUB_TEST_FLAG", raw)
    assert env_bool("MAILHUB_TEST_FLAG", not expected) is expected


@pytest.mark.parametrize("default", [True, False])
def test_an_unset_boolean_takes_its_default(monkeypatch, default):
    monkeypatch.delenv("MAILHUB_TEST_FLAG", raising=False)
    assert env_bool("MAILHUB_TEST_FLAG", default) is default


@pytest.mark.parametrize("raw", ["2", "yep", "enabled", "tru"])
def test_a_boolean_that_is_neither_is_refused_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("MAILHUB_TEST_FLAG", raw)
    with pytest.raises(ImproperlyConfigured, match="MAILHUB_TEST_FLAG"):
        env_bool("MAILHUB_TEST_FLAG", False)


@pytest.mark.parametrize(("raw", "expected"), [("8", 8), ("-3", -3), (" 12 ", 12), ("0", 0)])
def test_an_integer_is_read(monkeypatch, raw, expected):
    monkeypatch.setenv("MAILHUB_TEST_INT", raw)
    assert env_int("MAILHUB_TEST_INT", 99) == expected


def test_an_unset_integer_takes_its_default(monkeypatch):
    monkeypatch.delenv("MAILHUB_TEST_INT", raising=False)
    assert env_int("MAILHUB_TEST_INT", 99, minimum=1) == 99


@pytest.mark.parametrize("raw", ["", "eight", "8.5", "1e3", "0x10"])
def test_a_malformed_integer_is_refused_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("MAILHUB_TEST_INT", raw)
    with pytest.raises(ImproperlyConfigured, match="MAILHUB_TEST_INT"):
        env_int("MAILHUB_TEST_INT", 1)


def test_an_integer_below_its_minimum_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("MAILHUB_TEST_INT", "0")
    with pytest.raises(ImproperlyConfigured, match=r"MAILHUB_TEST_INT.*at least 1"):
        env_int("MAILHUB_TEST_INT", 8, minimum=1)


def test_an_integer_at_its_minimum_is_accepted(monkeypatch):
    monkeypatch.setenv("MAILHUB_TEST_INT", "1")
    assert env_int("MAILHUB_TEST_INT", 8, minimum=1) == 1


@pytest.mark.parametrize(("raw", "expected"), [("2.5", 2.5), ("30", 30.0), ("1e2", 100.0)])
def test_a_number_is_read(monkeypatch, raw, expected):
    monkeypatch.setenv("MAILHUB_TEST_FLOAT", raw)
    assert env_float("MAILHUB_TEST_FLOAT", 1.0) == expected


@pytest.mark.parametrize("raw", ["", "fast", "1,5", "30s"])
def test_a_malformed_number_is_refused_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("MAILHUB_TEST_FLOAT", raw)
    with pytest.raises(ImproperlyConfigured, match="MAILHUB_TEST_FLOAT"):
        env_float("MAILHUB_TEST_FLOAT", 1.0)


def test_a_number_below_its_minimum_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("MAILHUB_TEST_FLOAT", "0.05")
    with pytest.raises(ImproperlyConfigured, match=r"MAILHUB_TEST_FLOAT.*at least 0\.1"):
        env_float("MAILHUB_TEST_FLOAT", 30.0, minimum=0.1)


def test_not_a_number_is_refused_naming_the_variable(monkeypatch):
    # float("nan") parses, and `nan < minimum` is False, so the minimum does not catch it; a
    # MAILHUB_LEASE_SECONDS=nan would only blow up later, in timedelta(seconds=nan).
    monkeypatch.setenv("MAILHUB_TEST_FLOAT", "nan")
    with pytest.raises(ImproperlyConfigured, match="MAILHUB_TEST_FLOAT"):
        env_float("MAILHUB_TEST_FLOAT", 30.0, minimum=0.1)


@pytest.mark.parametrize(("raw", "expected"), [("json", "json"), (" JSON ", "json"), ("", "text")])
def test_a_choice_is_read_without_case_or_blanks_and_empty_takes_the_default(
    monkeypatch, raw, expected
):
    monkeypatch.setenv("MAILHUB_TEST_CHOICE", raw)
    assert env_choice("MAILHUB_TEST_CHOICE", "text", choices=("text", "json")) == expected


def test_an_unset_choice_takes_its_default(monkeypatch):
    monkeypatch.delenv("MAILHUB_TEST_CHOICE", raising=False)
    assert env_choice("MAILHUB_TEST_CHOICE", "text", choices=("text", "json")) == "text"


def test_a_choice_not_offered_is_refused_naming_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv("MAILHUB_TEST_CHOICE", "xml")
    with pytest.raises(
        ImproperlyConfigured, match=r"MAILHUB_TEST_CHOICE must be one of text, json"
    ):
        env_choice("MAILHUB_TEST_CHOICE", "text", choices=("text", "json"))


# -- database and broker URLs ------------------------------------------------------------------


def test_a_postgres_url_becomes_a_database_setting():
    config = parse_database_url("DATABASE_URL", "postgres://mh:pw@db.example.com:5433/mailhub")
    assert config["NAME"] == "mailhub"
    assert config["HOST"] == "db.example.com"
    assert config["PORT"] == 5433
    assert config["USER"] == "mh"
    assert "postgresql" in config["ENGINE"]


@pytest.mark.parametrize(
    "url",
    [
        "mysql://mh:pw@db.example.com/mailhub",
        "sqlite:///var/mailhub.db",
        "postgres://mh:pw@db.example.com:5432",
        "postgres://mh:pw@db.example.com:5432/",
    ],
)
def test_a_database_url_that_is_not_a_named_postgres_database_is_refused(url):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        parse_database_url("DATABASE_URL", url)


def test_a_database_url_may_name_several_hosts_and_ask_libpq_for_the_primary():
    """With a streaming replica, libpq tries the hosts in turn and keeps the first that accepts
    writes: after a failover, reconnecting finds the new primary (deploy/README.md)."""
    config = parse_database_url(
        "DATABASE_URL",
        "postgres://mh:pw@db-a.example.com,db-b.example.com:5432/mailhub"
        "?target_session_attrs=read-write&connect_timeout=3",
    )
    assert (config["HOST"], config["PORT"]) == ("db-a.example.com,db-b.example.com", 5432)
    assert config["OPTIONS"] == {"target_session_attrs": "read-write", "connect_timeout": 3}
    # A dead connection is noticed before a request or a task uses it, and replaced.
    assert config["CONN_HEALTH_CHECKS"] is True
    assert config["CONN_MAX_AGE"] == 60


def test_a_database_url_with_a_port_per_host_is_refused_with_the_form_that_works():
    # dj-database-url cannot parse `h1:5432,h2:5432`; libpq takes one port for every host.
    with pytest.raises(ImproperlyConfigured, match=r"DATABASE_URL.*host1,host2:5432/db"):
        parse_database_url("DATABASE_URL", "postgres://mh:pw@db-a:5432,db-b:5432/mailhub")


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:guest@127.0.0.1:5672//",
        "amqps://mq.example.com",
        "pyamqp://mq",
        "amqp://u:p@mq-1:5672/mailhub;amqp://u:p@mq-2:5672/mailhub;amqp://u:p@mq-3:5672/mailhub",
    ],
)
def test_a_rabbitmq_broker_url_is_accepted(url):
    assert parse_broker_url("CELERY_BROKER_URL", url) == url


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "127.0.0.1:5672",
        "",
        "amqp://mq-1:5672//;redis://mq-2:6379/0",
        "amqp://mq-1:5672//;",
    ],
)
def test_a_broker_that_is_not_rabbitmq_is_refused(url):
    with pytest.raises(ImproperlyConfigured, match="CELERY_BROKER_URL"):
        parse_broker_url("CELERY_BROKER_URL", url)


# -- the whole process, as an operator sees it -------------------------------------------------


def run_manage_check(**overrides: str | None) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG"}
    }
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAILHUB_SMTP_URL", "http://x"),
        ("MAILHUB_LOG_FORMAT", "xml"),
        ("MAILHUB_QUEUE_TYPE", "mirrored"),
    ],
)
def test_a_bad_value_stops_the_process_with_one_line_naming_it(variable, value):
    result = run_manage_check(DJANGO_SECRET_KEY="a-real-secret", **{variable: value})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_a_missing_secret_key_stops_the_process_with_one_line_naming_it():
    result = run_manage_check(DJANGO_SECRET_KEY=None)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "DJANGO_SECRET_KEY" in lines[0]
    assert "Traceback" not in result.stderr
