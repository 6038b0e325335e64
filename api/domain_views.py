"""``/api/v1/domains``: a client's sending domains, the DNS records to publish for each, checking
them now, and rotating DKIM keys. Each client sees and changes only its own domains."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from api.request import ApiRequest
from api.schema import problem_responses
from api.serializers.domains import (
    ActivateKeySerializer,
    DomainCreateSerializer,
    DomainListSerializer,
    DomainSerializer,
    RotateKeySerializer,
)
from domains.models import SendingDomain
from domains.selectors import domain_get_for_client, domains_for_client
from domains.services import (
    dkim_key_activate,
    dkim_key_rotate,
    domain_create,
    domain_delete,
    domain_verify,
)

_MAX_ID = 2**63 - 1  # a bigint: a larger id names no domain (and must not reach Postgres)
_LOCATION = OpenApiParameter("Location", location=OpenApiParameter.HEADER, response=[201], type=str)
_KEYS_UNAVAILABLE = (
    503,
    "DKIM keys cannot be stored: the operator has not set MAILHUB_DKIM_ENCRYPTION_KEYS "
    "(`dkim_keys_unavailable`).",
)


def _domain_or_404(request: ApiRequest, domain_id: int) -> SendingDomain:
    domain = (
        domain_get_for_client(client=request.client, domain_id=domain_id)
        if domain_id <= _MAX_ID
        else None
    )
    if domain is None:
        # The same answer whether the id does not exist or belongs to another client.
        raise NotFound("No such sending domain.", code="domain_not_found")
    return domain


def _shown(request: ApiRequest, domain_id: int, code: int = status.HTTP_200_OK) -> Response:
    """The domain as it is now, read again with its keys."""
    return Response(DomainSerializer(_domain_or_404(request, domain_id)).data, status=code)


class DomainCollection(APIView):
    @extend_schema(
        operation_id="domains_list",
        summary="List sending domains",
        description="Every domain of the client, by name, with its DKIM keys, the DNS records "
        "to publish and what the last check found.",
        responses={200: DomainListSerializer},
    )
    def get(self, request):
        domains = domains_for_client(client=request.client)
        return Response({"results": DomainSerializer(domains, many=True).data})

    @extend_schema(
        operation_id="domains_create",
        summary="Add a sending domain",
        description="Adds the domain with a new DKIM key (selector `mh<yyyymm>`), `pending` "
        "until its records are found: publish the `records` of the answer, then verify it. "
        "Mail may come From: its addresses once it is `verified`.",
        request=DomainCreateSerializer,
        parameters=[_LOCATION],
        responses={
            201: DomainSerializer,
            **problem_responses(
                (409, "The client has this domain already (`domain_exists`)."), _KEYS_UNAVAILABLE
            ),
        },
    )
    def post(self, request):
        serializer = DomainCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        domain = domain_create(client=request.client, **serializer.validated_data)
        response = _shown(request, domain.id, status.HTTP_201_CREATED)
        response["Location"] = f"/api/v1/domains/{domain.id}"
        return response


class DomainDetail(APIView):
    @extend_schema(
        operation_id="domains_retrieve",
        summary="A sending domain, its records to publish and its last checks",
        responses={200: DomainSerializer},
    )
    def get(self, request, domain_id: int):
        return _shown(request, domain_id)

    @extend_schema(
        operation_id="domains_destroy",
        summary="Delete a sending domain",
        description="With its DKIM keys: mail From: it is refused from now on.",
        responses={204: OpenApiResponse(description="Deleted.")},
    )
    def delete(self, request, domain_id: int):
        domain_delete(domain_id=_domain_or_404(request, domain_id).id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DomainVerify(APIView):
    @extend_schema(
        operation_id="domains_verify",
        summary="Check a sending domain's DNS records now",
        description="Looks up every record and answers the domain as the check left it: "
        "`verified` once the active DKIM key (and the SPF include, when the operator requires "
        "one) is found. DMARC and the bounce domain are reported, not required. Domains are "
        "also checked again periodically.",
        request=None,
        responses={200: DomainSerializer},
    )
    def post(self, request, domain_id: int):
        domain_verify(domain_id=_domain_or_404(request, domain_id).id)
        return _shown(request, domain_id)


class DomainRotateKey(APIView):
    @extend_schema(
        operation_id="domains_rotate_key",
        summary="Start a DKIM key rotation",
        description="Makes a new `pending` key under a new selector: publish its record (in "
        "`records`), then activate it. One rotation at a time.",
        request=RotateKeySerializer,
        responses={
            200: DomainSerializer,
            **problem_responses(
                (409, "A pending key waits to be activated already (`rotation_in_progress`)."),
                _KEYS_UNAVAILABLE,
            ),
        },
    )
    def post(self, request, domain_id: int):
        domain = _domain_or_404(request, domain_id)
        serializer = RotateKeySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        dkim_key_rotate(domain_id=domain.id, algorithm=serializer.validated_data.get("algorithm"))
        return _shown(request, domain_id)


class DomainActivateKey(APIView):
    @extend_schema(
        operation_id="domains_activate_key",
        summary="Make a pending DKIM key the signing one",
        description="Once its record is found in DNS (looked up now): it signs from now on, and "
        "the key that signed until now is retired (remove its record after a few days, when "
        "mail signed with it has arrived).",
        request=ActivateKeySerializer,
        responses={
            200: DomainSerializer,
            **problem_responses(
                (
                    409,
                    "The key is not pending (`dkim_key_not_pending`) or its record is not in "
                    "DNS yet (`dkim_record_not_found`).",
                ),
            ),
        },
    )
    def post(self, request, domain_id: int):
        domain = _domain_or_404(request, domain_id)
        serializer = ActivateKeySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        dkim_key_activate(domain_id=domain.id, selector=serializer.validated_data["selector"])
        return _shown(request, domain_id)
