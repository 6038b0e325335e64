from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import api_key_create, api_key_set_rate_limit, client_get_or_create


class Command(BaseCommand):
    help = (
        "Create an API key for CLIENT_NAME (creating the client if needed) and print it. "
        "The key is shown only this once; Mailhub stores only its hash."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("client_name", metavar="CLIENT_NAME")
        parser.add_argument("--name", default="", help="A label for the key, e.g. 'production'.")
        parser.add_argument(
            "--rate-limit",
            type=int,
            default=None,
            metavar="N",
            help="Requests per minute for this key (default: MAILHUB_API_RATE_LIMIT_PER_MINUTE).",
        )

    def handle(
        self, *args: Any, client_name: str, name: str, rate_limit: int | None, **options: Any
    ) -> None:
        if rate_limit is not None and rate_limit < 1:
            raise CommandError("--rate-limit must be at least 1 request per minute")
        client = client_get_or_create(name=client_name)
        key, secret = api_key_create(client=client, name=name)
        if rate_limit is not None:
            api_key_set_rate_limit(key=key, per_minute=rate_limit)
        self.stderr.write(f"Created key {key.prefix}… for client {client.name!r}; store it now:")
        self.stdout.write(secret)
