"""The email backend's translation of Django messages into drafts, validated as the REST API
validates them."""

from email.mime.image import MIMEImage

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.utils.translation import gettext_lazy
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.backends import EmailValidator, InvalidEmail, email_to_draft


def test_a_django_message_becomes_a_draft_with_every_part(settings):
    settings.MAILHUB_EMAIL_BACKEND_PRIORITY = "low"
    email = EmailMultiAlternatives(
        subject="Invoice 42",
        body="See the attachment.",
        from_email="Billing <billing@shop.test>",
        to=["Ann <ann@example.com>"],
        cc=["carl@example.com"],
        bcc=["audit@shop.test"],
        reply_to=["help@shop.test"],
        headers={"X-Campaign": "invoices", "X-Mailhub-Tags": "billing, monthly"},
    )
    email.attach_alternative("<p>See the <b>attachment</b>.</p>", "text/html")
    email.attach("invoice.pdf", b"%PDF-1.4 binary\x00\xff", "application/pdf")
    logo = MIMEImage(b"\x89PNG\r\n\x1a\n fake", "png")
    logo.add_header("Content-ID", "<logo@shop.test>")
    email.attach(logo)

    draft = email_to_draft(email)

    assert draft.sender == "Billing <billing@shop.test>"
    assert [(r.address, r.name, r.kind) for r in draft.recipients] == [
        ("ann@example.com", "Ann", "to"),
        ("carl@example.com", "", "cc"),
        ("audit@shop.test", "", "bcc"),
    ]
    assert list(draft.reply_to) == ["help@shop.test"]
    assert (draft.subject, draft.text) == ("Invoice 42", "See the attachment.")
    assert draft.html == "<p>See the <b>attachment</b>.</p>"
    assert dict(draft.headers) == {"X-Campaign": "invoices"}
    assert list(draft.tags) == ["billing", "monthly"]
    assert draft.priority == "low"
    pdf, png = draft.attachments
    assert (pdf.filename, pdf.content_type, pdf.content) == (
        "invoice.pdf",
        "application/pdf",
        b"%PDF-1.4 binary\x00\xff",
    )
    assert (png.content_type, png.content_id, png.content) == (
        "image/png",
        "logo@shop.test",
        b"\x89PNG\r\n\x1a\n fake",
    )


def test_the_priority_header_wins_over_the_setting_and_is_not_sent(settings):
    settings.MAILHUB_EMAIL_BACKEND_PRIORITY = "low"
    email = EmailMessage(
        "Code",
        "123456",
        "no-reply@shop.test",
        ["ann@example.com"],
        headers={"x-mailhub-priority": "HIGH", "Message-ID": "<mine@shop.test>"},
    )

    draft = email_to_draft(email)

    assert draft.priority == "high"
    assert dict(draft.headers) == {}  # Mailhub writes its own Message-ID


def test_an_html_only_message_keeps_its_body_as_html():
    email = EmailMessage("Hi", "<p>hi</p>", "no-reply@shop.test", ["ann@example.com"])
    email.content_subtype = "html"

    draft = email_to_draft(email)

    assert (draft.text, draft.html) == ("", "<p>hi</p>")


def test_a_lazily_translated_subject_and_body_are_sent_as_their_text():
    email = EmailMessage(
        gettext_lazy("Hi"), gettext_lazy("Hello"), "no-reply@shop.test", ["ann@example.com"]
    )

    draft = email_to_draft(email)

    assert (draft.subject, draft.text) == ("Hi", "Hello")
    assert type(draft.subject) is str and type(draft.text) is str


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"to": ["not an address"]}, "to[0]"),
        ({"from_email": "nobody"}, "from"),
        ({"headers": {"X-Mailhub-Priority": "urgent"}}, "priority"),
        ({"headers": {"Bad Header": "x"}}, "headers"),
    ],
)
def test_a_message_the_api_would_refuse_is_refused_naming_the_field(changes, field):
    fields = {
        "subject": "Code",
        "body": "123456",
        "from_email": "no-reply@shop.test",
        "to": ["ann@example.com"],
    }
    fields.update(changes)

    with pytest.raises(InvalidEmail, match=rf"{field.replace('[', '.').replace(']', '.')}"):
        email_to_draft(EmailMessage(**fields))


def _with_attachments(*parts) -> EmailMessage:
    email = EmailMessage("Files", "See attached.", "no-reply@shop.test", ["ann@example.com"])
    for part in parts:
        if isinstance(part, MIMEImage):
            email.attach(part)
        else:
            email.attach(*part)
    return email


