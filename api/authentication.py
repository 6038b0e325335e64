"""API-key authentication: resolves the key to its client once and hangs it on the request."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from api.models import ApiKey
from api.services import api_key_hash

# Writing last_used_at on every request would turn every send into two writes; once a minute
# is enough to tell a key in use from a forgotten one.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


class InvalidApiKey(exceptions.AuthenticationFailed):
    default_detail = "The API key is not valid (unknown or revoked)."
    default_code = "invalid_api_key"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer mh_...`` (or ``X-Api-Key: mh_...``)."""

    def authenticate(self, request):
        secret = self._secret_from(request)
        if secret is None:
            return None
        key = (
            ApiKey.objects.select_related("client")
            .filter(key_hash=api_key_hash(secret), revoked_at__isnull=True)
            .first()
        )
        if key is None:
            raise InvalidApiKey()
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > _LAST_USED_RESOLUTION:
            ApiKey.objects.filter(id=key.id).update(last_used_at=now)
        request._request.client = key.client
        return (key.client, key)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="mailhub"'

    @staticmethod
    def _secret_from(request) -> str | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header:
            scheme, _, secret = header.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise InvalidApiKey("Use 'Authorization: Bearer <api key>'.")
            return secret.strip()
        secret = request.META.get("HTTP_X_API_KEY", "").strip()
        return secret or None


class HasClient(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return getattr(request._request, "client", None) is not None
