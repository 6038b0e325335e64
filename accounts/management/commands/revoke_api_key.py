from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q

from accounts.models import ApiKey
from accounts.services import api_keys_revoke


class Command(BaseCommand):
    help = (
        "Revoke an API key, named by its visible prefix (mh_XXXXXXXX, as `create_api_key` and "
        "the admin show it) or by its id. Requests with it fail from now on. Exit codes: 0 "
        "revoked (or already revoked), 1 error (no such key, or the prefix names several), "
        "2 usage."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key", metavar="PREFIX_OR_ID")

    def handle(self, *args: Any, key: str, **options: Any) -> None:
        lookup = Q(prefix=key.rstrip("…").strip())
        if key.isdigit():
            lookup |= Q(id=int(key))
        keys = list(ApiKey.objects.filter(lookup).select_related("client"))
        if not keys:
            raise CommandError(f"No API key {key!r}.")
        if len(keys) > 1:
            listed = ", ".join(f"id {k.id} ({k.client})" for k in keys)
            raise CommandError(f"{key!r} names {len(keys)} keys: {listed}; give the id.")
        [found] = keys
        if api_keys_revoke(key_ids=[found.id]):
            self.stdout.write(f"Revoked {found.prefix}… of {found.client} (id {found.id}).")
        else:
            self.stdout.write(f"{found.prefix}… of {found.client} was already revoked.")
