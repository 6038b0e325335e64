"""Typed readers for environment variables.

Only ``mailhub/settings.py`` calls these. Each rejects a missing or malformed value with
``ImproperlyConfigured`` naming the variable, so a bad deployment fails at start with one line
instead of at the first mail.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from dj_database_url import DBConfig

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"{name} is required but not set")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name} must be a finite number, got {raw!r}")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_choice(name: str, default: str, *, choices: Collection[str]) -> str:
    """One of ``choices``, compared without case or surrounding blanks; unset or empty: default."""
    raw = os.environ.get(name, "")
    value = raw.strip().lower() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def redact_url(url: str) -> str:
    """``url`` with the password of its user info shown as ``***``: for messages and logs.

    Errs on the side of hiding: whatever stands between the first ``:`` of the user info and
    the last ``@`` is replaced, so that even a password with an unescaped ``/`` or ``@`` in it
    does not show.
    """
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    userinfo, at, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not (at and colon):
        return url
    return f"{head}{sep}{user}:***@{host}"


@dataclass(frozen=True)
class SmtpRelay:
    """Where and how to connect to an SMTP relay, parsed from ``smtp[s]://user:pass@host:port``."""

    host: str
    port: int
    use_ssl: bool = False
    starttls: bool = False
    username: str = ""
    password: str = field(default="", repr=False)  # in no repr, str or log line
    weight: int = 1  # share of the mail this relay gets among several

    def __str__(self) -> str:  # never print the password
        scheme = "smtps" if self.use_ssl else "smtp"
        user = f"{self.username}@" if self.username else ""
        tls = "?starttls=1" if self.starttls else ""
        return f"{scheme}://{user}{self.host}:{self.port}{tls}"


def parse_smtp_url(name: str, url: str) -> SmtpRelay:
    """Parse ``smtp://[user:pass@]host[:port][?starttls=1][&weight=N]`` or ``smtps://...``.

    Default ports: 25 for ``smtp`` (587 when STARTTLS is asked for), 465 for ``smtps``.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"{name} is not a valid URL ({exc}): {redact_url(url)!r}"
        ) from None
    if parts.scheme not in {"smtp", "smtps"}:
        raise ImproperlyConfigured(
            f"{name} must start with smtp:// or smtps://, got {parts.scheme or 'no'} scheme"
        )
    if not parts.hostname:
        raise ImproperlyConfigured(f"{name} has no host: {redact_url(url)!r}")
    query = {
        key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()
    }
    unknown = set(query) - {"starttls", "weight"}
    if unknown:
        raise ImproperlyConfigured(f"{name} has unknown option(s): {', '.join(sorted(unknown))}")
    starttls_raw = query.get("starttls", "0").lower()
    if starttls_raw not in (_TRUE | _FALSE) - {""}:
        raise ImproperlyConfigured(f"{name}: starttls must be 1 or 0, got {starttls_raw!r}")
    use_ssl = parts.scheme == "smtps"
    starttls = starttls_raw in _TRUE
    if use_ssl and starttls:
        raise ImproperlyConfigured(f"{name}: smtps:// is already TLS; drop ?starttls=1")
    weight_raw = query.get("weight", "1")
    if not weight_raw.isdigit() or int(weight_raw) < 1:
        raise ImproperlyConfigured(f"{name}: weight must be an integer >= 1, got {weight_raw!r}")
    default_port = 465 if use_ssl else (587 if starttls else 25)
    return SmtpRelay(
        host=parts.hostname,
        port=port or default_port,
        use_ssl=use_ssl,
        starttls=starttls,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        weight=int(weight_raw),
    )


def parse_smtp_urls(name: str, urls: str) -> list[SmtpRelay]:
    """A comma-separated list of SMTP URLs (see ``parse_smtp_url``); at least one."""
    relays = [parse_smtp_url(name, url.strip()) for url in urls.split(",") if url.strip()]
    if not relays:
        raise ImproperlyConfigured(f"{name} names no relay")
    return relays


def parse_bind(name: str, value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:587`` for an IPv6 address) as the host and the port."""
    host, colon, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ImproperlyConfigured(f"{name} must be host:port, e.g. 0.0.0.0:587, got {value!r}")
    return host, int(port)


