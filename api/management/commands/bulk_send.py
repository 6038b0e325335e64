"""``bulk_send FILE.csv --template NAME``: a way mail enters Mailhub, beside the validator it
shares with the REST API (``MessageCreateSerializer``).

One bulk send is a "campaign": by default the SHA-256 of the file, so running the same command
on the same file again is the same campaign. Every message of a campaign carries the tag
`bulk:<campaign>` (GIN-indexed) and its row number in metadata; before sending, the rows of the
campaign already accepted are looked up and skipped. Rows are accepted in batches, each in one
transaction, so an interruption leaves whole batches accepted or not at all: a rerun sends the
rest and nothing twice.
"""

import csv
import hashlib
import io
import re
from email.utils import formataddr, parseaddr
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from accounts.models import Client
from api.errors import validation_summary
from api.serializers.intake import MessageCreateSerializer, TemplateLookup
from deliveries.management.commands._common import EXIT_PARTIAL, client_named, progress
from deliveries.models import Message, Priority
from deliveries.services import MessageDraft, messages_accept
from domains.errors import SenderDomainNotVerified
from domains.selectors import sender_domain_problem

_CAMPAIGN = re.compile(r"^[A-Za-z0-9_.-]{1,59}$")
#: Refused rows listed in full; the rest are counted.
SHOWN_PROBLEMS = 20


def file_fingerprint(content: bytes) -> str:
    """The default campaign of a bulk-send file: the start of the SHA-256 of its bytes."""
    return hashlib.sha256(content).hexdigest()[:32]


def bulk_tag(campaign: str) -> str:
    return f"bulk:{campaign}"


def bulk_rows_done(*, client: Client, campaign: str) -> set[int]:
    """Row numbers of this campaign already accepted for this client (tags index)."""
    messages = Message.objects.filter(client=client, tags__contains=[bulk_tag(campaign)])
    return {int(row) for row in messages.values_list("metadata__bulk_row", flat=True) if row}


