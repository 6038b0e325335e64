"""Templates: a client's stored subject, text and html, checked to compile before they are saved."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from accounts.models import Client
from deliveries.models import Template
from deliveries.templating import template_check
from mailhub.errors import MailhubError


class TemplateExists(MailhubError):
    status = 409


def template_create(*, client: Client, name: str, subject: str, text: str, html: str) -> Template:
    """Store a template after checking that every part compiles (``TemplateProblem`` if not)."""
    template_check(subject=subject, text=text, html=html)
    try:
        with transaction.atomic():
            return Template.objects.create(
                client=client, name=name, subject=subject, text=text, html=html
            )
    except IntegrityError:
        raise TemplateExists(
            f"A template named {name!r} exists; update it with PUT or PATCH.",
            code="template_exists",
        ) from None


def template_update(*, template: Template, **fields: str) -> Template:
    """Change some of name, subject, text and html; the result must compile as a whole.

    ``updated_at`` moves, and with it the key of the compiled-template cache.
    """
    for name, value in fields.items():
        setattr(template, name, value)
    template_check(subject=template.subject, text=template.text, html=template.html)
    try:
        with transaction.atomic():
            template.save()
    except IntegrityError:
        raise TemplateExists(
            f"A template named {template.name!r} exists.", code="template_exists"
        ) from None
    return template


def template_delete(*, template: Template) -> None:
    """Delete a template. Mail already accepted from it keeps its rendered content."""
    template.delete()
