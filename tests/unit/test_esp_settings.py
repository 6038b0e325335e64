"""The ESP webhook settings refuse, at start, any combination that would let an unsigned event
in, with one line naming the variable."""

import pytest

from tests.unit.test_env import run_manage_check

ESP_VARIABLES = {
    "MAILHUB_ESP_WEBHOOKS": None,
    "MAILHUB_ESP_WEBHOOK_SECRET": None,
    "MAILHUB_ESP_SENDGRID_VERIFICATION_KEY": None,
    "MAILHUB_ESP_MAILGUN_SIGNING_KEY": None,
}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"MAILHUB_ESP_WEBHOOKS": "sendgrid"}, "MAILHUB_ESP_WEBHOOK_SECRET"),
        (
            {"MAILHUB_ESP_WEBHOOKS": "amazon_ses", "MAILHUB_ESP_WEBHOOK_SECRET": "no-colon"},
            "MAILHUB_ESP_WEBHOOK_SECRET",
        ),
        ({"MAILHUB_ESP_WEBHOOKS": "sparkpost"}, "MAILHUB_ESP_WEBHOOKS"),
        (
            {"MAILHUB_ESP_WEBHOOKS": "mailgun", "MAILHUB_ESP_WEBHOOK_SECRET": "a:b"},
            "MAILHUB_ESP_MAILGUN_SIGNING_KEY",
        ),
        (
            {
                "MAILHUB_ESP_WEBHOOKS": "sendgrid",
                "MAILHUB_ESP_WEBHOOK_SECRET": "a:b",
                "MAILHUB_ESP_SENDGRID_VERIFICATION_KEY": "bm90IGEga2V5",
            },
            "MAILHUB_ESP_SENDGRID_VERIFICATION_KEY",
        ),
    ],
)
def test_settings_that_would_take_unsigned_events_stop_the_process(settings, named):
    result = run_manage_check(DJANGO_SECRET_KEY="a-real-secret", **{**ESP_VARIABLES, **settings})

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]


def test_every_esp_with_its_credentials_starts():
    result = run_manage_check(
        DJANGO_SECRET_KEY="a-real-secret",
        MAILHUB_ESP_WEBHOOKS="amazon_ses,sendgrid,mailgun,postmark",
        MAILHUB_ESP_WEBHOOK_SECRET="esp:secret",
        MAILHUB_ESP_MAILGUN_SIGNING_KEY="key",
        MAILHUB_ESP_SENDGRID_VERIFICATION_KEY=None,
    )

    assert result.returncode == 0, result.stderr
