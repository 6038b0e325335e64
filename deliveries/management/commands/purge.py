from django.core.management.base import BaseCommand
from django.utils import timezone

from accounts.idempotency import idempotency_purge
from deliveries.management.commands._common import parse_duration, progress
from deliveries.metrics import count_or_estimate
from deliveries.selectors import history_partitions_ending_by, messages_purgeable
from deliveries.services import HistoryPurge, history_purge, messages_purge


class Command(BaseCommand):
    help = (
        "Retention cleanup. First the history older than AGE: events and attempts (with the "
        "webhook notifications of those events and the log of webhook requests), whatever "
        "their message: each day's partition that is entirely older is detached and dropped "
        "whole, older rows of the day that straddles the cut-off are deleted one by one. Then "
        "finished messages (delivered, bounced, failed, cancelled, suppressed) accepted more "
        "than AGE ago, with their deliveries, attachments and later history, in batches (one "
        "short transaction each), with a progress bar; messages with a delivery still waiting "
        "are never deleted. With --client, only that client's finished messages and their "
        "history are deleted (partitions hold every client's history and stay). Safe to "
        "interrupt and run again. Exit codes: 0 done (also when nothing was old enough), 1 "
        "error, 2 usage."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=parse_duration,
            required=True,
            metavar="AGE",
            help="Delete what is at least AGE old: 30d, 12h, 2w ...",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=1000,
            metavar="N",
            help="Messages deleted per transaction (default 1000).",
        )
        parser.add_argument("--client", default="", help="Only this client's messages (name).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )

    def handle(self, *args, older_than, batch_size: int, client: str, dry_run: bool, **options):
        cutoff = timezone.now() - older_than
        total, exact = count_or_estimate(messages_purgeable(created_before=cutoff, client=client))
        about = "" if exact else "about "
        if dry_run:
            self.stdout.write(
                f"{about}{total} finished messages accepted before {cutoff:%Y-%m-%d %H:%M} UTC "
                "would be deleted (dry run)."
            )
            if not client:
                partitions = [p.name for _, p in history_partitions_ending_by(before=cutoff)]
                self.stdout.write(
                    f"{len(partitions)} history partition(s) would be dropped whole"
                    + (f": {', '.join(partitions)}" if partitions else "")
                    + "; older rows in the others would be deleted one by one."
                )
            return
        history = None
        if not client:
            with progress(total=None, unit="row", description="history") as bar:
                history = history_purge(before=cutoff, on_batch=bar.update)
        with progress(total=total, unit="msg", description="purging") as bar:
            deleted = messages_purge(
                created_before=cutoff,
                batch_size=max(batch_size, 1),
                client=client,
                on_batch=bar.update,
            )
        expired_keys = idempotency_purge()
        self.stdout.write(
            f"Deleted {deleted} finished messages accepted before {cutoff:%Y-%m-%d %H:%M} UTC, "
            "with their deliveries, attempts, events and attachments, "
            f"and {expired_keys} expired idempotency keys."
        )
        if history is not None:
            self.stdout.write(self._history_line(history))

    @staticmethod
    def _history_line(history: HistoryPurge) -> str:
        line = (
            f"History: dropped {len(history.dropped)} partition(s)"
            + (f" ({', '.join(history.dropped)})" if history.dropped else "")
            + f", deleted {history.rows_deleted} older row(s) one by one and "
            f"{history.dependents_deleted} row(s) referring to those events"
        )
        for what, count in history.others:
            line += f"; {what}: {count} deleted"
        if history.busy:
            line += (
                f". Not dropped, their tables stayed busy (run purge again): "
                f"{', '.join(history.busy)}"
            )
        return line + "."
