from django.core.management.base import BaseCommand

from deliveries.management.commands._common import client_named
from deliveries.models import Suppression
from deliveries.services import suppression_add


class Command(BaseCommand):
    help = (
        "Put addresses on a client's suppression list: Mailhub accepts mail to them but never "
        "sends it (their deliveries end `suppressed`). Exit codes: 0 done (also when an address "
        "already was suppressed), 1 error (unknown client), 2 usage."
    )

    def add_arguments(self, parser):
        parser.add_argument("client", metavar="CLIENT", help="The client's name.")
        parser.add_argument("addresses", metavar="ADDRESS", nargs="+")
        parser.add_argument(
            "--reason",
            choices=[r.value for r in Suppression.Reason],
            default=Suppression.Reason.MANUAL,
        )
        parser.add_argument("--detail", default="", help="A note kept with the suppression.")

    def handle(self, *args, client: str, addresses: list[str], reason: str, detail: str, **options):
        found = client_named(client)
        added = 0
        for address in addresses:
            if suppression_add(client_id=found.id, address=address, reason=reason, detail=detail):
                added += 1
            else:
                self.stdout.write(f"{address.lower()} was already suppressed.")
        self.stdout.write(f"Suppressed {added} address(es) for {client}.")
