from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import api_key_create, api_key_set_rate_limit, client_get_or_create


class Command(BaseCommand):
    help = (
        "Create an API key for CLIENT_NAME (creating the client if needed) and print it. "
        "The key is shown only this once; Mailhub stores only its hash. With --test, a "
        "test-mode key (mh_test_...): its mail is stored and recorded but never sent."
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
        parser.add_argument(
            "--test",
            action="store_true",
            help="A test-mode key: its mail is accepted, stored and recorded like live mail, but "
            "settled by the simulator and never handed to a relay.",
        )

    def handle(
        self,
        *args: Any,
        client_name: str,
        name: str,
        rate_limit: int | None,
        test: bool,
        **options: Any,
    ) -> None:
        if rate_limit is not None and rate_limit < 1:
            raise CommandError("--rate-limit must be at least 1 request per minute")
        client = client_get_or_create(name=client_name)
        key, secret = api_key_create(client=client, name=name, test_mode=test)
        if rate_limit is not None:
            api_key_set_rate_limit(key=key, per_minute=rate_limit)
        mode = "test-mode key" if test else "key"
        self.stderr.write(f"Created {mode} {key.prefix}… for client {client.name!r}; store it now:")
        self.stdout.write(secret)