@pytest.mark.parametrize(
    ("limits", "parts", "field"),
    [
        ({"MAILHUB_MAX_ATTACHMENTS": 1}, [("a.txt", b"a", "text/plain")] * 2, "attachments:"),
        (
            {"MAILHUB_MAX_ATTACHMENT_BYTES": 3},
            [("a.txt", b"a", "text/plain"), ("b.txt", b"four", "text/plain")],
            r"attachments\[1\].content:",
        ),
        (
            {"MAILHUB_MAX_ATTACHMENTS_BYTES": 5},
            [("a.txt", b"abc", "text/plain"), ("b.txt", b"def", "text/plain")],
            "attachments:",
        ),
    ],
)
def test_attachments_are_held_to_the_api_s_limits(settings, limits, parts, field):
    for name, value in limits.items():
        setattr(settings, name, value)
    with pytest.raises(InvalidEmail, match=field):
        email_to_draft(_with_attachments(*parts))


def test_two_inline_parts_with_one_content_id_are_refused():
    logos = []
    for _ in range(2):
        logo = MIMEImage(b"\x89PNG\r\n\x1a\n fake", "png")
        logo.add_header("Content-ID", "<logo@shop.test>")
        logos.append(logo)
    with pytest.raises(InvalidEmail, match="its own content_id"):
        email_to_draft(_with_attachments(*logos))


@pytest.mark.parametrize(
    "part",
    [
        ("bad\nname.txt", b"x", "text/plain"),
        ("a.txt", b"x", "text/plain\r\nBcc: x@example.com"),
    ],
)
def test_an_attachment_whose_headers_cannot_be_written_is_refused_at_once(part):
    with pytest.raises(InvalidEmail, match=r"attachments\[0\]"):
        email_to_draft(_with_attachments(part))


def test_unlike_the_api_a_part_may_have_no_name_and_be_an_attached_message():
    forwarded = EmailMessage("Original", "Hello", "ann@example.com", ["bob@example.com"])
    logo = MIMEImage(b"\x89PNG\r\n\x1a\n fake", "png")
    logo.add_header("Content-ID", "<logo@shop.test>")
    email = _with_attachments(logo, (None, forwarded, "message/rfc822"))

    draft = email_to_draft(email)

    assert [(a.filename, a.content_type) for a in draft.attachments] == [
        ("", "image/png"),
        ("", "message/rfc822"),
    ]


_SENDERS = ["Shop <no-reply@shop.test>", "no-reply@shop.test", "Shop <bad address>", "\u2028@x"]
_LISTS = [[], ["carl@example.com"], ["not an address"], ["a@example.com\r\nBcc: x@evil.test"]]


def _outcome(email, validator=None):
    try:
        return email_to_draft(email, validator=validator)
    except InvalidEmail as exc:
        return str(exc)


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_SENDERS),
            st.sampled_from(_LISTS),
            st.sampled_from(_LISTS),
            st.sampled_from(["", "low", "urgent", "HIGH"]),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_call_of_many_messages_validates_each_as_it_would_be_validated_alone(emails):
    """The backend validates what one call's messages share once (EmailValidator); each
    message's draft, or its refusal, is still exactly what validating it alone gives."""
    shared = EmailValidator()
    for sender, cc, reply_to, priority in emails:
        headers = {"X-Mailhub-Priority": priority} if priority else {}
        email = EmailMessage(
            "Hi", "Body", sender, ["ann@example.com"], cc=cc, reply_to=reply_to, headers=headers
        )
        assert _outcome(email, shared) == _outcome(email)


@pytest.mark.parametrize(
    ("header", "expected"), [(None, None), ("yes", True), ("No", False), (" true ", True)]
)
def test_the_unsubscribe_header_sets_one_click_unsubscribe_and_is_not_sent(header, expected):
    headers = {} if header is None else {"X-Mailhub-Unsubscribe": header}
    email = EmailMessage("Hi", "Body", "shop@shop.test", ["ann@example.com"], headers=headers)

    draft = email_to_draft(email)

    assert draft.unsubscribe is expected
    assert "X-Mailhub-Unsubscribe" not in draft.headers


@pytest.mark.parametrize("header", ["maybe", "", "yes\r\nBcc: x@evil.test", "\x00"])
def test_an_unsubscribe_header_that_is_not_yes_or_no_is_refused(header):
    email = EmailMessage(
        "Hi",
        "Body",
        "shop@shop.test",
        ["ann@example.com"],
        headers={"X-Mailhub-Unsubscribe": header},
    )
    with pytest.raises(InvalidEmail, match="X-Mailhub-Unsubscribe"):
        email_to_draft(email)