class Command(BaseCommand):
    help = (
        "Send one message per row of a CSV file, rendered from one of the client's templates "
        "with the row as its context (every column a variable). The header row names the "
        "columns; the recipient is in --to-column. "
        "Resumable without duplicates: the run is a campaign (by default the file's SHA-256); "
        "each message carries the campaign's tag and its row number, rows are accepted in "
        "batches of one transaction each, and a rerun skips the rows already accepted. After "
        "fixing refused rows in place, rerun with --campaign (printed at the start) to send just "
        "them. Exit codes: 0 every row accepted (now or before); 1 error (file, client, template "
        "or another run of the campaign); 2 usage; 3 some rows refused (listed), the rest "
        "accepted."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, metavar="FILE.csv")
        parser.add_argument("--template", required=True, help="The template's name.")
        parser.add_argument("--client", required=True, help="The client it is sent as (name).")
        parser.add_argument(
            "--from", dest="sender", required=True, help="The sender, e.g. 'Shop <no@shop.test>'."
        )
        parser.add_argument("--to-column", default="email", help="Default: email.")
        parser.add_argument(
            "--name-column", default="", help="A column with the recipient's display name."
        )
        parser.add_argument("--priority", choices=[p.value for p in Priority], default=Priority.LOW)
        parser.add_argument(
            "--tag", dest="tags", action="append", default=[], help="An extra tag (repeatable)."
        )
        parser.add_argument(
            "--campaign",
            default="",
            help="Continue this campaign instead of the file's own (the row numbers must not "
            "have moved).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=100,
            metavar="N",
            help="Messages accepted per transaction (default 100).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Check every row; accept nothing."
        )

    def handle(self, *args, **options):
        client = client_named(options["client"])
        try:
            content = options["file"].read_bytes()
            rows = list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"), newline="")))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc}") from None
        campaign = options["campaign"] or file_fingerprint(content)
        if not _CAMPAIGN.match(campaign):
            raise CommandError("--campaign is 1 to 59 of A-Z a-z 0-9 _ . -")
        if rows and options["to_column"] not in rows[0]:
            raise CommandError(
                f"No column {options['to_column']!r}; the file has: {', '.join(rows[0])}."
            )
        templates = TemplateLookup(client)
        if templates(options["template"]) is None:
            raise CommandError(f"{client.name} has no template named {options['template']!r}.")
        sender_address = parseaddr(options["sender"])[1]
        if problem := sender_domain_problem(client_id=client.id, address=sender_address):
            raise CommandError(f"--from {options['sender']}: {problem}")
        with _campaign_lock(campaign):
            done = bulk_rows_done(client=client, campaign=campaign)
            self.stdout.write(
                f"Campaign {campaign}: {len(rows)} rows, {len(done)} accepted before "
                "(resume or continue it with --campaign)."
            )
            accepted, refused = self._send(rows, done, campaign, client, templates, options)
        verb = "would be accepted (dry run)" if options["dry_run"] else "accepted"
        self.stdout.write(
            f"{accepted} rows {verb}, {len(done)} skipped (accepted before), "
            f"{len(refused)} refused, of {len(rows)}."
        )
        for number, problem in refused[:SHOWN_PROBLEMS]:
            self.stdout.write(f"  row {number}: {problem}")
        if len(refused) > SHOWN_PROBLEMS:
            self.stdout.write(f"  ... and {len(refused) - SHOWN_PROBLEMS} more")
        if refused:
            raise CommandError(
                f"{len(refused)} rows refused; fix them in place and rerun with "
                f"--campaign {campaign}.",
                returncode=EXIT_PARTIAL,
            )

    def _send(
        self,
        rows: list[dict[str, str]],
        done: set[int],
        campaign: str,
        client: Client,
        templates: TemplateLookup,
        options: dict[str, Any],
    ) -> tuple[int, list[tuple[int, str]]]:
        accepted = 0
        refused: list[tuple[int, str]] = []
        drafts: list[MessageDraft] = []
        with progress(total=len(rows), unit="row", description="sending") as bar:

            def flush() -> None:
                # One transaction per batch: an interruption leaves it all accepted or none.
                nonlocal accepted
                if drafts and not options["dry_run"]:
                    try:
                        messages_accept(client=client, drafts=drafts)
                    except SenderDomainNotVerified as refused:  # suspended during the run
                        raise CommandError(f"--from {options['sender']}: {refused}") from None
                accepted += len(drafts)
                bar.update(len(drafts))
                drafts.clear()

            bar.update(len(done))
            for number, row in enumerate(rows, start=1):
                if number in done:
                    continue
                serializer = MessageCreateSerializer(
                    data=self._payload(number, row, campaign, options),
                    context={"templates": templates},
                )
                if not serializer.is_valid():
                    refused.append((number, validation_summary(serializer.errors)))
                    bar.update(1)
                    continue
                drafts.append(serializer.to_draft())
                if len(drafts) >= max(options["batch_size"], 1):
                    flush()
            flush()
        return accepted, refused

    @staticmethod
    def _payload(number: int, row: dict, campaign: str, options: dict) -> dict:
        # csv leaves None in a short row's missing cells and puts a long row's extra cells in a
        # list under the key None: both are left out, so a template printing them refuses the
        # row (an empty cell is an empty string and fine).
        context = {k: v for k, v in row.items() if isinstance(k, str) and v is not None}
        address = context.get(options["to_column"], "").strip()
        name = context.get(options["name_column"], "").strip() if options["name_column"] else ""
        return {
            "from": options["sender"],
            "to": [formataddr((name, address)) if name else address],
            "template": options["template"],
            "context": context,
            "priority": options["priority"],
            "tags": [bulk_tag(campaign), *options["tags"]],
            "metadata": {"bulk_campaign": campaign, "bulk_row": number},
        }


class _campaign_lock:
    """A Postgres session lock: two runs of one campaign at once would both send the rows that
    neither had accepted yet when they started."""

    def __init__(self, campaign: str) -> None:
        self.key = f"mailhub.bulk_send:{campaign}"

    def __enter__(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [self.key])
            if not cursor.fetchone()[0]:
                raise CommandError("Another bulk_send of this campaign is running.")

    def __exit__(self, *exc_info) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [self.key])
