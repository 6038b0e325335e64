"""What Mailhub's management commands share: durations, delivery selection, exit codes.

Exit codes (every command): 0 done; 1 error (bad input, nothing found, a service down), reported
on stderr; 2 wrong usage (unknown option, missing argument). Commands that can end in a
partial state use 3 and 4 and say so in their help.
"""

from __future__ import annotations

import argparse
import re
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from accounts.models import Client
from deliveries.models import Priority
from deliveries.selectors import DeliverySelection, deliveries_select
from deliveries.services import OperationResult, chunked

EXIT_PARTIAL = 3
EXIT_TIMEOUT = 4

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``30d``, ``2w`` -> timedelta; anything else is refused."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; write a number and a unit: 90s, 15m, 12h, 30d, 2w"
        )
    value, unit = float(match.group(1)), match.group(2).lower()
    return timedelta(seconds=value * _UNIT_SECONDS[unit])


def parse_uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a message id (a UUID)") from None


def add_selection_arguments(parser: CommandParser, *, statuses: list[str]) -> None:
    """Options naming deliveries, shared by retry, requeue and cancel."""
    group = parser.add_argument_group("which deliveries (all given must match)")
    group.add_argument(
        "--message",
        dest="message_ids",
        action="append",
        type=parse_uuid,
        default=[],
        metavar="UUID",
        help="Deliveries of this message (repeatable).",
    )
    group.add_argument(
        "--delivery",
        dest="delivery_ids",
        action="append",
        type=int,
        default=[],
        metavar="ID",
        help="This delivery (repeatable).",
    )
    if len(statuses) > 1:
        group.add_argument(
            "--status",
            dest="statuses",
            action="append",
            choices=statuses,
            default=[],
            help=f"Only deliveries in this status (repeatable; default: {', '.join(statuses)}).",
        )
    group.add_argument("--domain", default="", help="Recipients at this domain, e.g. example.com.")
    group.add_argument(
        "--older-than",
        type=parse_duration,
        metavar="AGE",
        help="Messages accepted at least AGE ago (90s, 15m, 12h, 30d).",
    )
    group.add_argument(
        "--newer-than",
        type=parse_duration,
        metavar="AGE",
        help="Messages accepted at most AGE ago.",
    )
    group.add_argument("--client", default="", help="Messages of this client (its name).")
    group.add_argument("--priority", choices=[p.value for p in Priority], default="")
    parser.add_argument(
        "--dry-run", action="store_true", help="Say how many deliveries match; change nothing."
    )


def selection_from(options: dict) -> DeliverySelection:
    selection = DeliverySelection(
        message_ids=options["message_ids"],
        delivery_ids=options["delivery_ids"],
        statuses=options.get("statuses") or (),
        domain=options["domain"],
        older_than=options["older_than"],
        newer_than=options["newer_than"],
        client=options["client"],
        priority=options["priority"],
    )
    if selection.is_empty:
        raise CommandError(
            "Name the deliveries: give at least one of --message, --delivery, --status, "
            "--domain, --older-than, --newer-than, --client or --priority."
        )
    return selection


def client_named(name: str) -> Client:
    client = Client.objects.filter(name=name).first()
    if client is None:
        raise CommandError(f"No client named {name!r}.")
    return client


def progress(*, total: int | None, unit: str, description: str) -> tqdm:
    """A progress bar on stderr, shown only when stderr is a terminal."""
    return tqdm(total=total, unit=unit, desc=description, disable=None, dynamic_ncols=True)


class DeliveryOperationCommand(BaseCommand):
    """retry, requeue and cancel: select deliveries by options, run one operation on them in
    chunks of ``CHUNK`` (one transaction each), report what changed."""

    CHUNK = 1000
    statuses: list[str]
    verb: str  # "retried"
    operation: Callable[..., OperationResult]

    def add_arguments(self, parser: CommandParser) -> None:
        add_selection_arguments(parser, statuses=self.statuses)

    def handle(self, *args, **options) -> None:
        selection = selection_from(options)
        ids = list(
            deliveries_select(selection=selection, allowed=self.statuses)
            .order_by("id")
            .values_list("id", flat=True)
        )
        if options["dry_run"]:
            self.stdout.write(f"{len(ids)} deliveries match; would be {self.verb} (dry run).")
            return
        result = OperationResult()
        with progress(total=len(ids), unit="delivery", description=self.verb) as bar:
            for chunk in chunked(ids, self.CHUNK):
                result.add(self.operation(delivery_ids=chunk))
                bar.update(len(chunk))
        line = (
            f"{result.changed} of {len(ids)} matching deliveries {self.verb} "
            f"({len(result.messages)} messages)."
        )
        if result.skipped:
            line += f" {result.skipped} had moved on meanwhile and were left as they are."
        self.stdout.write(line)
