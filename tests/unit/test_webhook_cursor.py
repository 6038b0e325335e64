"""Event-log cursors: opaque to clients, exact positions for the server, garbage refused."""

import uuid
from datetime import UTC, datetime

import pytest

from webhooks.selectors import Position


def test_a_cursor_decodes_to_the_position_it_was_made_from():
    position = Position(
        created_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), id=uuid.uuid4()
    )
    assert Position.decode(position.encode()) == position


def test_a_cursor_is_url_safe():
    cursor = Position(created_at=datetime.now(UTC), id=uuid.uuid4()).encode()
    assert all(c.isalnum() or c in "-_" for c in cursor)


@pytest.mark.parametrize(
    "cursor",
    ["", "!!!", "bm90IGpzb24", "WyJ4IiwgInkiXQ", "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwgIngiXQ"],
)
def test_anything_else_is_refused(cursor):
    with pytest.raises(ValueError):
        Position.decode(cursor)
