from django.core.management.base import BaseCommand
from django.utils import timezone

from accounts.idempotency import idempotency_purge
from deliveries.management.commands._common import parse_duration, progress
from deliveries.metrics import count_or_estimate
from deliveries.selectors import messages_purgeable
from deliveries.services import messages_purge


class Command(BaseCommand):
    help = (
        "Retention cleanup: delete finished messages (delivered, bounced, failed, cancelled, "
        "suppressed) accepted more than AGE ago, with their deliveries, attempts, events and "
        "attachments, in batches (one short transaction each), with a progress bar. Safe to "
        "interrupt and run again. Messages with a delivery still waiting are never deleted. "
        "Exit codes: 0 done (also when nothing was old enough), 1 error, 2 usage."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=parse_duration,
            required=True,
            metavar="AGE",
            help="Delete messages accepted at least AGE ago: 30d, 12h, 2w ...",
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
            return
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
