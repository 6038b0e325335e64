"""`bulk_send FILE.csv --template NAME`: one message per row, rendered from the client's
template, resumable without duplicates."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from api.management.commands import bulk_send
from api.management.commands.bulk_send import file_fingerprint
from deliveries.models import Message, Template

pytestmark = pytest.mark.integration

HEADER = "email,name,code\n"
ROWS = [f"user{i}@example.com,User {i},C-{i:03d}\n" for i in range(1, 7)]


@pytest.fixture
def template(acme) -> Template:
    return Template.objects.create(
        client=acme.client,
        name="welcome",
        subject="Welcome {{ name }}",
        text="Hello {{ name }}, your code is {{ code }}.",
        html="<p>Hello {{ name }}, your code is <b>{{ code }}</b>.</p>",
    )


def write(tmp_path: Path, rows: list[str], name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


def bulk(path: Path, *extra: str, stdout: StringIO | None = None) -> str:
    out = stdout or StringIO()
    call_command(
        "bulk_send",
        str(path),
        "--template",
        "welcome",
        "--client",
        "acme",
        "--from",
        "Shop <no-reply@shop.test>",
        "--name-column",
        "name",
        *extra,
        stdout=out,
        stderr=StringIO(),
    )
    return out.getvalue()


def sent_rows() -> list[int]:
    return sorted(int(m.metadata["bulk_row"]) for m in Message.objects.all())


def test_every_row_becomes_one_rendered_message(tmp_path, template):
    path = write(tmp_path, ROWS)

    text = bulk(path, "--tag", "spring")

    assert "6 rows accepted, 0 skipped (accepted before), 0 refused, of 6." in text
    assert sent_rows() == [1, 2, 3, 4, 5, 6]
    third = Message.objects.get(metadata__bulk_row="3")
    assert third.subject == "Welcome User 3"
    assert third.text_body == "Hello User 3, your code is C-003."
    assert third.html_body == "<p>Hello User 3, your code is <b>C-003</b>.</p>"
    assert third.template_name == "welcome" and third.priority == "low"
    delivery = third.deliveries.get()
    assert (delivery.address, delivery.name) == ("user3@example.com", "User 3")
    campaign = file_fingerprint(path.read_bytes())
    assert set(third.tags) == {f"bulk:{campaign}", "spring"}


def test_running_it_again_sends_nothing_twice(tmp_path, template):
    path = write(tmp_path, ROWS)
    bulk(path)

    text = bulk(path)

    assert "0 rows accepted, 6 skipped (accepted before), 0 refused, of 6." in text
    assert Message.objects.count() == 6


def test_an_interrupted_run_is_resumed_where_it_stopped(tmp_path, template, monkeypatch):
    path = write(tmp_path, ROWS)
    real_accept = bulk_send.messages_accept
    batches = []

    def accept_then_interrupt(**kwargs):
        if batches:
            raise KeyboardInterrupt  # Ctrl-C while the second batch is being accepted
        batches.append(len(kwargs["drafts"]))
        return real_accept(**kwargs)

    monkeypatch.setattr(bulk_send, "messages_accept", accept_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        bulk(path, "--batch-size", "2")
    assert sent_rows() == [1, 2]  # the first batch, whole
    monkeypatch.setattr(bulk_send, "messages_accept", real_accept)

    text = bulk(path, "--batch-size", "2")

    assert "Campaign " in text and "6 rows, 2 accepted before" in text
    assert "4 rows accepted, 2 skipped (accepted before), 0 refused, of 6." in text
    assert sent_rows() == [1, 2, 3, 4, 5, 6]


def test_a_campaign_can_be_continued_from_a_longer_file(tmp_path, template):
    bulk(write(tmp_path, ROWS[:3], "part.csv"), "--campaign", "spring-2026")

    bulk(write(tmp_path, ROWS, "full.csv"), "--campaign", "spring-2026")

    assert sent_rows() == [1, 2, 3, 4, 5, 6]
    assert Message.objects.filter(tags__contains=["bulk:spring-2026"]).count() == 6


def test_refused_rows_are_listed_exit_3_and_can_be_sent_after_fixing_them(tmp_path, template):
    rows = list(ROWS)
    rows[1] = "not-an-address,User 2,C-002\n"
    rows[4] = "user5@example.com,User 5\n"  # no code: the template prints a missing variable
    path = write(tmp_path, rows)
    out = StringIO()

    with pytest.raises(CommandError, match="2 rows refused") as error:
        bulk(path, stdout=out)

    assert error.value.returncode == 3
    text = out.getvalue()
    assert "4 rows accepted, 0 skipped (accepted before), 2 refused, of 6." in text
    assert "row 2: to[0]:" in text and "row 5: context:" in text and "code" in text
    assert sent_rows() == [1, 3, 4, 6]

    campaign = file_fingerprint(path.read_bytes())
    fixed = write(tmp_path, ROWS, "fixed.csv")
    bulk(fixed, "--campaign", campaign)

    assert sent_rows() == [1, 2, 3, 4, 5, 6]


def test_a_dry_run_checks_every_row_and_accepts_none(tmp_path, template):
    assert "6 rows would be accepted (dry run), 0 skipped" in bulk(
        write(tmp_path, ROWS), "--dry-run"
    )
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--template", "nope", "--client", "acme"], "acme has no template named 'nope'"),
        (["--template", "welcome", "--client", "nobody"], "No client named 'nobody'"),
        (["--template", "welcome", "--client", "acme", "--to-column", "mail"], "No column 'mail'"),
    ],
)
def test_a_wrong_template_client_or_column_fails_before_sending(tmp_path, template, args, message):
    with pytest.raises(CommandError, match=message) as error:
        call_command(
            "bulk_send",
            str(write(tmp_path, ROWS)),
            "--from",
            "no-reply@shop.test",
            *args,
            stdout=StringIO(),
            stderr=StringIO(),
        )
    assert error.value.returncode == 1
    assert not Message.objects.exists()
