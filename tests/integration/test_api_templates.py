"""/api/v1/templates: per-client CRUD, checked on save; sends that name a template and a context
are rendered at accept time, and their mistakes are 400s, not worker failures."""

from __future__ import annotations

import pytest

from deliveries.models import Message, Template
from tests.builders import message_payload
from tests.integration.test_api_input import assert_field_error, assert_problem

pytestmark = pytest.mark.integration

URL = "/api/v1/templates"
WELCOME = {
    "name": "welcome",
    "subject": "Welcome, {{ name }}",
    "text": "Hello {{ name }}, your code is {{ code }}.",
    "html": "<p>Hello {{ name }}</p>",
}


def create(actor, **overrides):
    response = actor.api.post(URL, {**WELCOME, **overrides}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def send(actor, **overrides):
    payload = message_payload(template="welcome", context={"name": "Ann", "code": "123"})
    for part in ("subject", "text"):
        payload.pop(part)
    payload.update(overrides)
    return actor.api.post("/api/v1/messages", payload, format="json")


def test_a_template_is_created_read_listed_updated_and_deleted(acme):
    created = create(acme)
    assert {k: created[k] for k in WELCOME} == WELCOME
    assert acme.api.get(f"{URL}/welcome").json() == created
    create(acme, name="alpha")
    assert [t["name"] for t in acme.api.get(URL).json()["results"]] == ["alpha", "welcome"]

    patched = acme.api.patch(f"{URL}/welcome", {"subject": "Hi {{ name }}"}, format="json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["subject"] == "Hi {{ name }}"
    assert patched.json()["text"] == WELCOME["text"]

    replaced = acme.api.put(f"{URL}/welcome", {"name": "welcome", "text": "x"}, format="json")
    assert replaced.status_code == 200, replaced.content
    assert (replaced.json()["subject"], replaced.json()["html"]) == ("", "")

    assert acme.api.delete(f"{URL}/welcome").status_code == 204
    assert_problem(acme.api.get(f"{URL}/welcome"), status=404, code="template_not_found")


def test_a_template_with_a_syntax_error_is_refused_naming_the_part(acme):
    response = acme.api.post(URL, {**WELCOME, "html": "<p>{% if %}</p>"}, format="json")
    assert_field_error(response, field="html", code="template_syntax")
    assert not Template.objects.exists()


def test_an_update_that_breaks_the_template_is_refused_and_changes_nothing(acme):
    create(acme)
    response = acme.api.patch(f"{URL}/welcome", {"text": "{% for %}"}, format="json")
    assert_field_error(response, field="text", code="template_syntax")
    assert Template.objects.get().text == WELCOME["text"]


@pytest.mark.parametrize(
    "source", ["{% include 'admin/base.html' %}", "{% load static %}", "{% debug %}"]
)
def test_tags_that_reach_outside_the_template_are_refused_on_save(acme, source):
    response = acme.api.post(URL, {**WELCOME, "text": source}, format="json")
    assert_field_error(response, field="text", code="template_syntax")


def test_a_second_template_with_the_same_name_is_a_conflict(acme):
    create(acme)
    assert_problem(acme.api.post(URL, WELCOME, format="json"), status=409, code="template_exists")


def test_a_template_without_any_body_is_refused(acme):
    response = acme.api.post(URL, {"name": "empty", "subject": "x"}, format="json")
    assert_field_error(response, field="text", code="required")


def test_templates_are_per_client(acme, globex):
    create(acme)
    create(globex)  # the same name is free for another client
    assert_problem(globex.api.delete(f"{URL}/alpha"), status=404, code="template_not_found")
    assert globex.api.delete(f"{URL}/welcome").status_code == 204
    assert acme.api.get(f"{URL}/welcome").status_code == 200
    assert send(globex).status_code == 400  # globex's is gone; acme's is not theirs to use


# -- sending with a template ----------------------------------------------------------------------


def test_a_send_with_a_template_stores_the_rendered_message(acme):
    create(acme)
    response = send(acme)
    assert response.status_code == 202, response.content
    message = Message.objects.get()
    assert message.subject == "Welcome, Ann"
    assert message.text_body == "Hello Ann, your code is 123."
    assert message.html_body == "<p>Hello Ann</p>"
    assert message.template_name == "welcome"


def test_an_update_is_used_by_the_next_send(acme):
    create(acme)
    send(acme)
    acme.api.patch(f"{URL}/welcome", {"subject": "Changed {{ name }}"}, format="json")
    send(acme)
    assert list(Message.objects.order_by("created_at").values_list("subject", flat=True)) == [
        "Welcome, Ann",
        "Changed Ann",
    ]


def test_a_context_missing_a_printed_variable_is_a_400_and_stores_nothing(acme):
    create(acme)
    response = send(acme, context={"name": "Ann"})
    assert_field_error(response, field="context", code="missing_variable")
    assert "code" in response.json()["detail"]
    assert not Message.objects.exists()


def test_every_part_missing_a_variable_is_reported(acme):
    create(acme, html="<p>{{ code }}</p>")
    errors = send(acme, context={"name": "Ann"}).json()["errors"]
    assert [(e["field"], e["code"], e["message"].split(":")[0]) for e in errors] == [
        ("context", "missing_variable", "text"),
        ("context", "missing_variable", "html"),
    ]


def test_an_unknown_template_is_a_400(acme):
    assert_field_error(send(acme), field="template", code="template_not_found")


def test_a_send_may_not_give_both_a_template_and_a_body(acme):
    create(acme)
    assert_field_error(send(acme, text="mine"), field="text", code="template_conflict")


def test_a_context_without_a_template_is_refused(acme):
    payload = message_payload(context={"name": "Ann"})
    response = acme.api.post("/api/v1/messages", payload, format="json")
    assert_field_error(response, field="context", code="invalid")


def test_a_rendered_subject_with_a_line_break_is_refused(acme):
    create(acme, subject="{{ name }}")
    response = send(acme, context={"name": "Ann\r\nBcc: x@example.com", "code": "1"})
    assert_field_error(response, field="template", code="line_break")


def test_a_rendered_body_over_the_limit_is_refused(acme, settings):
    create(acme)
    settings.MAILHUB_MAX_BODY_BYTES = 1024
    response = send(acme, context={"name": "Ann", "code": "x" * 1024})
    assert_field_error(response, field="template", code="max_size")
