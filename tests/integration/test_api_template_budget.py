"""The template budget through the API: a template too expensive to render with its context is a
400 `template_too_expensive` on `template`, answered quickly, for a single send and for each
message of a batch; a template too deep or too large to compile is refused when saved."""

from __future__ import annotations

import time

import pytest

from deliveries.models import Message, Template
from tests.integration.test_api_input import assert_field_error

pytestmark = pytest.mark.integration

CUBIC = "{% for a in l %}{% for b in l %}{% for c in l %}x{% endfor %}{% endfor %}{% endfor %}"
HOSTILE_CONTEXT = {"l": list(range(200))}
GENEROUS_SECONDS = 5.0


def hostile_send(**overrides) -> dict:
    payload = {
        "from": "no-reply@shop.test",
        "to": ["ann@example.com"],
        "template": "cubic",
        "context": HOSTILE_CONTEXT,
    }
    payload.update(overrides)
    return payload


def test_a_send_whose_template_is_too_expensive_is_a_quick_400(acme):
    Template.objects.create(client=acme.client, name="cubic", subject="Hi", text=CUBIC)
    started = time.perf_counter()
    response = acme.api.post("/api/v1/messages", hostile_send(), format="json")
    assert time.perf_counter() - started < GENEROUS_SECONDS
    assert_field_error(response, field="template", code="template_too_expensive")
    assert "text:" in response.json()["errors"][0]["message"]
    assert not Message.objects.exists()


def test_each_message_of_a_batch_is_refused_alone(acme):
    Template.objects.create(client=acme.client, name="cubic", subject="Hi", text=CUBIC)
    cheap = {"l": [1, 2]}
    messages = [hostile_send(), hostile_send(context=cheap), hostile_send()]
    started = time.perf_counter()
    response = acme.api.post("/api/v1/messages/batch", {"messages": messages}, format="json")
    assert time.perf_counter() - started < GENEROUS_SECONDS
    assert response.status_code == 207, response.content
    results = response.json()["results"]
    assert [r["error"]["errors"][0]["code"] for r in (results[0], results[2])] == [
        "template_too_expensive",
        "template_too_expensive",
    ]
    assert Message.objects.get().text_body == "x" * 8


@pytest.mark.parametrize(
    "html",
    [
        "{% if x %}" * 40 + "{% endif %}" * 40,
        "{{ x" + ".y" * 2000 + " }}",
    ],
)
def test_a_template_too_deep_or_with_a_too_long_tag_is_refused_when_saved(acme, html):
    payload = {"name": "deep", "text": "x", "html": html}
    response = acme.api.post("/api/v1/templates", payload, format="json")
    assert_field_error(response, field="html", code="template_too_expensive")
    assert not Template.objects.exists()


def test_a_template_of_unclosed_braces_is_saved_quickly(acme):
    # Django's own lexer takes minutes over this; it is plain text.
    started = time.perf_counter()
    payload = {"name": "braces", "text": "{{" * 200_000}
    response = acme.api.post("/api/v1/templates", payload, format="json")
    assert time.perf_counter() - started < GENEROUS_SECONDS
    assert response.status_code == 201, response.content


def test_a_batch_of_hostile_templates_stops_rendering_once_its_budget_is_used(acme):
    # Each render may use 0.1 s; the batch as much as ten of them together, not 500 x 0.1 s.
    Template.objects.create(client=acme.client, name="cubic", subject="Hi", text=CUBIC)
    messages = [hostile_send() for _ in range(60)] + [
        {"from": "no-reply@shop.test", "to": ["ann@example.com"], "subject": "s", "text": "t"}
    ]
    started = time.process_time()
    response = acme.api.post("/api/v1/messages/batch", {"messages": messages}, format="json")
    assert time.process_time() - started < 3.0  # 60 renders at the limit would take 6 s
    assert response.status_code == 207, response.content
    results = response.json()["results"]
    codes = [r["error"]["errors"][0]["code"] for r in results[:60]]
    assert codes == ["template_too_expensive"] * 60
    assert any("used up their CPU budget" in r["error"]["detail"] for r in results[:60])
    assert results[60]["status"] == "queued"  # a message without a template is not held up
