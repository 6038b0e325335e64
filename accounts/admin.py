"""Clients and their API keys in the admin.

A key is created through ``accounts.services.api_key_create``: the page that follows shows its
secret once and nothing stores it (not the session, not a flash message); afterwards only the
prefix is visible. Keys are revoked, never edited or deleted, so that the audit trail of who sent
what stays intact. A key's mode (live, or test: its mail is never sent) is chosen when it is
created and shown in the list, which filters by it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypedDict, cast

from django.contrib import admin, messages
from django.db.models import Count, IntegerField, Model, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.debug import sensitive_variables

from accounts.models import ApiKey, Client
from accounts.services import api_key_create, api_keys_revoke

if TYPE_CHECKING:
    from django import forms
    from django_stubs_ext import WithAnnotations

    # The admin's classes are generic to the type checker only (Django's are not subscriptable).
    _ApiKeyInline = admin.TabularInline[ApiKey, Client]
    _ClientAdmin = admin.ModelAdmin[Client]
    _ApiKeyAdmin = admin.ModelAdmin[ApiKey]
else:
    _ApiKeyInline = admin.TabularInline
    _ClientAdmin = _ApiKeyAdmin = admin.ModelAdmin


class _KeyCount(TypedDict):
    active_key_count: int | None


class _KeyCreatingRequest(HttpRequest):
    """The admin's request while it adds a key. Never instantiated: ``save_model`` casts the
    request to this type to hand ``response_add`` the new secret, so its name is checked."""

    _mailhub_new_secret: str


class ApiKeyInline(_ApiKeyInline):
    model = ApiKey
    fields = readonly_fields = (
        "prefix",
        "name",
        "test_mode",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    ordering = ("-created_at",)

    def has_add_permission(self, request: HttpRequest, obj: Client | None = None) -> bool:
        return False

    # obj is the client; the stubs also type it as the inline's model (their own LSP clash).
    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Client)
class ClientAdmin(_ClientAdmin):
    list_display = ("name", "active_keys", "created_at")
    search_fields = ("name",)
    ordering = ("name",)
    fields = ("name", "created_at")
    readonly_fields = ("created_at",)
    inlines = (ApiKeyInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Client]:
        active = (
            ApiKey.objects.filter(client=OuterRef("pk"), revoked_at__isnull=True)
            .order_by()
            .values("client")
            .annotate(n=Count("id"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(active_key_count=Subquery(active, output_field=IntegerField()))
        )

    @admin.display(description="active API keys")
    def active_keys(self, obj: WithAnnotations[Client, _KeyCount]) -> int:
        return obj.active_key_count or 0

    def has_delete_permission(self, request: HttpRequest, obj: Client | None = None) -> bool:
        # Its messages protect a client from deletion anyway; revoke its keys instead.
        return False


class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> Iterable[tuple[str, str]]:
        return (("active", "active"), ("revoked", "revoked"))

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class ModeFilter(admin.SimpleListFilter):
    title = "mode"
    parameter_name = "mode"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> Iterable[tuple[str, str]]:
        return (("live", "live"), ("test", "test"))

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() in ("live", "test"):
            return queryset.filter(test_mode=self.value() == "test")
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(_ApiKeyAdmin):
    list_display = (
        "prefix",
        "name",
        "client",
        "is_active",
        "mode",
        "rate_limit_per_minute",
        "created_at",
        "last_used_at",
    )
    list_filter = (ActiveFilter, ModeFilter, "client")
    list_select_related = ("client",)
    search_fields = ("prefix", "name", "client__name")
    ordering = ("-created_at",)
    actions = ("revoke",)
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("client", "name", "test_mode", "rate_limit_per_minute")
        return (
            "client",
            "name",
            "test_mode",
            "prefix",
            "rate_limit_per_minute",
            "created_at",
            "last_used_at",
            "revoked_at",
        )

    def get_readonly_fields(
        self, request: HttpRequest, obj: ApiKey | None = None
    ) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("client", "name", "test_mode", *self.readonly_fields)

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False

    @admin.display(description="active", boolean=True)
    def is_active(self, obj: ApiKey) -> bool:
        return obj.is_active

    @admin.display(description="mode", ordering="test_mode")
    def mode(self, obj: ApiKey) -> str:
        return "test" if obj.test_mode else "live"

    # An error report (the DEBUG page, mail to ADMINS) shows each frame's variables: not these.
    @sensitive_variables("secret")
    def save_model(
        self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm[ApiKey], change: bool
    ) -> None:
        if change:
            return  # every field of an existing key is read-only
        key, secret = api_key_create(client=obj.client, name=obj.name, test_mode=obj.test_mode)
        for field in ("id", "prefix", "key_hash", "created_at"):
            setattr(obj, field, getattr(key, field))
        # Only for response_add of this very request; never stored anywhere.
        cast(_KeyCreatingRequest, request)._mailhub_new_secret = secret

    @sensitive_variables("secret", "context")
    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        secret = getattr(request, "_mailhub_new_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "API key created",
            "key": obj,
            "secret": secret,
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/accounts/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        ids = list(queryset.filter(Q(revoked_at__isnull=True)).values_list("id", flat=True))
        revoked = api_keys_revoke(key_ids=ids)
        selected = queryset.count()
        text = f"Revoked {revoked} API key(s)."
        if selected - revoked:
            text += f" {selected - revoked} selected key(s) were already revoked."
        self.message_user(request, text, messages.SUCCESS if revoked else messages.WARNING)
