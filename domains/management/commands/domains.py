"""``manage.py domains``: clients' sending domains, their DNS records and DKIM keys.

    domains add CLIENT DOMAIN [--allow-subdomains] [--algorithm ed25519-sha256]
                [--verified-locally] [--exist-ok]
    domains list [CLIENT]
    domains records CLIENT DOMAIN
    domains verify CLIENT DOMAIN          (or --due: every domain due for its periodic check)
    domains rotate CLIENT DOMAIN [--algorithm ...]
    domains activate CLIENT DOMAIN SELECTOR [--no-dns-check]
    domains retire CLIENT DOMAIN SELECTOR
    domains reencrypt

Exit codes: 0 done; 1 error (unknown client or domain, a refused step), on stderr; 2 usage.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Client
from accounts.services import client_get_or_create
from domains.dns import Check
from domains.errors import DomainExists
from domains.models import DkimKey, SendingDomain
from domains.names import domain_normalise
from domains.selectors import domain_by_name, domain_records, domains_for_client
from domains.services import (
    dkim_key_activate,
    dkim_key_retire,
    dkim_key_rotate,
    dkim_keys_reencrypt,
    domain_create,
    domain_mark_verified_locally,
    domain_verify,
    domains_reverify_due,
)
from mailhub.errors import MailhubError

_OK = {True: "ok", False: "MISSING", None: "unknown"}  # unknown: DNS did not answer


class Command(BaseCommand):
    help = (
        "Clients' sending domains: add one (with its first DKIM key), list them, show the DNS "
        "records to publish, check them now, rotate DKIM keys (rotate, then activate once the "
        "new record is published; retire drops a pending key), and re-encrypt every private key "
        "under the first of MAILHUB_DKIM_ENCRYPTION_KEYS. `add --verified-locally` makes a "
        "domain usable without DNS (a development stack)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        add = commands.add_parser("add", help="Add a sending domain with its first DKIM key.")
        add.add_argument("client")
        add.add_argument("domain")
        add.add_argument("--allow-subdomains", action="store_true")
        add.add_argument("--algorithm", choices=DkimKey.Algorithm.values, default="rsa-sha256")
        add.add_argument(
            "--verified-locally",
            action="store_true",
            help="Usable at once, never checked in DNS (development, the demo).",
        )
        add.add_argument(
            "--exist-ok", action="store_true", help="A domain the client has already is fine."
        )
        listing = commands.add_parser("list", help="Domains, their state and keys.")
        listing.add_argument("client", nargs="?")
        records = commands.add_parser("records", help="The DNS records to publish.")
        records.add_argument("client")
        records.add_argument("domain")
        verify = commands.add_parser("verify", help="Check a domain's DNS records now.")
        verify.add_argument("client", nargs="?")
        verify.add_argument("domain", nargs="?")
        verify.add_argument(
            "--due", action="store_true", help="Every domain due for its periodic check."
        )
        rotate = commands.add_parser("rotate", help="Make a new, pending DKIM key.")
        rotate.add_argument("client")
        rotate.add_argument("domain")
        rotate.add_argument("--algorithm", choices=DkimKey.Algorithm.values)
        activate = commands.add_parser("activate", help="Make a pending key the signing one.")
        activate.add_argument("client")
        activate.add_argument("domain")
        activate.add_argument("selector")
        activate.add_argument(
            "--no-dns-check",
            dest="check_dns",
            action="store_false",
            help="Activate without finding its record in DNS first.",
        )
        retire = commands.add_parser("retire", help="Retire a pending key (abandon a rotation).")
        retire.add_argument("client")
        retire.add_argument("domain")
        retire.add_argument("selector")
        commands.add_parser("reencrypt", help="Encrypt every private key under the first key.")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            getattr(self, f"_{action}")(**options)
        except MailhubError as exc:
            raise CommandError(exc.message) from None

    # -- actions ---------------------------------------------------------------------------------

    def _add(self, *, client: str, domain: str, exist_ok: bool, **options: Any) -> None:
        owner = client_get_or_create(name=client)
        try:
            sending = domain_create(
                client=owner,
                domain=domain,
                allow_subdomains=options["allow_subdomains"],
                algorithm=options["algorithm"],
            )
            self.stdout.write(f"Added {sending.domain} for client {owner.name}.")
        except DomainExists as exists:
            if not exist_ok:
                raise CommandError(f"{exists.message} (--exist-ok to accept that)") from None
            sending = self._domain(owner.name, domain)
            self.stdout.write(f"{sending.domain} of client {owner.name} exists already.")
        if options["verified_locally"]:
            sending = domain_mark_verified_locally(domain_id=sending.id)
            self.stdout.write("Marked verified locally: usable now, never checked in DNS.")
        else:
            self._records(client=owner.name, domain=sending.domain)

    def _list(self, *, client: str | None, **_: Any) -> None:
        owners = [self._client(client)] if client else list(Client.objects.order_by("name"))
        for owner in owners:
            for domain in domains_for_client(client=owner):
                checked = (
                    f"{domain.last_checked_at:%Y-%m-%d %H:%M}"
                    if domain.last_checked_at
                    else "never"
                )
                local = ", verified locally" if domain.verified_locally else ""
                self.stdout.write(
                    f"{owner.name}\t{domain.domain}\t{domain.state}{local}\tchecked {checked}"
                )
                for key in domain.dkim_keys.all():
                    self.stdout.write(f"\t\t{key.selector}\t{key.algorithm}\t{key.state}")

    def _records(self, *, client: str, domain: str, **_: Any) -> None:
        sending = self._domain(client, domain)
        self.stdout.write(f"Publish for {sending.domain} ({sending.state}):")
        for record in domain_records(domain=sending):
            need = "required" if record.required else "advisory"
            by = "" if record.publisher == "client" else ", by the operator"
            self.stdout.write(f"  {record.name}.  {record.type}  {record.value or '(see note)'}")
            self.stdout.write(f"      {record.purpose}, {need}{by}: {record.note}")

    def _verify(self, *, client: str | None, domain: str | None, due: bool, **_: Any) -> None:
        if due:
            self.stdout.write(f"{domains_reverify_due()} domains checked.")
            return
        if not (client and domain):
            raise CommandError("Name a CLIENT and a DOMAIN, or give --due.")
        sending = domain_verify(domain_id=self._domain(client, domain).id)
        self.stdout.write(f"{sending.domain}: {sending.state}")
        for name, check in sending.checks.items():
            result = Check(**check)
            need = "required" if result.required else "advisory"
            self.stdout.write(f"  {name:<20} {_OK[result.ok]:<8} ({need}) {result.detail}")
        if sending.state != SendingDomain.State.VERIFIED:
            raise CommandError(f"{sending.domain} is {sending.state}.")

    def _rotate(self, *, client: str, domain: str, algorithm: str | None, **_: Any) -> None:
        sending = self._domain(client, domain)
        key = dkim_key_rotate(domain_id=sending.id, algorithm=algorithm)
        self.stdout.write(
            f"New pending key {key.selector}: publish\n  {key.record_name}.  TXT  "
            f"{key.record_value}\nthen: manage.py domains activate {client} {sending.domain} "
            f"{key.selector}"
        )

    def _activate(
        self, *, client: str, domain: str, selector: str, check_dns: bool, **_: Any
    ) -> None:
        sending = self._domain(client, domain)
        key = dkim_key_activate(domain_id=sending.id, selector=selector, check_dns=check_dns)
        self.stdout.write(
            f"{key.selector} signs {sending.domain}'s mail now; the previous key is retired "
            "(remove its record in a few days)."
        )

    def _retire(self, *, client: str, domain: str, selector: str, **_: Any) -> None:
        key = dkim_key_retire(domain_id=self._domain(client, domain).id, selector=selector)
        self.stdout.write(f"{key.selector} is {key.state}.")

    def _reencrypt(self, **_: Any) -> None:
        self.stdout.write(f"{dkim_keys_reencrypt()} private keys encrypted under the first key.")

    # -- lookups ---------------------------------------------------------------------------------

    def _client(self, name: str) -> Client:
        client = Client.objects.filter(name=name).first()
        if client is None:
            raise CommandError(f"No client named {name!r}.")
        return client

    def _domain(self, client: str, domain: str) -> SendingDomain:
        owner = self._client(client)
        sending = domain_by_name(client=owner, domain=domain_normalise(domain))
        if sending is None:
            raise CommandError(f"Client {client} has no sending domain {domain!r}.")
        return sending
