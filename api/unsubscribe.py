"""One-click unsubscribe links (RFC 8058): ``/u/<token>``, the link in each recipient's
``List-Unsubscribe`` header (``deliveries.parcels``).

No login: the signed token is the credential, and it names one delivery. A POST (what a mail
client sends, with ``List-Unsubscribe=One-Click``) unsubscribes: it is CSRF-exempt, since it comes
from no page of ours. A GET (a person who followed the link) shows a page whose button POSTs, so
that a link scanner fetching the URL unsubscribes nobody. A token this deployment did not make,
or whose delivery is gone, is a 404 page; nothing else about it is told.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from deliveries.selectors import delivery_exists
from deliveries.services import delivery_unsubscribe
from deliveries.tokens import UNSUBSCRIBE, read_delivery_token

_TEMPLATE = "api/unsubscribe.html"


@csrf_exempt
@require_http_methods(["GET", "POST"])
def one_click(request: HttpRequest, token: str) -> HttpResponse:
    delivery_id = read_delivery_token(UNSUBSCRIBE, token)
    if delivery_id is None:
        return _page(request, "unknown", status=404)
    if request.method == "GET":
        found = delivery_exists(delivery_id=delivery_id)
        return _page(request, "confirm" if found else "unknown", status=200 if found else 404)
    if not delivery_unsubscribe(delivery_id=delivery_id):
        return _page(request, "unknown", status=404)
    return _page(request, "done")


def _page(request: HttpRequest, state: str, *, status: int = 200) -> HttpResponse:
    response = render(request, _TEMPLATE, {"state": state}, status=status)
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex"
    return response
