"""What the API hangs on a Django request, named for the type checker."""

from __future__ import annotations

from django.http import HttpRequest

from accounts.models import Client


class ApiRequest(HttpRequest):
    """A request as the API's middleware and authentication leave it.

    Never instantiated: Django builds a plain request, and the code that hangs one of these on
    it casts it to this type first (``cast(ApiRequest, request).request_id = ...``), so that the
    attribute's name and type are checked where it is set and where it is read.
    """

    #: Set by ``api.middleware.RequestIdMiddleware`` on every request.
    request_id: str
    #: Set by ``api.authentication.ApiKeyAuthentication`` once the key is known.
    client: Client
    #: The key's mode, set with ``client``: mail accepted now is test mail, and lists show the
    #: mode's data unless the request asks for another (``?mode=``).
    test_mode: bool
