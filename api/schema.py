"""The OpenAPI 3 schema (drf-spectacular): authentication, the problem shape of every error, and
the error responses each operation can give, so that the schema states everything a client can
receive (schemathesis checks exactly that in tests/integration/test_api_schema.py); and the
examples, parameters and problems that the views declare on their operations."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.utils import OpenApiExample, OpenApiParameter
from rest_framework import serializers

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField(
        allow_null=True,
        help_text="Path of the offending field, e.g. `to[1]` or `attachments[0].content`; "
        "null for an error about the whole object.",
    )
    code = serializers.CharField(help_text="Machine-readable, e.g. `invalid_address`, `max_size`.")
    message = serializers.CharField(help_text="For people.")


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details; every 4xx answer has this shape."""

    type = serializers.CharField(help_text="`https://mailhub.dev/problems/<code>`")
    title = serializers.CharField()
    status = serializers.IntegerField()
    code = serializers.CharField(help_text="Machine-readable reason, e.g. `validation_error`.")
    detail = serializers.CharField(help_text="What went wrong, for people.")
    # A declared field: DRF's metaclass takes it out of the class, so it never hides the
    # serializer's `errors` (only read as a schema, it is never validated with anyway).
    errors = FieldErrorSerializer(  # type: ignore[assignment]
        many=True, required=False, help_text="Field errors (validation errors only)."
    )
    retry_after = serializers.FloatField(
        required=False, allow_null=True, help_text="Seconds to wait, fractional (429 only)."
    )
    request_id = serializers.CharField(
        required=False,
        help_text="The id the server's log has for this request (500 only, and the "
        "`X-Request-ID` header of every answer); quote it when asking about an error.",
    )


IDEMPOTENCY_KEY = OpenApiParameter(
    name="Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Makes a retry safe: the first successful (2xx) answer to a key is stored for at least "
        "24 h and returned again, with `Idempotent-Replayed: true`, for any later request with "
        "the same key and the same body, even one sent at the same moment; nothing is created "
        "twice. The same key with another method, path or body is a 422 "
        "`idempotency_key_reused`. Keys are per client: 1 to 255 printable ASCII characters. "
        "An answer that is not a 2xx is not stored, so a corrected request may reuse the key."
    ),
)

REPLAYED = OpenApiParameter(
    name="Idempotent-Replayed",
    location=OpenApiParameter.HEADER,
    response=[200, 201, 202, 207],
    type=str,
    enum=["true"],
    description="Present when this is the stored answer to an earlier request with the same "
    "Idempotency-Key.",
)

_DESCRIPTIONS = {
    400: "Invalid input: `validation_error` with a field error per problem, `parse_error`.",
    401: "No API key, or not a valid one (`not_authenticated`, `invalid_api_key`).",
    404: "Not found, or not this client's (the two are not told apart).",
    413: "The request body is larger than MAILHUB_MAX_REQUEST_BYTES (`request_too_large`).",
    415: "The body is not `application/json` (`unsupported_media_type`).",
    429: "The key's requests per minute are used up (`throttled`); see `Retry-After`.",
}


class MailhubAutoSchema(AutoSchema):
    """Adds the problem responses every API operation can give to what the view declares."""

    def _error_codes(self) -> list[int]:
        codes = [401, 429]
        has_body = self.method in ("POST", "PUT", "PATCH")
        if has_body or self._get_filter_parameters() or self._get_pagination_parameters():
            codes.append(400)
        if has_body:
            codes += [413, 415]
        if "{" in self.path:
            codes.append(404)
        return codes

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._error_codes():
            if str(code) in responses:
                continue
            response = self._get_response_for_code(
                ProblemSerializer, str(code), media_types=[PROBLEM_MEDIA_TYPE], direction=direction
            )
            response["description"] = _DESCRIPTIONS[code]
            if code == 429:
                response["headers"] = {
                    "Retry-After": {
                        "schema": {"type": "integer"},
                        "description": "Seconds until the key may send again.",
                    }
                }
            responses[str(code)] = response
        return responses


