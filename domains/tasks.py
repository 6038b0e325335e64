"""Celery entry point of the periodic DNS checks of sending domains (beat, dispatch queue)."""

from __future__ import annotations

import logging

from celery import shared_task

from domains.services import domains_reverify_due
from mailhub.logs import tick_level

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def reverify_due() -> None:
    checked = domains_reverify_due()
    logger.log(tick_level(checked), "sending domains: %d checked again", checked)
