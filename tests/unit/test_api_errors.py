"""Domain errors answered by the API's one exception handler, in the problem shape."""

import pytest
from rest_framework import exceptions

from api.errors import problem_exception_handler
from deliveries.templating import TemplateProblem, template_check, template_render


def answer(exc: Exception) -> tuple[int, dict]:
    response = problem_exception_handler(exc, {})
    assert response is not None
    return response.status_code, response.data


def test_a_template_that_does_not_compile_is_a_validation_error_naming_each_part():
    with pytest.raises(TemplateProblem) as refused:
        template_check(subject="{{ ok }}", text="{% for %}", html="{% if x %}")

    status, body = answer(refused.value)

    assert status == 400
    assert body["code"] == "validation_error"
    assert [(e["field"], e["code"]) for e in body["errors"]] == [
        ("text", "template_syntax"),
        ("html", "template_syntax"),
    ]
    assert body["detail"].startswith("text: Template syntax error")


class _Stored:
    id = -1
    updated_at = None
    subject = "Hi {{ name }}"
    text = "{{ n|divisibleby:0 }}"
    html = ""


def test_a_template_that_does_not_render_names_the_template_or_the_context():
    with pytest.raises(TemplateProblem) as refused:
        template_render(template=_Stored(), context={"n": 5})

    status, body = answer(refused.value)

    assert status == 400
    assert body["code"] == "validation_error"
    assert [(e["field"], e["code"], e["message"].split(":")[0]) for e in body["errors"]] == [
        ("context", "missing_variable", "subject"),
        ("template", "render_error", "text"),
    ]


def test_an_api_error_whose_detail_has_no_code_is_answered_with_the_generic_code():
    status, body = answer(exceptions.PermissionDenied(exceptions.ErrorDetail("Not yours.")))

    assert status == 403
    assert (body["code"], body["type"], body["detail"]) == (
        "error",
        "https://mailhub.dev/problems/error",
        "Not yours.",
    )