def problem_responses(*codes_and_descriptions: tuple[int, str]) -> dict:
    """``extend_schema(responses=...)`` entries for problems specific to one operation."""
    from drf_spectacular.utils import OpenApiResponse

    return {
        (code, PROBLEM_MEDIA_TYPE): OpenApiResponse(ProblemSerializer, description=description)
        for code, description in codes_and_descriptions
    }


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.ApiKeyAuthentication"
    name = ["bearerAuth", "apiKeyHeader"]

    def get_security_definition(self, auto_schema):
        bearer = build_bearer_security_scheme_object(
            header_name="Authorization",
            token_prefix="Bearer",  # noqa: S106 - the scheme's name, not a secret
        )
        bearer["description"] = (
            "`Authorization: Bearer mh_...` (create a key: `manage.py create_api_key`)."
        )
        return [
            bearer,
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-Api-Key",
                "description": "The same key in `X-Api-Key: mh_...`, for clients that cannot set "
                "Authorization.",
            },
        ]

    def get_security_requirement(self, auto_schema):
        return [{"bearerAuth": []}, {"apiKeyHeader": []}]


# -- what the API's operations declare (api.views) ----------------------------------------------

SEND_EXAMPLES = [
    OpenApiExample(
        "A verification code",
        request_only=True,
        value={
            "from": "Shop <no-reply@shop.test>",
            "to": ["Ann <ann@example.com>"],
            "subject": "Your code is 123456",
            "text": "Your verification code is 123456.",
            "priority": "high",
            "tags": ["verification"],
            "metadata": {"user_id": "42"},
        },
    ),
    OpenApiExample(
        "Scheduled, with an attachment",
        request_only=True,
        value={
            "from": "billing@shop.test",
            "to": ["ann@example.com"],
            "subject": "Your invoice",
            "html": '<p>Invoice attached. <img src="cid:logo@shop"></p>',
            "send_at": "2030-01-01T09:00:00Z",
            "attachments": [
                {
                    "filename": "invoice.pdf",
                    "content_type": "application/pdf",
                    "content": "JVBERi0xLjQK",
                },
                {
                    "filename": "logo.png",
                    "content_type": "image/png",
                    "content": "iVBORw0KGgo=",
                    "disposition": "inline",
                    "content_id": "logo@shop",
                },
            ],
        },
    ),
]
BATCH_EXAMPLES = [
    OpenApiExample(
        "Per-recipient variables",
        request_only=True,
        value={
            "defaults": {
                "from": "Shop <no-reply@shop.test>",
                "subject": "Your order",
                "text": "Thank you for your order.",
                "tags": ["orders"],
            },
            "messages": [
                {"to": ["ann@example.com"], "metadata": {"order": "A-1"}},
                {"to": ["bob@example.com"], "metadata": {"order": "A-2"}},
            ],
        },
    )
]
TEMPLATE_EXAMPLES = [
    OpenApiExample(
        "Welcome",
        request_only=True,
        value={
            "name": "welcome",
            "subject": "Welcome, {{ name }}",
            "text": 'Hello {{ name|default:"there" }}, your code is {{ code }}.',
            "html": "<p>Hello {{ name }}, your code is <b>{{ code }}</b>.</p>",
        },
    )
]
SUPPRESSION_EXAMPLES = [
    OpenApiExample(
        "Unsubscribed",
        request_only=True,
        value={"address": "ann@example.com", "reason": "unsubscribe", "detail": "footer link"},
    )
]

#: ``problem_responses`` arguments: (status, what the problem means).
IDEMPOTENCY_KEY_REUSED = (
    422,
    "`idempotency_key_reused`: the Idempotency-Key was used for another request.",
)
LOCATION = OpenApiParameter(
    "Location",
    location=OpenApiParameter.HEADER,
    response=[202],
    type=str,
    description="The message's URL.",
)
TEMPLATE_EXISTS = (409, "`template_exists`: you have a template with this name.")
SUPPRESSED_ADDRESS = OpenApiParameter(
    "address", location=OpenApiParameter.PATH, description="The address, any case.", type=str
)


