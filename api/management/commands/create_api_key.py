from django.core.management.base import BaseCommand

from api.services import api_key_create, client_get_or_create


class Command(BaseCommand):
    help = (
        "Create an API key for CLIENT_NAME (creating the client if needed) and print it. "
        "The key is shown only this once; Mailhub stores only its hash."
    )

    def add_arguments(self, parser):
        parser.add_argument("client_name", metavar="CLIENT_NAME")
        parser.add_argument("--name", default="", help="A label for the key, e.g. 'production'.")

    def handle(self, *args, client_name: str, name: str, **options):
        client = client_get_or_create(name=client_name)
        key, secret = api_key_create(client=client, name=name)
        self.stderr.write(f"Created key {key.prefix}… for client {client.name!r}; store it now:")
        self.stdout.write(secret)
