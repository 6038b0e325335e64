"""No secret in any repr, str or error line: whatever holds a password, a signing secret, an API
key or a token prints without it, and a bad setting is named without the password it carries."""

import sys
from datetime import UTC, datetime

import pytest
from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.views.debug import (
    ExceptionReporter,
    SafeExceptionReporterFilter,
    get_default_exception_reporter_filter,
)

from accounts.admin import ApiKeyAdmin
from accounts.models import ApiKey, Client
from accounts.services import KEY_PREFIX, api_key_hash
from deliveries.smtp import RelayPool, SmtpTransport
from mailhub.env import (
    SmtpRelay,
    parse_broker_url,
    parse_database_url,
    parse_smtp_url,
    parse_smtp_urls,
)
from webhooks.models import Endpoint
from webhooks.services import _Batch

SECRET = "S3cr3t-pw_n0t-in-any-log"


def shown(obj) -> str:
    return f"{obj!r} {obj!s}"


def test_an_smtp_relay_prints_its_user_but_never_its_password():
    relay = parse_smtp_url("MAILHUB_SMTP_URL", f"smtp://mailer:{SECRET}@relay.example.com:587")

    assert relay.password == SECRET
    assert SECRET not in shown(relay) and SECRET not in shown([relay])
    assert "mailer" in repr(relay) and "relay.example.com" in repr(relay)


def test_the_smtp_transport_and_the_relay_pool_print_no_password():
    relay = SmtpRelay(host="relay.example.com", port=587, username="mailer", password=SECRET)
    transport = SmtpTransport(relay, timeout=1, data_timeout=1)
    pool = RelayPool([transport], cooldown=1)

    assert SECRET not in shown(transport) and SECRET not in shown(pool)
    assert "relay.example.com" in repr(transport)


@pytest.mark.parametrize(
    ("parse", "name", "url"),
    [
        (parse_smtp_url, "MAILHUB_SMTP_URL", f"smtp://u:{SECRET}@relay.example.com:99999"),
        (parse_smtp_url, "MAILHUB_SMTP_URL", f"smtp://u:{SECRET}@relay.example.com?x=1"),
        (parse_smtp_url, "MAILHUB_SMTP_URL", f"smtp://u:{SECRET}@"),
        (parse_smtp_url, "MAILHUB_SMTP_URL", f"http://u:{SECRET}@relay.example.com"),
        (parse_smtp_urls, "MAILHUB_SMTP_URLS", f"smtp://h,smtp://u:{SECRET}@"),
        (parse_broker_url, "CELERY_BROKER_URL", f"redis://u:{SECRET}@broker.example.com:6379/0"),
        (parse_broker_url, "CELERY_BROKER_URL", f"u:{SECRET}@broker.example.com"),
        (parse_database_url, "DATABASE_URL", f"mysql://u:{SECRET}@db.example.com/mailhub"),
        (parse_database_url, "DATABASE_URL", f"postgres://u:{SECRET}@db.example.com"),
        (parse_database_url, "DATABASE_URL", f"postgres://u:{SECRET}@db.example.com:x/mailhub"),
    ],
)
def test_a_bad_url_setting_is_named_without_its_password(parse, name, url):
    with pytest.raises(ImproperlyConfigured) as refused:
        parse(name, url)

    assert name in str(refused.value)
    assert SECRET not in str(refused.value)


def test_a_webhook_endpoint_prints_its_url_but_never_its_signing_secret():
    endpoint = Endpoint(url="https://hooks.example.com/in", secret=f"whsec_{SECRET}")
    assert "hooks.example.com" in shown(endpoint) and SECRET not in shown(endpoint)


def test_a_webhook_batch_on_its_way_prints_no_signing_secret():
    batch = _Batch(
        notification_ids=[1], event_ids=[], url="https://h.example/", secret=SECRET, body=b"{}"
    )
    assert SECRET not in shown(batch)


def test_an_api_key_prints_its_prefix_only():
    secret = f"{KEY_PREFIX}{SECRET}"
    key = ApiKey(
        client=Client(name="acme"),
        prefix=secret[:11],
        key_hash=api_key_hash(secret),
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
    )
    assert SECRET not in shown(key) and key.key_hash not in shown(key)
    assert key.prefix in str(key)


def test_error_reports_show_no_broker_smtp_or_metrics_secret():
    relay = SmtpRelay(host="relay.example.com", port=587, username="mailer", password=SECRET)
    with override_settings(
        CELERY_BROKER_URL=f"amqp://mailhub:{SECRET}@rabbit.example.com:5672/mailhub",
        MAILHUB_SMTP=relay,
        MAILHUB_SMTP_RELAYS=[relay],
        MAILHUB_METRICS_TOKEN=SECRET,
    ):
        reporter_filter = get_default_exception_reporter_filter()
        safe = str(reporter_filter.get_safe_settings())

    assert isinstance(reporter_filter, SafeExceptionReporterFilter)
    assert SECRET not in safe
    assert "rabbit.example.com" in safe  # the rest of the URL stays readable


def test_an_error_report_from_the_page_showing_a_new_api_key_hides_the_key(monkeypatch, rf):
    model_admin = ApiKeyAdmin(ApiKey, admin.site)
    request = rf.post("/admin/api/apikey/add/")
    request._mailhub_new_secret = f"{KEY_PREFIX}{SECRET}"

    def fail(*args, **kwargs):
        raise RuntimeError("the page could not be built")

    monkeypatch.setattr(admin.site, "each_context", fail)
    try:
        model_admin.response_add(request, ApiKey(prefix="mh_x", client=Client(name="acme")))
    except RuntimeError:
        frames = ExceptionReporter(request, *sys.exc_info()).get_traceback_frames()

    shown_vars = repr([frame["vars"] for frame in frames])
    assert "response_add" in repr([frame["function"] for frame in frames])
    assert SECRET not in shown_vars
