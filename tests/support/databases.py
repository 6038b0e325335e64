"""Databases of their own beside the test database, for tests that migrate one from an older
layout (the previous release's) and look at what the migrations made of its rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection, connections


@contextmanager
def scratch_database(suffix: str) -> Iterator[str]:
    """An empty database named after the test database and ``suffix``, as a connection alias
    (``suffix`` too); dropped afterwards. Database access must be unblocked around it."""
    name = f"{settings.DATABASES['default']['NAME']}_{suffix}"
    with connection._nodb_cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    connections.settings[suffix] = {**connections.settings["default"], "NAME": name}
    try:
        yield suffix
    finally:
        connections[suffix].close()
        del connections[suffix]
        del connections.settings[suffix]
        with connection._nodb_cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
