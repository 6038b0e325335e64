"""Named actors: "acme" sends mail; "globex" is another client that must never see acme's."""

import pytest

from tests.builders import Actor, make_actor


@pytest.fixture
def acme(db) -> Actor:
    return make_actor("acme")


@pytest.fixture
def globex(db) -> Actor:
    return make_actor("globex")
