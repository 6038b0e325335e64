"""Clients' templates: what compiles, what renders, what is refused, and the compiled cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count

import pytest

from deliveries.templating import (
    TemplateProblem,
    compiled_templates,
    template_check,
    template_render,
)
from mailhub.errors import MailhubError

_ids = count(1)


@dataclass
class FakeTemplate:
    """The fields of ``deliveries.models.Template`` that rendering reads."""

    subject: str = ""
    text: str = ""
    html: str = ""
    id: int = field(default_factory=lambda: next(_ids))
    updated_at: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))


def render(context=None, **parts):
    return template_render(template=FakeTemplate(**parts), context=context or {})


def problems(context=None, **parts) -> dict:
    with pytest.raises(TemplateProblem) as refused:
        render(context, **parts)
    return {part: code for part, (code, _) in refused.value.errors.items()}


def test_variables_loops_and_filters_render_in_every_part():
    rendered = render(
        {"name": "ann", "items": [{"n": "pen"}, {"n": "ink"}], "total": 3.14159},
        subject="Hello {{ name|title }}",
        text="{% for item in items %}{{ item.n }}{% if not forloop.last %}, {% endif %}"
        "{% endfor %} = {{ total|floatformat:2 }}",
        html="<p>{{ name|upper }}</p>",
    )
    assert rendered.subject == "Hello Ann"
    assert rendered.text == "pen, ink = 3.14"
    assert rendered.html == "<p>ANN</p>"


def test_html_is_autoescaped_and_subject_and_text_are_not():
    rendered = render(
        {"name": "<b>Tom & Jerry</b>"},
        subject="{{ name }}",
        text="{{ name }}",
        html="<p>{{ name }}</p>",
    )
    assert rendered.subject == "<b>Tom & Jerry</b>"
    assert rendered.text == "<b>Tom & Jerry</b>"
    assert rendered.html == "<p>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>"


def test_a_printed_variable_missing_from_the_context_is_refused_and_named():
    with pytest.raises(TemplateProblem) as refused:
        render({"name": "Ann"}, subject="Hi {{ name }}", text="Code: {{ code }}")
    assert list(refused.value.errors) == ["text"]
    code, message = refused.value.errors["text"]
    assert code == "missing_variable"
    assert "code" in message


def test_a_missing_attribute_inside_a_loop_is_refused():
    assert problems(
        {"items": [{"n": 1}, {}]}, text="{% for i in items %}{{ i.n }}{% endfor %}"
    ) == {"text": "missing_variable"}


def test_a_filter_argument_missing_from_the_context_is_refused_and_named():
    # Django raises VariableDoesNotExist out of the render for it (a 500, before).
    with pytest.raises(TemplateProblem) as refused:
        render({"items": ["a", "b"]}, text="{{ items|join:separator }}")
    code, message = refused.value.errors["text"]
    assert code == "missing_variable"
    assert "separator" in message


@pytest.mark.parametrize(
    "text",
    [
        '{{ nickname|default:"friend" }}',
        "{% if nickname %}{{ nickname }}{% else %}friend{% endif %}",
        "{% firstof nickname 'friend' %}",
        "{% for x in nothing %}{{ x }}{% empty %}friend{% endfor %}",
    ],
)
def test_a_missing_variable_is_fine_where_the_template_handles_it(text):
    assert render({}, text=text).text == "friend"


@pytest.mark.parametrize(
    "source",
    [
        "{% load static %}",
        "{% include 'admin/base.html' %}",
        "{% extends 'admin/base.html' %}",
        "{% url 'admin:index' %}",
        "{% debug %}",
        "{% csrf_token %}",
        "{% lorem 999999 w %}",
        "{{ name|center:'999999999' }}",
        "{{ name|stringformat:'999999999s' }}",
        "{{ name.__class__ }}",
        "{% if %}",
        "{{ name|nosuchfilter }}",
    ],
)
def test_tags_and_filters_that_reach_outside_or_blow_up_do_not_compile(source):
    with pytest.raises(TemplateProblem) as refused:
        template_check(subject="", text=source, html="")
    assert refused.value.errors == {"text": ("template_syntax", refused.value.errors["text"][1])}
    assert refused.value.errors["text"][1].startswith("Template syntax error")


def test_a_syntax_error_names_each_part_that_has_one():
    with pytest.raises(TemplateProblem) as refused:
        template_check(subject="{{ ok }}", text="{% for %}", html="{% if x %}")
    assert set(refused.value.errors) == {"text", "html"}


def test_a_filter_failing_on_its_input_is_a_render_error_not_an_exception():
    assert problems({"n": 5}, text="{{ n|divisibleby:0 }}") == {"text": "render_error"}


def test_floatformat_refuses_a_huge_precision():
    assert problems({"n": 1}, text="{{ n|floatformat:100000 }}") == {"text": "render_error"}
    assert render({"n": 1}, text="{{ n|floatformat:20 }}").text == "1." + "0" * 20


def test_a_template_cannot_change_the_context_the_next_part_sees():
    rendered = render({"d": {"a": 1}}, subject="{{ d.clear }}x", text="{{ d.a }}")
    assert rendered.text == "1"


def test_a_compiled_template_is_reused_until_the_template_changes():
    template = FakeTemplate(subject="Hi {{ name }}", text="x")
    before = compiled_templates.compilations
    for name in ("Ann", "Bob", "Cy"):
        template_render(template=template, context={"name": name})
    assert compiled_templates.compilations == before + 1

    template.subject = "Hello {{ name }}"
    template.updated_at = datetime(2026, 1, 2, tzinfo=UTC)
    assert template_render(template=template, context={"name": "Ann"}).subject == "Hello Ann"
    assert compiled_templates.compilations == before + 2


# -- which input is at fault ---------------------------------------------------------------------


def test_a_template_that_does_not_compile_blames_each_part_given():
    with pytest.raises(TemplateProblem) as refused:
        template_check(subject="{{ ok }}", text="{% for %}", html="")
    assert not refused.value.rendering
    [(code, message)] = refused.value.by_input()["text"]
    assert list(refused.value.by_input()) == ["text"]
    assert code == "template_syntax" and message.startswith("Template syntax error")


def test_rendering_blames_the_context_for_a_missing_variable_and_the_template_for_the_rest():
    with pytest.raises(TemplateProblem) as refused:
        render({"n": 5}, subject="{{ who }}", text="{{ n|divisibleby:0 }}", html="{{ who }}")
    assert refused.value.rendering
    inputs = refused.value.by_input()
    assert [(code, message.split(":")[0]) for code, message in inputs["context"]] == [
        ("missing_variable", "subject"),
        ("missing_variable", "html"),
    ]
    assert [(code, message.split(":")[0]) for code, message in inputs["template"]] == [
        ("render_error", "text")
    ]


def test_a_stored_template_that_no_longer_compiles_is_the_template_s_fault_when_rendering():
    with pytest.raises(TemplateProblem) as refused:
        render({}, text="{% for %}")
    assert refused.value.rendering
    assert [code for code, _ in refused.value.by_input()["template"]] == ["template_syntax"]


def test_a_template_problem_is_a_mailhub_error():
    assert issubclass(TemplateProblem, MailhubError)
    assert TemplateProblem({"text": ("template_syntax", "bad")}).status == 400
