"""Sending domains and DKIM keys in the admin: state and last checks at a glance, the records to
publish, "verify now". Never a private key, in any form.

Domains are added through ``domains.services`` (the API, or ``manage.py domains add``), which makes
the first DKIM key; the admin adds none itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from domains.models import DKIM_KEY_PUBLIC_FIELDS, DkimKey, SendingDomain
from domains.selectors import domain_records
from domains.services import domain_mark_verified_locally, domain_verify
from mailhub.errors import MailhubError

if TYPE_CHECKING:
    # The admin's classes are generic to the type checker only (Django's are not subscriptable).
    _DkimKeyInline = admin.TabularInline[DkimKey, SendingDomain]
    _SendingDomainAdmin = admin.ModelAdmin[SendingDomain]
    _DkimKeyAdmin = admin.ModelAdmin[DkimKey]
else:
    _DkimKeyInline = admin.TabularInline
    _SendingDomainAdmin = _DkimKeyAdmin = admin.ModelAdmin

_KEY_FIELDS = DKIM_KEY_PUBLIC_FIELDS
_OK = {True: "ok", False: "missing", None: "unknown"}


class DkimKeyInline(_DkimKeyInline):
    model = DkimKey
    fields = _KEY_FIELDS
    readonly_fields = _KEY_FIELDS
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(SendingDomain)
class SendingDomainAdmin(_SendingDomainAdmin):
    list_display = [
        "domain",
        "client",
        "state",
        "verified_locally",
        "last_checked_at",
        "failing_since",
        "checks_summary",
    ]
    list_filter = ["state", "verified_locally"]
    search_fields = ["domain", "client__name"]
    list_select_related = ["client"]
    fields = (
        "client",
        "domain",
        "allow_subdomains",
        "state",
        "verified_locally",
        "verified_at",
        "last_checked_at",
        "failing_since",
        "checks_table",
        "records_table",
        "created_at",
    )
    readonly_fields = tuple(f for f in fields if f != "allow_subdomains")
    inlines = [DkimKeyInline]
    actions = ["verify_now", "mark_verified_locally"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the API or `manage.py domains add`: they make its first key

    @admin.display(description="checks")
    def checks_summary(self, domain: SendingDomain) -> str:
        return ", ".join(
            f"{name} {_OK[check.get('ok')]}" for name, check in (domain.checks or {}).items()
        )

    @admin.display(description="last checks")
    def checks_table(self, domain: SendingDomain) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    name,
                    _OK[check.get("ok")],
                    "required" if check.get("required") else "advisory",
                    check.get("detail", ""),
                )
                for name, check in (domain.checks or {}).items()
            ),
        )
        return format_html("<table>{}</table>", rows) if domain.checks else "never checked"

    @admin.display(description="records to publish")
    def records_table(self, domain: SendingDomain) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            (
                (
                    r.name,
                    r.type,
                    r.value,
                    f"{r.purpose}, {'required' if r.required else 'advisory'}",
                )
                for r in domain_records(domain=domain)
            ),
        )
        return format_html("<table>{}</table>", rows)

    @admin.action(description="Check the DNS records of the selected domains now")
    def verify_now(self, request: HttpRequest, queryset: QuerySet[SendingDomain]) -> None:
        for domain_id in queryset.values_list("id", flat=True):
            try:
                domain = domain_verify(domain_id=domain_id)
            except MailhubError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                continue
            level = messages.SUCCESS if domain.state == "verified" else messages.WARNING
            self.message_user(request, f"{domain.domain}: {domain.state}", level)

    @admin.action(description="Mark verified locally (no DNS: development only)")
    def mark_verified_locally(
        self, request: HttpRequest, queryset: QuerySet[SendingDomain]
    ) -> None:
        for domain_id in queryset.values_list("id", flat=True):
            domain_mark_verified_locally(domain_id=domain_id)
        self.message_user(request, f"{queryset.count()} domain(s) marked verified locally.")


@admin.register(DkimKey)
class DkimKeyAdmin(_DkimKeyAdmin):
    list_display = ["selector", "domain", "algorithm", "state", "created_at", "activated_at"]
    list_filter = ["state", "algorithm"]
    search_fields = ["selector", "domain__domain"]
    list_select_related = ["domain"]
    fields = ("domain", *_KEY_FIELDS)
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # `manage.py domains rotate`, or the API's rotate-key

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # retired, never deleted: a key that signed mail explains its signatures
