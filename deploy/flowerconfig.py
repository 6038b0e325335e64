"""Flower's configuration file: ``celery -A mailhub flower --conf=deploy/flowerconfig.py``.

Flower serves ``/metrics`` to anyone, whatever its ``--basic_auth`` (its documentation lists
``/metrics`` and ``/healthcheck`` as exempt from authentication; flower 2.x). This file puts
Flower's ``/metrics`` behind the same bearer token as Mailhub's own (``MAILHUB_METRICS_TOKEN``),
or Flower's own login, before Flower builds its application from its list of handlers.
``/healthcheck`` stays open: it answers "OK" and nothing else.

Flower runs this file as Python (tornado's ``parse_config_file``) and then reads any of its
option names defined here; none is.
"""

import tornado.web
from django.conf import settings
from flower import urls
from flower.views.monitor import Metrics

from mailhub.metrics_token import bearer_token_matches


class TokenMetrics(Metrics):
    """Flower's ``/metrics``, for ``Authorization: Bearer <MAILHUB_METRICS_TOKEN>`` or Flower's
    own login (the token opens nothing else of Flower's)."""

    async def get(self) -> None:
        token = settings.MAILHUB_METRICS_TOKEN
        options = self.application.options
        guarded = bool(token or options.basic_auth or options.auth)
        bearer = bearer_token_matches(self.request.headers.get("Authorization", ""), token)
        # Else Flower's own check: `current_user` raises 401 without its basic-auth login.
        if guarded and not bearer and not self.current_user:
            raise tornado.web.HTTPError(401)
        await super().get()


_found = [
    i
    for i, handler in enumerate(urls.handlers)
    if isinstance(handler, tuple) and handler[1:2] == (Metrics,)
]
if len(_found) != 1:
    # Fail closed: a Flower whose handlers changed must not start with its metrics open.
    raise RuntimeError("deploy/flowerconfig.py: Flower's /metrics handler was not found")
urls.handlers[_found[0]] = (urls.handlers[_found[0]][0], TokenMetrics)