def _description() -> str:
    limits = [
        ("Messages per batch", settings.MAILHUB_MAX_BATCH_MESSAGES, "MAILHUB_MAX_BATCH_MESSAGES"),
        (
            "Recipients per message (to, cc, bcc)",
            settings.MAILHUB_MAX_RECIPIENTS,
            "MAILHUB_MAX_RECIPIENTS",
        ),
        (
            "Bytes per body (text, html; UTF-8)",
            settings.MAILHUB_MAX_BODY_BYTES,
            "MAILHUB_MAX_BODY_BYTES",
        ),
        ("Custom headers", settings.MAILHUB_MAX_HEADERS, "MAILHUB_MAX_HEADERS"),
        ("Attachments per message", settings.MAILHUB_MAX_ATTACHMENTS, "MAILHUB_MAX_ATTACHMENTS"),
        (
            "Bytes per attachment (decoded)",
            settings.MAILHUB_MAX_ATTACHMENT_BYTES,
            "MAILHUB_MAX_ATTACHMENT_BYTES",
        ),
        (
            "Bytes of all attachments (decoded)",
            settings.MAILHUB_MAX_ATTACHMENTS_BYTES,
            "MAILHUB_MAX_ATTACHMENTS_BYTES",
        ),
        ("Bytes per request", settings.DATA_UPLOAD_MAX_MEMORY_SIZE, "MAILHUB_MAX_REQUEST_BYTES"),
        (
            "Days ahead for `send_at`",
            settings.MAILHUB_MAX_SCHEDULE_DAYS,
            "MAILHUB_MAX_SCHEDULE_DAYS",
        ),
        ("Tags per message", settings.MAILHUB_MAX_TAGS, "MAILHUB_MAX_TAGS"),
        ("Metadata keys", settings.MAILHUB_MAX_METADATA_KEYS, "MAILHUB_MAX_METADATA_KEYS"),
        (
            "Metadata bytes (compact JSON)",
            settings.MAILHUB_MAX_METADATA_BYTES,
            "MAILHUB_MAX_METADATA_BYTES",
        ),
        (
            "Requests per minute and key (default)",
            settings.MAILHUB_API_RATE_LIMIT_PER_MINUTE,
            "MAILHUB_API_RATE_LIMIT_PER_MINUTE",
        ),
        (
            "Hours an Idempotency-Key answer is kept",
            settings.MAILHUB_IDEMPOTENCY_TTL_HOURS,
            "MAILHUB_IDEMPOTENCY_TTL_HOURS",
        ),
        ("JSON nesting depth", 32, "fixed"),
    ]
    rows = "\n".join(f"| {what} | {value} | `{name}` |" for what, value, name in limits)
    return f"""Transactional mail: send one message or a batch, schedule, template, attach, tag,
follow every recipient's fate, keep a suppression list.

**Authentication.** `Authorization: Bearer mh_...` (or `X-Api-Key: mh_...`). A key belongs to
a client; a client sees and changes only its own messages, templates and suppressions. Another
client's object answers 404, exactly like one that does not exist.

**Errors.** Every 4xx is an RFC 9457 problem, `application/problem+json`: `type`, `title`,
`status`, a machine-readable `code` and `detail`; validation errors list each wrong field in
`errors` as `{{field, code, message}}` (`to[1]`, `attachments[0].content`). Client input never
causes a 5xx.

**Limits** (this server's values; each is checked before anything is stored):

| limit | value | setting |
|---|---|---|
{rows}

**Idempotency.** Send `Idempotency-Key` on any POST to make a retry safe (see the parameter).

**Rate limits.** Per API key, a sliding minute shared by every API process; past it, `429`
with `Retry-After` (seconds). A batch counts as one request.

**Pagination.** Lists are cursor-paginated: follow `next` (`limit` 1 to 200, default 50).
"""


def describe(result, generator, request, public):
    """drf-spectacular postprocessing hook: the API's description, with live limit values."""
    result["info"]["description"] = _description()
    return result
