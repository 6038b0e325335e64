"""What webhooks does when the engine says something happened (signals, connected in ``apps``)."""

from __future__ import annotations

from datetime import datetime

from webhooks.services import webhook_attempts_purge


def on_history_purged(sender: object, *, before: datetime, **_: object) -> tuple[str, int]:
    """Retention removed mail's history before ``before``: the log of requests goes too (the
    notifications went with their events)."""
    return "webhook requests logged", webhook_attempts_purge(before=before)
