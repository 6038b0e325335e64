"""A DATABASE_URL for a primary with a streaming replica (deploy/README.md, "PostgreSQL failover"):
several hosts and `target_session_attrs`, through Mailhub's parsing, Django and psycopg2, reach
libpq, which connects to the first host that answers as asked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import pytest
from django.db import connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper

from mailhub.env import parse_database_url

pytestmark = pytest.mark.integration

# A host name that can never resolve (RFC 2606): a primary that is gone.
GONE = "primary.invalid"


def url(hosts: str, **options: str) -> str:
    db = connection.settings_dict
    query = "&".join(f"{name}={value}" for name, value in options.items())
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{hosts}:{db['PORT']}/{db['NAME']}?{query}"


@contextmanager
def connected(database_url: str) -> Iterator[Any]:
    """A psycopg2 connection opened by Django's Postgres backend from ``database_url``, parsed
    as mailhub/settings.py parses it."""
    # Django's defaults for the keys a URL does not set (TIME_ZONE, AUTOCOMMIT, ...).
    config = connections.configure_settings(
        {"default": parse_database_url("DATABASE_URL", database_url)}
    )["default"]
    backend = DatabaseWrapper(config, alias="probe")
    raw = backend.get_new_connection(backend.get_connection_params())
    try:
        yield raw
    finally:
        raw.close()


def test_a_url_naming_a_gone_primary_first_connects_to_the_host_that_accepts_writes(db):
    host = connection.settings_dict["HOST"]

    with connected(url(f"{GONE},{host}", target_session_attrs="read-write")) as probe:
        assert probe.info.host == host
        with probe.cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            assert cursor.fetchone() == (False,)


def test_target_session_attrs_reaches_libpq_which_refuses_a_primary_asked_for_a_standby(db):
    host = connection.settings_dict["HOST"]

    with (
        pytest.raises(psycopg2.OperationalError, match="not in hot standby mode"),
        connected(url(host, target_session_attrs="standby")),
    ):
        pass
