"""The operator's console: messages, deliveries, attempts, events, suppressions, templates, and
a dashboard.

Built to stay fast with millions of messages: no changelist counts every row
(``show_full_result_count = False`` and a paginator that asks the planner for an estimate when
the exact count would be large), no column is read per row (related values come from the same
query), and searches use exact values the indexes serve before any substring scan.

Rows change only through actions, and actions only through ``deliveries.services``: the state
machine decides what may move, so a delivered delivery is never touched.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import Count, F, IntegerField, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from deliveries.metrics import count_or_estimate, dashboard
from deliveries.mime import build_mime
from deliveries.models import Attachment, Attempt, Delivery, Event, Message, Suppression, Template
from deliveries.partitions import since
from deliveries.services import (
    CANCELLABLE,
    REQUEUEABLE,
    RETRYABLE,
    OperationResult,
    chunked,
    deliveries_cancel,
    deliveries_requeue,
    deliveries_retry_now,
    messages_resend,
    suppression_add,
    suppression_remove,
)
from deliveries.templating import TemplateProblem, template_check

#: Deliveries handed to one service call (one transaction) by an action.
ACTION_CHUNK = 1000
#: Resend builds every copy in memory; more than this is a job for the command line.
RESEND_LIMIT = 1000

admin.site.site_header = "Mailhub"
admin.site.site_title = "Mailhub admin"
admin.site.index_title = "Operations"
# Adds the dashboard link above the app list.
admin.site.index_template = "admin/mailhub_index.html"


class EstimatedCountPaginator(Paginator):
    """Exact counts for small results, the planner's estimate for large ones."""

    object_list: QuerySet  # the changelist's rows: always a queryset in the admin

    @cached_property
    def count(self) -> int:
        return count_or_estimate(self.object_list)[0]


class FastChangelist:
    """Changelist settings shared by the big tables."""

    paginator: ClassVar[type[Paginator]] = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows are written by Mailhub, never through a form."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class ActionsOnlyAdmin(ReadOnlyAdmin):
    """Read-only detail pages; the changelist's actions need the change permission."""

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None and super(ReadOnlyAdmin, self).has_change_permission(request)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    max_num = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def _uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


def _short(value: str, length: int = 60) -> str:
    return Truncator(value).chars(length)


def _delivery_action(name: str, description: str, **run: Any) -> Callable:
    """An admin action running one operation on the selected deliveries of ``run["statuses"]``."""

    @admin.action(description=description, permissions=["change"])
    def action(self: DeliveryActions, request: HttpRequest, queryset: QuerySet) -> None:
        self._run(request, queryset, **run)

    action.__name__ = name
    return action


class DeliveryActions(admin.ModelAdmin):
    """Retry, requeue and cancel for any changelist whose rows name deliveries.

    Each action selects only the statuses its operation may move from (a delivered delivery is
    never among them) and reports how many deliveries it changed.
    """

    def selected_deliveries(self, queryset: QuerySet) -> QuerySet:
        raise NotImplementedError

    def _run(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        *,
        statuses: Iterable[str],
        operation: Callable[..., OperationResult],
        verb: str,
        eligible: str,
    ) -> None:
        ids = list(
            self.selected_deliveries(queryset)
            .filter(status__in=list(statuses))
            .order_by("id")
            .values_list("id", flat=True)
        )
        result = OperationResult()
        for chunk in chunked(ids, ACTION_CHUNK):
            result.add(operation(delivery_ids=chunk))
        level = messages.SUCCESS if result.changed else messages.WARNING
        text = (
            f"{verb} {result.changed} deliver{'y' if result.changed == 1 else 'ies'} "
            f"of {len(result.messages)} message(s)."
        )
        if result.skipped:
            text += f" {result.skipped} had moved on meanwhile and were left as they are."
        if not ids:
            text = f"Nothing to do: no selected delivery is {eligible}."
        self.message_user(request, text, level)

    retry_now = _delivery_action(
        "retry_now",
        "Retry now (failed and deferred deliveries)",
        statuses=RETRYABLE,
        operation=deliveries_retry_now,
        verb="Queued for retry",
        eligible="failed or deferred",
    )
    requeue = _delivery_action(
        "requeue",
        "Requeue (publish queued deliveries again)",
        statuses=REQUEUEABLE,
        operation=deliveries_requeue,
        verb="Published again",
        eligible="queued",
    )
    cancel = _delivery_action(
        "cancel",
        "Cancel (deliveries not yet sent)",
        statuses=CANCELLABLE,
        operation=deliveries_cancel,
        verb="Cancelled",
        eligible="scheduled, queued or deferred",
    )


# -- inlines ---------------------------------------------------------------------------------


