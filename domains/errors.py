"""Why a request about sending domains, or mail From: one of them, is refused."""

from __future__ import annotations

from collections.abc import Mapping

from mailhub.errors import MailhubError


class SenderDomainNotVerified(MailhubError):
    """Mail From: an address of a domain the client may not send from (a 400 problem naming the
    domain). ``refused`` says it for each refused message of the batch, by its position."""

    def __init__(self, refused: Mapping[int, tuple[str, str]]) -> None:
        self.refused = dict(refused)  # position -> (domain, why)
        index = min(self.refused)
        domain, why = self.refused[index]
        super().__init__(why, code="sender_domain_not_verified", extra={"domain": domain})


class DomainExists(MailhubError):
    status = 409

    def __init__(self, domain: str) -> None:
        super().__init__(
            f"{domain} is already one of this client's sending domains.",
            code="domain_exists",
            extra={"domain": domain},
        )


class DkimKeyProblem(MailhubError):
    """A rotation step that cannot be taken now (409): the message says why."""

    status = 409


class DkimKeyNotFound(MailhubError):
    status = 404

    def __init__(self, selector: str) -> None:
        super().__init__(
            f"No DKIM key {selector!r} for this domain.",
            code="dkim_key_not_found",
            extra={"selector": selector},
        )