#: What a public URL may hold: printable ASCII without spaces (it is written into mail headers).
_URL_CHARACTERS = frozenset(chr(c) for c in range(0x21, 0x7F))
_MAX_PUBLIC_URL = 200


def parse_public_url(name: str, value: str) -> str:
    """An ``http(s)://host[:port][/path]`` URL without query, fragment or credentials, and
    without its trailing slash: links Mailhub puts in mail start with it."""
    url = value.strip().rstrip("/")
    problem = ""
    if not set(url) <= _URL_CHARACTERS or len(url) > _MAX_PUBLIC_URL:
        problem = f"at most {_MAX_PUBLIC_URL} characters of printable ASCII without spaces"
    else:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
            problem = "an http:// or https:// URL with a host"
        elif parts.query or parts.fragment or "?" in url or "#" in url:
            problem = "a URL without a query or a fragment"
        elif parts.username is not None or parts.password is not None:
            problem = "a URL without credentials"
    if problem:
        raise ImproperlyConfigured(
            f"{name} must be {problem}, e.g. https://mail.example.com, got {value!r}"
        )
    return url


def parse_database_url(name: str, url: str) -> DBConfig:
    import dj_database_url

    if not url.startswith(("postgres://", "postgresql://")):
        raise ImproperlyConfigured(
            f"{name} must be a postgres:// URL, got {url.split(':', 1)[0]!r}"
        )
    try:
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    except ValueError as exc:
        hint = ""
        if "," in url.partition("://")[2].partition("/")[0]:
            # libpq's own form (host=a,b port=5432,5433) has no URL that dj-database-url reads.
            hint = " (several hosts share one port: postgres://user:pass@host1,host2:5432/db)"
        raise ImproperlyConfigured(f"{name} is not a valid database URL: {exc}{hint}") from None
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"{name} names no database: {redact_url(url)!r}")
    return config


def parse_broker_url(name: str, url: str) -> str:
    """An ``amqp://`` URL, or several separated by ``;``: the nodes of a RabbitMQ cluster, which
    Celery and kombu try in turn when the one in use cannot be reached."""
    for node in url.split(";"):
        scheme = node.split("://", 1)[0] if "://" in node else ""
        if scheme not in {"amqp", "amqps", "pyamqp"}:
            raise ImproperlyConfigured(
                f"{name} must be an amqp:// URL (RabbitMQ), or several separated by ';', "
                f"got {redact_url(node)!r}"
            )
    return url


def parse_domain_limits(name: str, value: str) -> dict[str, tuple[int, int]]:
    """``domain=CONCURRENCY/PER_MINUTE`` pairs, comma-separated; 0 means no limit.

    ``gmail.com=10/600,example.org=2/30`` allows 10 deliveries to gmail.com at once and 600
    attempts a minute, 2 at once and 30 a minute to example.org.
    """
    limits: dict[str, tuple[int, int]] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        domain, _, numbers = item.partition("=")
        concurrency, _, per_minute = numbers.partition("/")
        if not domain or not concurrency.isdigit() or not per_minute.isdigit():
            raise ImproperlyConfigured(
                f"{name}: expected domain=CONCURRENCY/PER_MINUTE, got {item!r}"
            )
        limits[domain.strip().lower()] = (int(concurrency), int(per_minute))
    return limits


_DOMAIN_NAME = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}")


def parse_domain_name(name: str, value: str) -> str:
    """A domain name of the operator's (``bounces.example.com``), lower-case, without the
    trailing dot; "" stays "" (unset)."""
    domain = value.strip().lower().rstrip(".")
    if domain and (len(domain) > 253 or not _DOMAIN_NAME.fullmatch(domain)):
        raise ImproperlyConfigured(
            f"{name} must be a domain name like bounces.example.com, got {value!r}"
        )
    return domain


def parse_nameservers(name: str, value: str) -> list[tuple[str, int]]:
    """Comma-separated ``address[:port]`` of DNS servers (port 53 unless given; an IPv6 address
    with a port is written ``[::1]:5353``), as (address, port) pairs; "" is none."""
    servers = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        host, port = item, 53
        if item.startswith("[") or item.count(":") == 1:
            host, port = parse_bind(name, item)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} lists DNS servers by IP address (address[:port]), got {item!r}"
            ) from None
        servers.append((host, port))
    return servers
