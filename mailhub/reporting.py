"""What Django's error reports (the DEBUG page, mail to ADMINS) show of the settings."""

from __future__ import annotations

from typing import Any

from django.views.debug import SafeExceptionReporterFilter

from mailhub.env import redact_url


class SafeSettingsFilter(SafeExceptionReporterFilter):
    """Django's own filter (it hides settings named like API, AUTH, TOKEN, KEY, SECRET, PASS...),
    and the password of any URL in the others: CELERY_BROKER_URL is named like none of them."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        value = super().cleanse_setting(key, value)
        if isinstance(value, str) and "@" in value:
            return redact_url(value)
        return value
