"""Sending domains and DKIM keys made directly in the database, for tests of what is sent."""

from __future__ import annotations

from accounts.models import Client
from domains import keys
from domains.models import DkimKey, SendingDomain


def signing_domain(
    client: Client,
    domain: str,
    *,
    algorithm: str = keys.RSA_SHA256,
    state: str = SendingDomain.State.VERIFIED,
    allow_subdomains: bool = False,
    selector: str = "mh1",
) -> DkimKey:
    """``domain`` of ``client`` in ``state``, with an active key of ``algorithm``."""
    sending = SendingDomain.objects.create(
        client=client, domain=domain, state=state, allow_subdomains=allow_subdomains
    )
    pair = keys.generate(algorithm)
    return DkimKey.objects.create(
        domain=sending,
        selector=selector,
        algorithm=algorithm,
        public_key=pair.public_key,
        private_key_encrypted=keys.encrypt(pair.private_pem),
        state=DkimKey.State.ACTIVE,
    )


def dns_of(*published: DkimKey):
    """A dkimpy ``dnsfunc`` that answers with these keys' records (no network)."""
    records = {f"{key.record_name}.".encode(): key.record_value.encode() for key in published}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return dnsfunc
