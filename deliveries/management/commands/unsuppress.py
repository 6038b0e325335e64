from django.core.management.base import BaseCommand, CommandError

from deliveries.management.commands._common import client_named
from deliveries.services import suppression_remove


class Command(BaseCommand):
    help = (
        "Take addresses off a client's suppression list, so that mail to them is sent again. "
        "Exit codes: 0 done, 1 error (unknown client, or none of the addresses was suppressed), "
        "2 usage."
    )

    def add_arguments(self, parser):
        parser.add_argument("client", metavar="CLIENT", help="The client's name.")
        parser.add_argument("addresses", metavar="ADDRESS", nargs="+")

    def handle(self, *args, client: str, addresses: list[str], **options):
        found = client_named(client)
        removed = 0
        for address in addresses:
            if suppression_remove(client=found, address=address):
                removed += 1
            else:
                self.stdout.write(f"{address.lower()} was not suppressed.")
        self.stdout.write(f"Removed {removed} address(es) from {client}'s suppression list.")
        if not removed:
            raise CommandError("None of the addresses was suppressed.")
