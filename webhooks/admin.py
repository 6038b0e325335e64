"""Webhook endpoints in the admin: health at a glance, why one was disabled, and its request log.

Every change goes through ``webhooks.services``, as the API's do.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from deliveries.models import Event
from webhooks import conf
from webhooks.models import DISABLED_FIELDS, HEALTH_FIELDS, Endpoint, Notification, WebhookAttempt
from webhooks.services import (
    endpoint_create,
    endpoint_disable,
    endpoint_enable,
    endpoint_update,
)
from webhooks.ssrf import UnsafeUrl, url_check

RECENT_ATTEMPTS = 20


class EndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=Event.Type.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = Endpoint
        fields = ["client", "url", "event_types", "description", "enabled"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        try:
            url_check(url, policy=conf.url_policy())
        except UnsafeUrl as exc:
            raise forms.ValidationError(exc.message) from None
        return url


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = [
        "url",
        "client",
        "enabled",
        "health",
        "consecutive_failures",
        "last_success_at",
        "disabled_reason",
    ]
    list_filter = ["enabled", "client"]
    search_fields = ["url", "description", "client__name"]
    health_fields = ("health", *DISABLED_FIELDS, *HEALTH_FIELDS, "pending_events")
    readonly_fields = ["id", *health_fields, "recent_attempts", "created_at", "updated_at"]
    actions = ["enable", "disable"]

    def get_fieldsets(self, request, obj=None):
        editable = ("client", "url", "event_types", "description", "enabled")
        if obj is None:
            return [(None, {"fields": editable})]
        return [
            (None, {"fields": ("id", *editable)}),
            ("Health", {"fields": self.health_fields}),
            ("Request log", {"fields": ("recent_attempts",)}),
            (None, {"fields": ("created_at", "updated_at")}),
        ]

    def get_readonly_fields(self, request, obj=None):
        # The owner of an endpoint is fixed once it exists: its secret and events are the owner's.
        return [*self.readonly_fields, "client"] if obj is not None else self.readonly_fields

    @admin.display(description="health")
    def health(self, endpoint: Endpoint) -> str:
        if not endpoint.enabled:
            return "disabled"
        if endpoint.consecutive_failures:
            return f"failing ({endpoint.consecutive_failures} in a row)"
        return "ok"

    @admin.display(description="events waiting")
    def pending_events(self, endpoint: Endpoint) -> int:
        return endpoint.notifications.filter(status=Notification.Status.PENDING).count()

    @admin.display(description=f"last {RECENT_ATTEMPTS} requests")
    def recent_attempts(self, endpoint: Endpoint) -> str:
        attempts = endpoint.attempts.order_by("-id")[:RECENT_ATTEMPTS]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{a.started_at:%Y-%m-%d %H:%M:%S}",
                    a.status_code or "-",
                    a.duration_ms,
                    a.event_count,
                    a.error,
                    a.response_excerpt,
                )
                for a in attempts
            ),
        )
        changelist = reverse("admin:webhooks_webhookattempt_changelist")
        link = f"{changelist}?endpoint__id__exact={endpoint.id}"
        return format_html(
            "<table><tr><th>started</th><th>status</th><th>took</th><th>events</th>"
            "<th>error</th><th>response</th></tr>{}</table><p><a href='{}'>all requests</a></p>",
            rows,
            link,
        )

    def save_model(self, request: HttpRequest, obj: Endpoint, form, change: bool) -> None:
        data = form.cleaned_data
        if change:
            endpoint_update(
                endpoint=Endpoint.objects.get(pk=obj.pk),
                url=data["url"],
                event_types=data["event_types"],
                description=data["description"],
                enabled=data["enabled"],
            )
            return
        created, secret = endpoint_create(
            client=data["client"],
            url=data["url"],
            event_types=data["event_types"],
            description=data["description"],
            enabled=data["enabled"],
        )
        # The admin goes on with `obj` (its log entry, the redirect): make it the saved row.
        obj.pk, obj.secret = created.pk, created.secret
        obj._state.adding, obj._state.db = False, created._state.db
        messages.warning(
            request,
            f"The signing secret of this endpoint is {secret} — give it to the client now; "
            "it is not shown again.",
        )

    @admin.action(description="Enable (and forget past failures)")
    def enable(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        count = sum(endpoint_enable(endpoint=endpoint) for endpoint in queryset)
        self.message_user(request, f"{count} endpoint(s) enabled.")

    @admin.action(description="Disable")
    def disable(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        reason = f"Disabled in the admin by {request.user}."
        count = sum(endpoint_disable(endpoint=endpoint, reason=reason) for endpoint in queryset)
        self.message_user(request, f"{count} endpoint(s) disabled.")


class _ReadOnlyAdmin(admin.ModelAdmin):
    """Logs: written by the workers only."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(_ReadOnlyAdmin):
    list_display = [
        "started_at",
        "endpoint",
        "status_code",
        "succeeded",
        "duration_ms",
        "event_count",
        "error",
        "response_excerpt",
    ]
    list_filter = ["succeeded", "endpoint__client"]
    search_fields = ["endpoint__url", "=endpoint__id"]
    list_select_related = ["endpoint"]
    date_hierarchy = "started_at"


@admin.register(Notification)
class NotificationAdmin(_ReadOnlyAdmin):
    list_display = ["event", "endpoint", "status", "attempts", "created_at", "delivered_at"]
    list_filter = ["status", "endpoint__client"]
    search_fields = ["=event__id", "endpoint__url", "event__recipient"]
    list_select_related = ["event", "endpoint"]
    raw_id_fields = ["event", "endpoint"]