class DeliveryInline(ReadOnlyInline):
    model = Delivery
    fields = readonly_fields = (
        "address",
        "name",
        "kind",
        "status",
        "attempts",
        "next_attempt_at",
        "last_code",
        "last_enhanced_code",
        "last_reply",
        "delivered_at",
        "updated_at",
    )
    ordering = ("id",)
    show_change_link = True


class AttachmentInline(ReadOnlyInline):
    model = Attachment
    fields = readonly_fields = ("filename", "content_type", "size", "content_id")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).defer("content")


class EventInline(ReadOnlyInline):
    model = Event
    fk_name = "message"
    fields = readonly_fields = (
        "created_at",
        "type",
        "recipient",
        "attempt",
        "smtp_code",
        "enhanced_code",
        "reply",
        "next_attempt_at",
    )
    ordering = ("created_at",)


class AttemptInline(ReadOnlyInline):
    model = Attempt
    fields = readonly_fields = (
        "number",
        "outcome",
        "started_at",
        "duration_ms",
        "smtp_code",
        "enhanced_code",
        "reply",
        "worker",
        "task_id",
    )
    ordering = ("number",)


# -- messages --------------------------------------------------------------------------------


@admin.register(Message)
class MessageAdmin(DeliveryActions, FastChangelist, ActionsOnlyAdmin):
    list_display = (
        "short_id",
        "short_subject",
        "status",
        "priority",
        "client",
        "test_mode",
        "recipients",
        "created_at",
    )
    list_filter = (
        "status",
        "priority",
        "test_mode",
        "client",
        ("created_at", admin.DateFieldListFilter),
    )
    list_select_related = ("client",)
    ordering = ("-created_at",)
    search_fields = ("subject",)  # replaced by get_search_results; the box needs one
    search_help_text = (
        "A message id, a Message-ID header (<...>), a recipient address (exact), "
        "or words of the subject."
    )
    actions = ("retry_now", "cancel", "resend")
    inlines = (DeliveryInline, AttachmentInline, EventInline)
    change_list_template = "admin/deliveries/message/change_list.html"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    ("id", "status", "priority"),
                    ("client", "test_mode", "template_name"),
                    "sender",
                    "reply_to",
                    "subject",
                    "message_id",
                    ("tags", "metadata"),
                    ("created_at", "send_at", "expires_at"),
                )
            },
        ),
        ("As sent", {"fields": ("rendered_headers", "text_part", "html_part")}),
        ("Attempts", {"fields": ("attempts_table",)}),
    )
    readonly_fields = (
        "id",
        "status",
        "priority",
        "client",
        "test_mode",
        "template_name",
        "sender",
        "reply_to",
        "subject",
        "message_id",
        "tags",
        "metadata",
        "created_at",
        "send_at",
        "expires_at",
        "rendered_headers",
        "text_part",
        "html_part",
        "attempts_table",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match is not None and match.url_name == "deliveries_message_changelist":
            # One subquery per row shown (50), not a GROUP BY over the whole table.
            recipients = (
                Delivery.objects.filter(message=OuterRef("pk"))
                .order_by()
                .values("message")
                .annotate(n=Count("id"))
                .values("n")
            )
            queryset = queryset.annotate(
                recipient_count=Subquery(recipients, output_field=IntegerField())
            ).defer("text_body", "html_body", "headers", "metadata", "reply_to")
        return queryset

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if (message_uuid := _uuid(term)) is not None:
            return queryset.filter(id=message_uuid), False
        if term.startswith("<") and term.endswith(">"):
            return queryset.filter(message_id=term), False
        if "@" in term and " " not in term:
            matching = Delivery.objects.filter(address__iexact=term).values("message_id")
            return queryset.filter(id__in=matching), False
        return queryset.filter(subject__icontains=term), False

    @admin.display(description="id", ordering="id")
    def short_id(self, obj: Message) -> str:
        return str(obj.id)[:8]

    @admin.display(description="subject", ordering="subject")
    def short_subject(self, obj: Message) -> str:
        return _short(obj.subject) or "(no subject)"

    @admin.display(description="recipients")
    def recipients(self, obj: Message) -> int | None:
        return getattr(obj, "recipient_count", None)

    @admin.display(description="headers")
    def rendered_headers(self, obj: Message) -> str:
        content = build_mime(obj, obj.deliveries.order_by("id"), obj.attachments.all())
        parsed = message_from_bytes(content, policy=default_policy)
        return format_html(
            '<table class="mailhub-headers">{}</table>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", parsed.items()),
        )

    @admin.display(description="text part")
    def text_part(self, obj: Message) -> str:
        if not obj.text_body:
            return "(none)"
        return format_html('<pre class="mailhub-body">{}</pre>', obj.text_body)

    @admin.display(description="HTML part")
    def html_part(self, obj: Message) -> str:
        if not obj.html_body:
            return "(none)"
        # A sandboxed frame without any allow-* flag: no script runs and nothing the mail
        # contains can reach the admin's origin, cookies or forms.
        return format_html(
            '<iframe sandbox="" srcdoc="{}" title="HTML part" '
            'style="width:100%;height:24em;border:1px solid #ccc;background:#fff"></iframe>',
            obj.html_body,
        )

    @admin.display(description="attempts")
    def attempts_table(self, obj: Message) -> str:
        attempts = (
            Attempt.objects.filter(delivery__message=obj, started_at__gte=since(obj.created_at))
            .annotate(address=F("delivery__address"))
            .order_by("delivery_id", "number")
        )
        rows = [
            (
                a.address,
                a.number,
                a.outcome,
                a.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                "" if a.duration_ms is None else f"{a.duration_ms} ms",
                a.smtp_code or "",
                a.enhanced_code,
                a.reply,
                a.worker,
            )
            for a in attempts
        ]
        if not rows:
            return "(no attempt yet)"
        header = format_html_join(
            "",
            "<th>{}</th>",
            (
                (h,)
                for h in (
                    "recipient",
                    "#",
                    "outcome",
                    "started",
                    "took",
                    "code",
                    "",
                    "reply",
                    "worker",
                )
            ),
        )
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr>",
            rows,
        )
        return format_html(
            "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", header, body
        )

    def selected_deliveries(self, queryset: QuerySet) -> QuerySet:
        return Delivery.objects.filter(message__in=queryset.values("pk"))

    @admin.action(description="Resend as a new message", permissions=["change"])
    def resend(self, request: HttpRequest, queryset: QuerySet) -> None:
        message_ids = list(queryset.values_list("id", flat=True)[: RESEND_LIMIT + 1])
        if len(message_ids) > RESEND_LIMIT:
            self.message_user(
                request,
                f"Select at most {RESEND_LIMIT} messages to resend at once.",
                messages.ERROR,
            )
            return
        copies = messages_resend(message_ids=message_ids)
        self.message_user(
            request,
            f"Accepted {len(copies)} new message(s), copies of the {len(message_ids)} selected.",
            messages.SUCCESS,
        )

    # -- the dashboard --

    def get_urls(self):
        return [
            path(
                "dashboard/",
                self.admin_site.admin_view(self.dashboard_view),
                name="deliveries_dashboard",
            ),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Mail dashboard",
            "board": dashboard(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/deliveries/dashboard.html", context)


# -- deliveries, attempts, events ------------------------------------------------------------


@admin.register(Delivery)
class DeliveryAdmin(DeliveryActions, FastChangelist, ActionsOnlyAdmin):
    list_display = (
        "id",
        "address",
        "message_link",
        "priority",
        "status",
        "attempts",
        "next_attempt_at",
        "last_code",
        "short_reply",
        "updated_at",
    )
    list_filter = ("status", "kind", "message__priority")
    ordering = ("-id",)
    search_fields = ("address",)  # replaced by get_search_results
    search_help_text = "A recipient address (exact), a delivery id, or a message id."
    actions = ("retry_now", "requeue", "cancel")
    inlines = (AttemptInline,)
    fields = readonly_fields = (
        "id",
        "message_link",
        "address",
        "name",
        "kind",
        "status",
        "attempts",
        "next_attempt_at",
        "last_code",
        "last_enhanced_code",
        "last_reply",
        "delivered_at",
        "relay_message_id",
        "updated_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Two columns of the message in the same query; the message's bodies are never loaded.
        return (
            super()
            .get_queryset(request)
            .annotate(priority=F("message__priority"), subject=F("message__subject"))
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.isdigit():
            return queryset.filter(id=int(term)), False
        if (message_uuid := _uuid(term)) is not None:
            return queryset.filter(message_id=message_uuid), False
        return queryset.filter(address__iexact=term), False

    @admin.display(description="message")
    def message_link(self, obj: Delivery) -> str:
        url = reverse("admin:deliveries_message_change", args=[obj.message_id])
        subject = getattr(obj, "subject", None)
        label = _short(subject, 40) if subject else str(obj.message_id)[:8]
        return format_html('<a href="{}">{}</a>', url, label or "(no subject)")

    @admin.display(description="priority", ordering="message__priority")
    def priority(self, obj: Delivery) -> str:
        return getattr(obj, "priority", "")

    @admin.display(description="last reply")
    def short_reply(self, obj: Delivery) -> str:
        return _short(obj.last_reply, 50)

    def selected_deliveries(self, queryset: QuerySet) -> QuerySet:
        return queryset


@admin.register(Attempt)
class AttemptAdmin(FastChangelist, ReadOnlyAdmin):
    list_display = (
        "id",
        "address",
        "number",
        "outcome",
        "smtp_code",
        "enhanced_code",
        "short_reply",
        "worker",
        "started_at",
        "duration_ms",
    )
    list_filter = ("outcome",)
    ordering = ("-id",)
    search_fields = ("task_id",)  # replaced by get_search_results
    search_help_text = "A delivery id, a recipient address (exact) or a Celery task id."
    fields = readonly_fields = (
        "delivery",
        "number",
        "outcome",
        "started_at",
        "duration_ms",
        "smtp_code",
        "enhanced_code",
        "reply",
        "worker",
        "task_id",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(address=F("delivery__address"))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.isdigit():
            return queryset.filter(delivery_id=int(term)), False
        if "@" in term:
            return queryset.filter(delivery__address__iexact=term), False
        return queryset.filter(task_id=term), False

    @admin.display(description="recipient", ordering="delivery__address")
    def address(self, obj: Attempt) -> str:
        return getattr(obj, "address", "")

    @admin.display(description="reply")
    def short_reply(self, obj: Attempt) -> str:
        return _short(obj.reply, 50)


@admin.register(Event)
class EventAdmin(FastChangelist, ReadOnlyAdmin):
    list_display = (
        "created_at",
        "type",
        "recipient",
        "client",
        "message_link",
        "attempt",
        "smtp_code",
        "short_reply",
        "test_mode",
    )
    list_filter = ("type", "test_mode", "client")
    list_select_related = ("client",)
    ordering = ("-created_at",)
    search_fields = ("recipient",)  # replaced by get_search_results
    search_help_text = "A recipient address (exact) or a message id."
    fields = readonly_fields = (
        "id",
        "created_at",
        "type",
        "client",
        "message_link",
        "delivery",
        "recipient",
        "attempt",
        "smtp_code",
        "enhanced_code",
        "reply",
        "next_attempt_at",
        "fanned_out",
        "test_mode",
    )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if (message_uuid := _uuid(term)) is not None:
            return queryset.filter(message_id=message_uuid), False
        return queryset.filter(recipient__iexact=term), False

    @admin.display(description="message")
    def message_link(self, obj: Event) -> str:
        url = reverse("admin:deliveries_message_change", args=[obj.message_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.message_id)[:8])

    @admin.display(description="reply")
    def short_reply(self, obj: Event) -> str:
        return _short(obj.reply, 50)


# -- suppressions and templates --------------------------------------------------------------


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ("address", "client", "reason", "short_detail", "created_at")
    list_filter = ("reason", "client")
    list_select_related = ("client",)
    ordering = ("-created_at",)
    search_fields = ("address",)
    search_help_text = "The start of an address."
    fields = ("client", "address", "reason", "detail")
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip().lower()
        if not term:
            return queryset, False
        return queryset.filter(address__startswith=term), False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # A suppression is added or removed, not edited (the unique address is its identity).
        return obj is None and super().has_change_permission(request)

    @admin.display(description="detail")
    def short_detail(self, obj: Suppression) -> str:
        return _short(obj.detail, 60)

    def save_model(self, request: HttpRequest, obj: Suppression, form, change: bool) -> None:
        created = suppression_add(
            client_id=obj.client_id, address=obj.address, reason=obj.reason, detail=obj.detail
        )
        stored = Suppression.objects.get(client_id=obj.client_id, address=obj.address.lower())
        obj.pk, obj.address, obj.created_at = stored.pk, stored.address, stored.created_at
        if not created:
            self.message_user(
                request,
                f"{stored.address} was already suppressed ({stored.reason}).",
                messages.INFO,
            )

    def delete_model(self, request: HttpRequest, obj: Suppression) -> None:
        suppression_remove(client=obj.client, address=obj.address)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for suppression in queryset.select_related("client"):
            suppression_remove(client=suppression.client, address=suppression.address)


class TemplateForm(forms.ModelForm):
    """Checked with the same sandboxed engine that renders it, before it is saved."""

    class Meta:
        model = Template
        fields = ("client", "name", "subject", "text", "html")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        try:
            template_check(
                subject=data.get("subject", ""),
                text=data.get("text", ""),
                html=data.get("html", ""),
            )
        except TemplateProblem as problem:
            raise forms.ValidationError(
                {part: message for part, (_, message) in problem.errors.items()}
            ) from None
        return data


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    form = TemplateForm
    list_display = ("name", "client", "short_subject", "updated_at")
    list_filter = ("client",)
    list_select_related = ("client",)
    ordering = ("client__name", "name")
    search_fields = ("name",)
    fields = ("client", "name", "subject", "text", "html")

    @admin.display(description="subject")
    def short_subject(self, obj: Template) -> str:
        return _short(obj.subject, 60)
