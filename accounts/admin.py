"""Clients and their API keys in the admin.

A key is created through ``accounts.services.api_key_create``: the page that follows shows its
secret once and nothing stores it (not the session, not a flash message); afterwards only the
prefix is visible. Keys are revoked, never edited or deleted, so that the audit trail of who sent
what stays intact.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.debug import sensitive_variables

from accounts.models import ApiKey, Client
from accounts.services import api_key_create, api_keys_revoke


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = readonly_fields = ("prefix", "name", "created_at", "last_used_at", "revoked_at")
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    ordering = ("-created_at",)

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    list_display = ("name", "active_keys", "created_at")
    search_fields = ("name",)
    ordering = ("name",)
    fields = ("name", "created_at")
    readonly_fields = ("created_at",)
    inlines = (ApiKeyInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
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
    def active_keys(self, obj: Client) -> int:
        return obj.active_key_count or 0

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Its messages protect a client from deletion anyway; revoke its keys instead.
        return False


class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("active", "active"), ("revoked", "revoked"))

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "prefix",
        "name",
        "client",
        "is_active",
        "rate_limit_per_minute",
        "created_at",
        "last_used_at",
    )
    list_filter = (ActiveFilter, "client")
    list_select_related = ("client",)
    search_fields = ("prefix", "name", "client__name")
    ordering = ("-created_at",)
    actions = ("revoke",)
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None):
        if obj is None:
            return ("client", "name", "rate_limit_per_minute")
        return (
            "client",
            "name",
            "prefix",
            "rate_limit_per_minute",
            "created_at",
            "last_used_at",
            "revoked_at",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None):
        if obj is None:
            return ()
        return ("client", "name", *self.readonly_fields)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="active", boolean=True)
    def is_active(self, obj: ApiKey) -> bool:
        return obj.is_active

    # An error report (the DEBUG page, mail to ADMINS) shows each frame's variables: not these.
    @sensitive_variables("secret")
    def save_model(self, request: HttpRequest, obj: ApiKey, form, change: bool) -> None:
        if change:
            return  # every field of an existing key is read-only
        key, secret = api_key_create(client=obj.client, name=obj.name)
        for field in ("id", "prefix", "key_hash", "created_at"):
            setattr(obj, field, getattr(key, field))
        # Only for response_add of this very request; never stored anywhere.
        request._mailhub_new_secret = secret

    @sensitive_variables("secret", "context")
    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue=None
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
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = list(queryset.filter(Q(revoked_at__isnull=True)).values_list("id", flat=True))
        revoked = api_keys_revoke(key_ids=ids)
        selected = queryset.count()
        text = f"Revoked {revoked} API key(s)."
        if selected - revoked:
            text += f" {selected - revoked} selected key(s) were already revoked."
        self.message_user(request, text, messages.SUCCESS if revoked else messages.WARNING)
