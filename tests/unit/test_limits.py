import pytest
from django.core.exceptions import ImproperlyConfigured

from deliveries.limits import DomainLimit, admissible, limit_for
from mailhub.env import parse_domain_limits


def test_no_limit_admits_everything():
    unlimited = DomainLimit()
    assert admissible(wanted=50, limit=unlimited, connections=1000, started_this_minute=10**6) == 50


def test_a_free_connection_takes_all_the_tasks_deliveries():
    limit = DomainLimit(concurrency=5)
    assert admissible(wanted=10, limit=limit, connections=4, started_this_minute=0) == 10


def test_with_every_connection_taken_nothing_is_admitted():
    limit = DomainLimit(concurrency=5)
    assert admissible(wanted=10, limit=limit, connections=5, started_this_minute=0) == 0
    assert admissible(wanted=10, limit=limit, connections=7, started_this_minute=0) == 0


def test_the_rate_admits_only_what_is_left_of_this_minute():
    limit = DomainLimit(per_minute=100)
    assert admissible(wanted=10, limit=limit, connections=0, started_this_minute=95) == 5
    assert admissible(wanted=10, limit=limit, connections=0, started_this_minute=100) == 0
    assert admissible(wanted=10, limit=limit, connections=0, started_this_minute=130) == 0


def test_both_limits_apply_together():
    limit = DomainLimit(concurrency=3, per_minute=100)
    assert admissible(wanted=10, limit=limit, connections=2, started_this_minute=98) == 2
    assert admissible(wanted=10, limit=limit, connections=3, started_this_minute=0) == 0


def test_a_domain_without_its_own_limit_gets_the_default():
    limits = {"gmail.com": DomainLimit(concurrency=10, per_minute=600)}
    default = DomainLimit(concurrency=20)
    assert limit_for("gmail.com", limits=limits, default=default).per_minute == 600
    assert limit_for("example.org", limits=limits, default=default) == default


def test_domain_limits_parse_from_their_setting():
    parsed = parse_domain_limits("MAILHUB_DOMAIN_LIMITS", " Gmail.com=10/600, example.org=2/0 ,")
    assert parsed == {"gmail.com": (10, 600), "example.org": (2, 0)}


@pytest.mark.parametrize("value", ["gmail.com", "gmail.com=10", "=1/2", "a.com=x/1", "a.com=1/-2"])
def test_a_malformed_domain_limit_names_the_variable(value):
    with pytest.raises(ImproperlyConfigured, match="MAILHUB_DOMAIN_LIMITS"):
        parse_domain_limits("MAILHUB_DOMAIN_LIMITS", value)
