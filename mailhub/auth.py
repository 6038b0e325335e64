"""The admin login's authentication backends."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class AdminLoginLockoutBackend(AxesStandaloneBackend):
    """django-axes' lockout check, for every login that comes with a request.

    Placed before ``ModelBackend``: a username locked out from the request's address is refused
    before its password is even checked. ``authenticate()`` called without a request (the test
    client's ``login()``, a shell) has no address to count by, and axes itself would raise; such
    calls come from code on the machine, not from the network, so they go on to ``ModelBackend``.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
