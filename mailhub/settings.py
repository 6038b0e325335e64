"""Django settings for Mailhub.

Everything that differs between machines comes from the environment, read through the helpers
in ``mailhub.env``; a missing or malformed value stops the process at start with one line naming
the variable. The defaults run a complete local stack: Postgres and RabbitMQ on loopback and the
embedded capture SMTP server, so nothing leaves the machine until a relay is configured.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path
from typing import Any

from kombu import Exchange, Queue

from mailhub.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
    parse_bind,
    parse_broker_url,
    parse_database_url,
    parse_domain_limits,
    parse_domain_name,
    parse_nameservers,
    parse_public_url,
    parse_smtp_url,
    parse_smtp_urls,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)
# The local default only serves loopback stacks; production must set its own.
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "insecure-local-only-key" if DEBUG else None)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "domains",
    "api",
    "deliveries",
    "webhooks",
]

MIDDLEWARE = [
    # Counts and times every request but the probes' and the scrapes' (answered by their own
    # middleware, put before this one below): GET /metrics/http.
    "mailhub.http_metrics.HttpMetricsMiddleware",
    # Every answer carries X-Request-ID, and a failure in any later middleware is traced by it.
    "api.middleware.RequestIdMiddleware",
    "api.middleware.NulCharacterMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mailhub.urls"
WSGI_APPLICATION = "mailhub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": parse_database_url(
        "DATABASE_URL",
        env_str("DATABASE_URL", "postgres://mailhub:mailhub@127.0.0.1:5432/mailhub"),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- Admin login throttling (django-axes) --------------------------------------------------------
# After MAILHUB_ADMIN_LOGIN_FAILURES wrong passwords a username is locked out from that client
# address for MAILHUB_ADMIN_LOCKOUT_SECONDS, even for the right password (a 429 page); the same
# user from elsewhere and other users from that address are not. Failures are counted in Postgres,
# so every web process sees them; a successful login forgets them. An operator lifts a lockout
# early with `manage.py axes_reset_username NAME` (or axes_reset_ip ADDRESS, or axes_reset for
# all), or by deleting the row in the admin's "Access attempts". API keys never go through
# Django's authenticate(): nothing here counts or refuses them.
INSTALLED_APPS.append("axes")
MIDDLEWARE.append("axes.middleware.AxesMiddleware")  # last, as axes asks: turns a lockout into 429
AUTHENTICATION_BACKENDS = [
    "mailhub.auth.AdminLoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("MAILHUB_ADMIN_LOGIN_FAILURES", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_float("MAILHUB_ADMIN_LOCKOUT_SECONDS", 900.0, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The client address is the peer's (REMOTE_ADDR), unless MAILHUB_TRUSTED_PROXIES reverse proxies
# (TLS terminator, load balancer) stand in front of the web process: then it is the address the
# outermost proxy was reached from, the MAILHUB_TRUSTED_PROXIES-th entry of X-Forwarded-For counted
# from the right (each proxy appends its own peer). Whatever a client writes into that header
# itself stays further left and is never believed. Set it only where the web port cannot be
# reached around the proxies.
MAILHUB_TRUSTED_PROXIES = env_int("MAILHUB_TRUSTED_PROXIES", 0, minimum=0)
if MAILHUB_TRUSTED_PROXIES:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR"]
    # ipware counts the proxies listed IN the header: all but the innermost (REMOTE_ADDR).
    AXES_IPWARE_PROXY_COUNT = MAILHUB_TRUSTED_PROXIES - 1
    # Not strict: entries a client added make the header longer than the proxies; the client is
    # still found by counting from the right instead of being given up on.
    IPWARE_STRICT = False
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"

# A message body may be up to MAILHUB_MAX_BODY_BYTES per part; leave room for both parts + JSON.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAILHUB_MAX_REQUEST_BYTES", 4 * 1024 * 1024, minimum=1024)

# Error reports (the DEBUG page, mail to ADMINS) hide the password in any URL-valued setting too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "mailhub.reporting.SafeSettingsFilter"

SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.authentication.HasClient"],
    # DRF's, able to write a lone surrogate that an answer quotes back (as a JSON escape).
    "DEFAULT_RENDERER_CLASSES": ["api.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "api.errors.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# --- Logs ---------------------------------------------------------------------------------------
# Every process logs to stderr through one handler (mailhub/logs.py), as text
# (`time LEVEL logger message [task=… message=… client=…]`, the brackets where a record is about
# them) or, with MAILHUB_LOG_FORMAT=json, as one JSON object per line with the fields task_id,
# message_id and client. Celery's per-task lines about the periodic ticks are DEBUG records, so an
# idle stack logs nothing at INFO.
MAILHUB_LOG_FORMAT = env_choice("MAILHUB_LOG_FORMAT", "text", choices=("text", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "mailhub.logs.ContextFilter"},
        "quiet_ticks": {"()": "mailhub.logs.QuietTicksFilter"},
    },
    "formatters": {
        "text": {"()": "mailhub.logs.TextFormatter"},
        "json": {"()": "mailhub.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": MAILHUB_LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "loggers": {
        # Where Celery writes "Task … received", "Task … succeeded" and "Sending due task".
        name: {"filters": ["quiet_ticks"]}
        for name in ("celery.worker.strategy", "celery.app.trace", "celery.beat")
    },
    "root": {"handlers": ["console"], "level": env_str("MAILHUB_LOG_LEVEL", "INFO")},
}

# --- Celery on RabbitMQ -------------------------------------------------------------------------
CELERY_BROKER_URL = parse_broker_url(
    "CELERY_BROKER_URL", env_str("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
)
# Lets a test run (or a second stack on one broker) keep its own queues.
MAILHUB_QUEUE_PREFIX = env_str("MAILHUB_QUEUE_PREFIX", "")
MAILHUB_QUEUES = {
    "high": f"{MAILHUB_QUEUE_PREFIX}mail.high",
    "normal": f"{MAILHUB_QUEUE_PREFIX}mail.normal",
    "low": f"{MAILHUB_QUEUE_PREFIX}mail.low",
}
MAILHUB_DISPATCH_QUEUE = f"{MAILHUB_QUEUE_PREFIX}mailhub.dispatch"
# `classic`: each queue lives on one RabbitMQ node. `quorum`: each queue is replicated over the
# cluster (Raft) and stays available while a majority of its nodes are up; what changes with it
# (per-consumer prefetch, the broker's delivery limit) is in deploy/README.md, "RabbitMQ". A
# queue's type is fixed when RabbitMQ creates it: switching means new queues (same README).
MAILHUB_QUEUE_TYPE = env_choice("MAILHUB_QUEUE_TYPE", "classic", choices=("classic", "quorum"))
# Classic queues are declared without arguments, as they were before the setting existed, so a
# running broker's queues still match Celery's declaration of them.
_QUEUE_ARGUMENTS = {"x-queue-type": "quorum"} if MAILHUB_QUEUE_TYPE == "quorum" else {}
_exchange = Exchange(f"{MAILHUB_QUEUE_PREFIX}mailhub", type="direct", durable=True)


def _task_queue(name: str) -> Queue:
    return Queue(
        name, _exchange, routing_key=name, durable=True, queue_arguments=dict(_QUEUE_ARGUMENTS)
    )


CELERY_TASK_QUEUES = [
    _task_queue(name) for name in [*MAILHUB_QUEUES.values(), MAILHUB_DISPATCH_QUEUE]
]
CELERY_TASK_DEFAULT_QUEUE = MAILHUB_QUEUES["normal"]
CELERY_TASK_DEFAULT_EXCHANGE = _exchange.name
CELERY_TASK_DEFAULT_ROUTING_KEY = MAILHUB_QUEUES["normal"]
CELERY_TASK_DEFAULT_DELIVERY_MODE = "persistent"
# A task is acknowledged only after it ran, and handed back if its worker dies: safe because
# every task claims its rows in Postgres first and so does nothing when run twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Quorum queues refuse a consumer on a channel with a global prefetch limit; Celery sees their
# x-queue-type and sets the limit per consumer instead (the default, said here because it
# matters): each queue a worker consumes may then hold `concurrency` unacknowledged tasks.
CELERY_WORKER_DETECT_QUORUM_QUEUES = True
# Celery's worker without its "native delayed delivery" step, which declares 28 exchanges and
# quorum queues for ETA tasks and binds every task queue to them: Mailhub keeps what waits in
# Postgres, and its exchange is direct, with which that machinery does not work anyway.
CELERY_WORKER_CONSUMER = "mailhub.celery:Consumer"
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("MAILHUB_BROKER_TIMEOUT_SECONDS", 2.0, minimum=0.1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The API must answer quickly even when RabbitMQ is down: the row is safely `queued` in Postgres
# and the dispatcher publishes it later, so a publish is tried briefly and then given up.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_WORKER_SEND_TASK_EVENTS = True  # Flower shows live tasks
# No `task-sent` events: each would be one more publish per task on the API's path, and Flower
# shows a task from the moment a worker receives it anyway.
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fix-up closes the database connection around every task unless told to reuse
# it; reconnecting cost more than the task itself. Broken connections are still dropped at once
# (deliveries.tasks closes unusable ones before each task).
CELERY_DB_REUSE_MAX = 1000

# --- Delivery policy ----------------------------------------------------------------------------
MAILHUB_SMTP = parse_smtp_url(
    "MAILHUB_SMTP_URL", env_str("MAILHUB_SMTP_URL", "smtp://127.0.0.1:2525")
)
# Several relays, comma-separated, each with an optional `weight=N` (its share of the mail):
# mail is spread over them, and a relay that cannot be reached is taken out of rotation for
# MAILHUB_RELAY_COOLDOWN_SECONDS while the others carry its mail. Unset: MAILHUB_SMTP_URL alone.
MAILHUB_SMTP_RELAYS = (
    parse_smtp_urls("MAILHUB_SMTP_URLS", env_str("MAILHUB_SMTP_URLS"))
    if env_str("MAILHUB_SMTP_URLS", "")
    else [MAILHUB_SMTP]
)
MAILHUB_RELAY_COOLDOWN_SECONDS = env_float("MAILHUB_RELAY_COOLDOWN_SECONDS", 30.0, minimum=0)
# Per-destination limits, across all workers: deliveries sent at once to one recipient domain,
# and attempts started towards it per minute (0 = no limit), with exceptions per domain in
# MAILHUB_DOMAIN_LIMITS ("gmail.com=10/600,example.org=2/30"). Mail over a limit waits
# MAILHUB_DOMAIN_WAIT_SECONDS and is not charged an attempt.
MAILHUB_DOMAIN_CONCURRENCY = env_int("MAILHUB_DOMAIN_CONCURRENCY", 20, minimum=0)
MAILHUB_DOMAIN_RATE_PER_MINUTE = env_int("MAILHUB_DOMAIN_RATE_PER_MINUTE", 0, minimum=0)
MAILHUB_DOMAIN_LIMITS = parse_domain_limits(
    "MAILHUB_DOMAIN_LIMITS", env_str("MAILHUB_DOMAIN_LIMITS", "")
)
MAILHUB_DOMAIN_WAIT_SECONDS = env_float("MAILHUB_DOMAIN_WAIT_SECONDS", 5.0, minimum=0.1)
MAILHUB_SMTP_HELO_NAME = env_str("MAILHUB_SMTP_HELO_NAME", "") or None
# RFC 5321 4.5.3.2 suggests 5 minutes per command and 10 for the end of DATA, written for
# store-and-forward between MTAs. Mailhub talks to a relay it chose; a relay that is silent for
# half a minute is better deferred and retried than allowed to hold a worker (and with it the
# verification codes queued behind it) for ten.
MAILHUB_SMTP_TIMEOUT_SECONDS = env_float("MAILHUB_SMTP_TIMEOUT_SECONDS", 30.0, minimum=0.1)
MAILHUB_SMTP_DATA_TIMEOUT_SECONDS = env_float(
    "MAILHUB_SMTP_DATA_TIMEOUT_SECONDS", 120.0, minimum=0.1
)
# How long a worker owns a claimed delivery. Past it the dispatcher assumes the worker died and
# takes the delivery back; it must exceed the longest SMTP exchange the timeouts allow.
MAILHUB_LEASE_SECONDS = env_float("MAILHUB_LEASE_SECONDS", 300.0, minimum=1)
# Backoff: delay(n) = min(cap, base * factor ** (n - 1)), minus up to `jitter` of itself.
# 30 s, 1, 2, 4, 8, 15, 15 min: seven retries span about 45 minutes, inside the 1 h lifetime,
# because a verification code or a password-reset link is worthless after an hour.
MAILHUB_RETRY_BASE_SECONDS = env_float("MAILHUB_RETRY_BASE_SECONDS", 30.0, minimum=0)
MAILHUB_RETRY_FACTOR = env_float("MAILHUB_RETRY_FACTOR", 2.0, minimum=1)
MAILHUB_RETRY_CAP_SECONDS = env_float("MAILHUB_RETRY_CAP_SECONDS", 900.0, minimum=0)
MAILHUB_RETRY_JITTER = env_float("MAILHUB_RETRY_JITTER", 0.2, minimum=0)
MAILHUB_MAX_ATTEMPTS = env_int("MAILHUB_MAX_ATTEMPTS", 8, minimum=1)
# A delivery whose attempt was lost this many times (its worker died, or its task failed, before
# reporting) is failed as "quarantined" instead of being tried again: content that crashes
# workers must not keep taking healthy mail down with it. Once lost, it is sent in a task alone.
MAILHUB_QUARANTINE_AFTER_LOST_ATTEMPTS = env_int(
    "MAILHUB_QUARANTINE_AFTER_LOST_ATTEMPTS", 3, minimum=1
)
MAILHUB_MESSAGE_LIFETIME_SECONDS = env_float("MAILHUB_MESSAGE_LIFETIME_SECONDS", 3600.0, minimum=1)
# A `queued` row not picked up within this time is published again (its first publish may have
# been lost with a broker outage). Duplicated tasks are harmless: the claim admits only one.
MAILHUB_REPUBLISH_AFTER_SECONDS = env_float("MAILHUB_REPUBLISH_AFTER_SECONDS", 60.0, minimum=1)
MAILHUB_DISPATCH_INTERVAL_SECONDS = env_float("MAILHUB_DISPATCH_INTERVAL_SECONDS", 5.0, minimum=0.1)
MAILHUB_DISPATCH_BATCH = env_int("MAILHUB_DISPATCH_BATCH", 1000, minimum=1)
# Messages per delivery task: claimed, sent over one connection and recorded together. Larger
# batches cost fewer transactions per message; a worker that dies mid-batch may send the
# messages already sent in it again (the duplicate window), so keep it modest. 50: the drain of a
# backlog measured 24 % faster and 20 % cheaper in CPU than at 20, and as fast as at 100 (README
# "Measured"); a task of 50 leaves a relay ~5.8 s per message within the lease.
MAILHUB_TASK_BATCH_SIZE = env_int("MAILHUB_TASK_BATCH_SIZE", 50, minimum=1)

# --- Input limits -------------------------------------------------------------------------------
MAILHUB_MAX_RECIPIENTS = env_int("MAILHUB_MAX_RECIPIENTS", 50, minimum=1)
MAILHUB_MAX_BODY_BYTES = env_int("MAILHUB_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
MAILHUB_MAX_HEADERS = env_int("MAILHUB_MAX_HEADERS", 50, minimum=0)
# Clients' templates are rendered in the web process while the client waits: one render (the
# three parts together), and one compilation of a saved template, may use this much of the
# thread's CPU time, and each part may come to this many characters. Past either the send (or
# the save) is a 400 template_too_expensive. A typical template renders in well under 1 ms.
MAILHUB_TEMPLATE_CPU_SECONDS = env_float("MAILHUB_TEMPLATE_CPU_SECONDS", 0.1, minimum=0.001)
MAILHUB_TEMPLATE_MAX_OUTPUT_CHARS = env_int(
    "MAILHUB_TEMPLATE_MAX_OUTPUT_CHARS", 2 * 1024 * 1024, minimum=1024
)

# --- Embedded capture server (the default relay) ------------------------------------------------
MAILHUB_CAPTURE_DIR = Path(env_str("MAILHUB_CAPTURE_DIR", str(BASE_DIR / "var" / "mail")))

# --- Deliverability -----------------------------------------------------------------------------
# The domain bounce reports come back to. Set, each delivery is sent with its own VERP envelope
# sender, bounce+<signed token>@<this domain> (deliveries/tokens.py), and the `bounces` process
# takes reports for it; its MX must point at that process. Empty: the envelope sender is the
# From address, and reports go there, not to Mailhub.
MAILHUB_BOUNCE_DOMAIN = parse_domain_name(
    "MAILHUB_BOUNCE_DOMAIN", env_str("MAILHUB_BOUNCE_DOMAIN", "")
)

# The `bounces` process (api/bounces.py): where it listens for reports sent to the bounce domain.
# Production: port 25 of the host the bounce domain's MX names (deploy/ maps 25 to it).
MAILHUB_BOUNCES_BIND = parse_bind(
    "MAILHUB_BOUNCES_BIND", env_str("MAILHUB_BOUNCES_BIND", "127.0.0.1:2526")
)
# The largest report it takes (larger: 552): a DSN quoting the whole original message is as large
# as that message.
MAILHUB_BOUNCES_MAX_MESSAGE_BYTES = env_int(
    "MAILHUB_BOUNCES_MAX_MESSAGE_BYTES", 10 * 1024 * 1024, minimum=1024
)

# Where Mailhub is reached from outside (scheme, host, optional port and path prefix): links in
# mail start with it, e.g. the one-click unsubscribe link <MAILHUB_PUBLIC_URL>/u/<token>.
MAILHUB_PUBLIC_URL = parse_public_url(
    "MAILHUB_PUBLIC_URL", env_str("MAILHUB_PUBLIC_URL", "http://127.0.0.1:8000")
)

# DKIM private keys are stored encrypted with these Fernet keys (comma-separated; make one with
# `python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`).
# The first encrypts, every one decrypts: to rotate, put a new key first, run
# `manage.py domains reencrypt`, then drop the old one. ./scripts/start generates one into .env.
MAILHUB_DKIM_ENCRYPTION_KEYS = env_list("MAILHUB_DKIM_ENCRYPTION_KEYS", "")
for _key in MAILHUB_DKIM_ENCRYPTION_KEYS:
    try:
        from cryptography.fernet import Fernet

        Fernet(_key)
    except ValueError:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "MAILHUB_DKIM_ENCRYPTION_KEYS holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes)"
        ) from None

# Sending domains (domains/): a client may send only From: addresses of its verified domains.
# Development only: any From is accepted, verified or not (./scripts/start instead marks the demo
# client's domain verified locally, so the check stays on there too).
MAILHUB_ALLOW_UNVERIFIED_DOMAINS = env_bool("MAILHUB_ALLOW_UNVERIFIED_DOMAINS", False)
# What clients' SPF records must include (`include:<this>`), e.g. _spf.mailhub.example, the
# operator's record listing the relays' addresses. Empty: SPF is reported but not required.
MAILHUB_SPF_INCLUDE = parse_domain_name("MAILHUB_SPF_INCLUDE", env_str("MAILHUB_SPF_INCLUDE", ""))
# The host MAILHUB_BOUNCE_DOMAIN's MX must name (the one running the `bounces` process). Empty:
# any MX will do. Checked with each domain, advisory: the operator publishes it once.
MAILHUB_BOUNCE_MX_HOST = parse_domain_name(
    "MAILHUB_BOUNCE_MX_HOST", env_str("MAILHUB_BOUNCE_MX_HOST", "")
)
# The DNS servers the checks ask (address[:port], comma-separated). Empty: the system's.
MAILHUB_DNS_RESOLVERS = parse_nameservers(
    "MAILHUB_DNS_RESOLVERS", env_str("MAILHUB_DNS_RESOLVERS", "")
)
MAILHUB_DNS_TIMEOUT_SECONDS = env_float("MAILHUB_DNS_TIMEOUT_SECONDS", 5.0, minimum=0.1)
# Every sending domain is checked again this often (beat); a verified one whose records are gone
# turns `failing`, stays usable for MAILHUB_DOMAIN_GRACE_SECONDS, then is `suspended`.
MAILHUB_DOMAIN_VERIFY_INTERVAL_SECONDS = env_float(
    "MAILHUB_DOMAIN_VERIFY_INTERVAL_SECONDS", 3600.0, minimum=1
)
MAILHUB_DOMAIN_GRACE_SECONDS = env_float("MAILHUB_DOMAIN_GRACE_SECONDS", 72 * 3600.0, minimum=0)

# ESP tracking webhooks (api/esp_webhooks.py): the relays whose bounce and complaint events
# Mailhub takes, each at /esp/<name>/tracking/ (comma-separated; empty: none mounted).
MAILHUB_ESP_WEBHOOKS = env_list("MAILHUB_ESP_WEBHOOKS", "")
# HTTP basic auth ("user:password") every ESP must send, in the URL configured at the ESP. Required
# with any ESP: it is the only proof of origin anymail has for SES (SNS signatures are not
# verified) and Postmark; SendGrid and Mailgun events are also signed (keys below).
MAILHUB_ESP_WEBHOOK_SECRET = env_str("MAILHUB_ESP_WEBHOOK_SECRET", "")
# SendGrid's "Signed Event Webhook" verification key (the base64 public key it shows): set, every
# SendGrid event's ECDSA signature is checked too.
MAILHUB_ESP_SENDGRID_VERIFICATION_KEY = env_str("MAILHUB_ESP_SENDGRID_VERIFICATION_KEY", "")
# Mailgun's HTTP webhook signing key: every Mailgun event's HMAC is checked. Required with mailgun.
MAILHUB_ESP_MAILGUN_SIGNING_KEY = env_str("MAILHUB_ESP_MAILGUN_SIGNING_KEY", "")


def _esp_settings_problem() -> str:
    """Why the ESP webhook settings would let an unsigned event in, or "" when they do not."""
    unknown = set(MAILHUB_ESP_WEBHOOKS) - {"amazon_ses", "sendgrid", "mailgun", "postmark"}
    if unknown:
        return (
            "MAILHUB_ESP_WEBHOOKS takes amazon_ses, sendgrid, mailgun, postmark; "
            f"got {', '.join(sorted(unknown))}"
        )
    if MAILHUB_ESP_WEBHOOKS and ":" not in MAILHUB_ESP_WEBHOOK_SECRET:
        return "MAILHUB_ESP_WEBHOOK_SECRET must be user:password when MAILHUB_ESP_WEBHOOKS is set"
    if "mailgun" in MAILHUB_ESP_WEBHOOKS and not MAILHUB_ESP_MAILGUN_SIGNING_KEY:
        return "MAILHUB_ESP_MAILGUN_SIGNING_KEY is required when MAILHUB_ESP_WEBHOOKS has mailgun"
    if MAILHUB_ESP_SENDGRID_VERIFICATION_KEY:
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        try:
            load_der_public_key(base64.b64decode(MAILHUB_ESP_SENDGRID_VERIFICATION_KEY))
        except ValueError:
            return "MAILHUB_ESP_SENDGRID_VERIFICATION_KEY is not a base64 public key"
    return ""


if _esp_problem := _esp_settings_problem():
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(_esp_problem)
# What anymail reads (its own names): basic auth for every ESP, and each ESP's signing key.
ANYMAIL = {
    "WEBHOOK_SECRET": MAILHUB_ESP_WEBHOOK_SECRET,
    "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": MAILHUB_ESP_SENDGRID_VERIFICATION_KEY or None,
    "MAILGUN_WEBHOOK_SIGNING_KEY": MAILHUB_ESP_MAILGUN_SIGNING_KEY,
}

CELERY_BEAT_SCHEDULE = {
    "dispatch-due-deliveries": {
        "task": "deliveries.tasks.dispatch_due",
        "schedule": MAILHUB_DISPATCH_INTERVAL_SECONDS,
        # A tick that waited longer than one interval is stale; the next one does its work.
        "options": {"queue": MAILHUB_DISPATCH_QUEUE, "expires": MAILHUB_DISPATCH_INTERVAL_SECONDS},
    },
}
# The tick that checks due sending domains' DNS again: a minute's tick, each domain every interval.
CELERY_BEAT_SCHEDULE["domains-reverify"] = {
    "task": "domains.tasks.reverify_due",
    "schedule": min(60.0, MAILHUB_DOMAIN_VERIFY_INTERVAL_SECONDS),
    "options": {"queue": MAILHUB_DISPATCH_QUEUE, "expires": 60.0},
}

# --- History partitions: events and attempts, a partition a day (deliveries/partitions.py) ------
# Beat makes each history table's day partitions this many days ahead, so that a day's rows
# always find theirs (a row whose day has none lands in the DEFAULT partition, and moves into
# its day's partition when that is made).
MAILHUB_HISTORY_PARTITIONS_AHEAD_DAYS = env_int(
    "MAILHUB_HISTORY_PARTITIONS_AHEAD_DAYS", 7, minimum=1
)
# How often beat looks for missing partitions (a catalog query; it creates one a day per table).
MAILHUB_HISTORY_PARTITIONS_INTERVAL_SECONDS = env_float(
    "MAILHUB_HISTORY_PARTITIONS_INTERVAL_SECONDS", 3600.0, minimum=1
)
CELERY_BEAT_SCHEDULE["history-partitions"] = {
    "task": "deliveries.tasks.history_partitions",
    "schedule": MAILHUB_HISTORY_PARTITIONS_INTERVAL_SECONDS,
    "options": {
        "queue": MAILHUB_DISPATCH_QUEUE,
        "expires": MAILHUB_HISTORY_PARTITIONS_INTERVAL_SECONDS,
    },
}

# --- Webhooks: signed event notifications ---------------------------------------------------------
# Webhook work has a queue of its own, consumed by its own worker pool: a slow client endpoint
# can hold webhook workers, never the mail queues.
MAILHUB_WEBHOOK_QUEUE = f"{MAILHUB_QUEUE_PREFIX}webhooks"
# Beat's webhook ticks (fan-out of new events, publishing of due endpoints) have a small queue of
# their own, consumed by the webhook pool AND the general mail pool. On `webhooks` a tick waited
# behind every queued POST, and with all webhook processes waiting on slow endpoints no tick ran
# at all (each expired unseen). Not on `mailhub.dispatch`: the reserved `mail.high` pool consumes
# that, and a tick may spend up to an interval fanning out a burst of events. The tick only talks
# to Postgres, so it runs on whichever of the two pools has a process free first.
MAILHUB_WEBHOOK_TICK_QUEUE = f"{MAILHUB_QUEUE_PREFIX}webhooks.tick"
CELERY_TASK_QUEUES += [_task_queue(MAILHUB_WEBHOOK_QUEUE), _task_queue(MAILHUB_WEBHOOK_TICK_QUEUE)]
# How often beat runs the webhook tick: fan new events out to endpoints, publish due endpoints.
MAILHUB_WEBHOOK_INTERVAL_SECONDS = env_float("MAILHUB_WEBHOOK_INTERVAL_SECONDS", 1.0, minimum=0.1)
# Events read per fan-out transaction; a tick runs such transactions for up to one interval.
MAILHUB_WEBHOOK_FANOUT_BATCH = env_int("MAILHUB_WEBHOOK_FANOUT_BATCH", 1000, minimum=1)
# Events per POST: a backlog drains in big batches instead of one request per event.
MAILHUB_WEBHOOK_MAX_BATCH = env_int("MAILHUB_WEBHOOK_MAX_BATCH", 100, minimum=1)
# Connect timeout, and the whole request (connect, send, response head and excerpt) limit.
MAILHUB_WEBHOOK_CONNECT_TIMEOUT_SECONDS = env_float(
    "MAILHUB_WEBHOOK_CONNECT_TIMEOUT_SECONDS", 3.0, minimum=0.1
)
MAILHUB_WEBHOOK_TIMEOUT_SECONDS = env_float("MAILHUB_WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1)
# One task sends an endpoint's batches one after the other for at most this long, then hands the
# rest to the next tick, so that one busy endpoint cannot keep a worker to itself.
MAILHUB_WEBHOOK_TASK_BUDGET_SECONDS = env_float(
    "MAILHUB_WEBHOOK_TASK_BUDGET_SECONDS", 10.0, minimum=1
)
# A published delivery task not started within this time is published again (lost publish).
MAILHUB_WEBHOOK_REPUBLISH_AFTER_SECONDS = env_float(
    "MAILHUB_WEBHOOK_REPUBLISH_AFTER_SECONDS", 60.0, minimum=1
)
# Backoff of a failing endpoint: 10 s, 20 s, 40 s ... capped at one hour, minus up to 20 % jitter.
MAILHUB_WEBHOOK_RETRY_BASE_SECONDS = env_float(
    "MAILHUB_WEBHOOK_RETRY_BASE_SECONDS", 10.0, minimum=0
)
MAILHUB_WEBHOOK_RETRY_FACTOR = env_float("MAILHUB_WEBHOOK_RETRY_FACTOR", 2.0, minimum=1)
MAILHUB_WEBHOOK_RETRY_CAP_SECONDS = env_float(
    "MAILHUB_WEBHOOK_RETRY_CAP_SECONDS", 3600.0, minimum=0
)
MAILHUB_WEBHOOK_RETRY_JITTER = env_float("MAILHUB_WEBHOOK_RETRY_JITTER", 0.2, minimum=0)
# An event not delivered this long after it was fanned out is given up (GET /api/v1/events still
# has it), and an endpoint failing every attempt for this long is disabled automatically.
MAILHUB_WEBHOOK_RETRY_HORIZON_SECONDS = env_float(
    "MAILHUB_WEBHOOK_RETRY_HORIZON_SECONDS", 86400.0, minimum=1
)
MAILHUB_WEBHOOK_DISABLE_AFTER_SECONDS = env_float(
    "MAILHUB_WEBHOOK_DISABLE_AFTER_SECONDS", 86400.0, minimum=1
)
# Server-side request forgery guard. Off in production: webhook URLs must be https and resolve to
# public addresses only. The tests turn on http and loopback to reach their own receiver.
MAILHUB_WEBHOOK_ALLOW_HTTP = env_bool("MAILHUB_WEBHOOK_ALLOW_HTTP", False)
MAILHUB_WEBHOOK_ALLOW_LOOPBACK = env_bool("MAILHUB_WEBHOOK_ALLOW_LOOPBACK", False)
MAILHUB_WEBHOOK_ALLOW_PRIVATE = env_bool("MAILHUB_WEBHOOK_ALLOW_PRIVATE", False)
CELERY_BEAT_SCHEDULE["webhooks-tick"] = {
    "task": "webhooks.tasks.tick",
    "schedule": MAILHUB_WEBHOOK_INTERVAL_SECONDS,
    "options": {"queue": MAILHUB_WEBHOOK_TICK_QUEUE, "expires": MAILHUB_WEBHOOK_INTERVAL_SECONDS},
}

# --- API: batches, idempotency, scheduling, templates, attachments, rate limits, OpenAPI ---------
# Every limit below is checked before anything is stored, and documented in the OpenAPI schema.
MAILHUB_MAX_BATCH_MESSAGES = env_int("MAILHUB_MAX_BATCH_MESSAGES", 500, minimum=1)
MAILHUB_MAX_SCHEDULE_DAYS = env_int("MAILHUB_MAX_SCHEDULE_DAYS", 30, minimum=1)
# Decoded sizes. A request is also bounded by MAILHUB_MAX_REQUEST_BYTES (4 MiB by default) and
# base64 is a third larger than the file: raise both together.
MAILHUB_MAX_ATTACHMENTS = env_int("MAILHUB_MAX_ATTACHMENTS", 10, minimum=0)
MAILHUB_MAX_ATTACHMENT_BYTES = env_int("MAILHUB_MAX_ATTACHMENT_BYTES", 1024 * 1024, minimum=1)
MAILHUB_MAX_ATTACHMENTS_BYTES = env_int("MAILHUB_MAX_ATTACHMENTS_BYTES", 2 * 1024 * 1024, minimum=1)
MAILHUB_MAX_TAGS = env_int("MAILHUB_MAX_TAGS", 10, minimum=0)
MAILHUB_MAX_METADATA_KEYS = env_int("MAILHUB_MAX_METADATA_KEYS", 20, minimum=0)
MAILHUB_MAX_METADATA_BYTES = env_int("MAILHUB_MAX_METADATA_BYTES", 2048, minimum=2)
# Stored answers to requests sent with an Idempotency-Key; `expires_at` rows may be purged after.
MAILHUB_IDEMPOTENCY_TTL_HOURS = env_int("MAILHUB_IDEMPOTENCY_TTL_HOURS", 24, minimum=24)
# Requests per minute and API key, unless the key has its own `rate_limit_per_minute`.
MAILHUB_API_RATE_LIMIT_PER_MINUTE = env_int("MAILHUB_API_RATE_LIMIT_PER_MINUTE", 1200, minimum=1)
# The rate-limit counters live in Postgres (accounts.models.RateCounter), so every API process
# sees the same counts without another service to run.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["api.throttling.ApiKeyRateThrottle"]
# DRF's JSON parser with a bound on nesting (a deeply nested body is a 400, not a 500).
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = ["api.parsers.JSONParser"]
REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "api.schema.MailhubAutoSchema"
SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "Mailhub API",
    "VERSION": "1",
    "DESCRIPTION": "Transactional mail; api.schema.describe writes the full description.",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.describe",
    ],
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # The docs page works offline: Swagger UI is served from the installed sidecar package.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",  # operations are tagged by what follows: messages, ...
    "ENUM_NAME_OVERRIDES": {
        "DeliveryStatusEnum": "deliveries.states.DeliveryStatus",
        "MessageStatusEnum": "deliveries.states.MessageStatus",
    },
}

# --- SMTP submission: the `submission` process (api/submission.py) -----------------------------
# Where it listens: 587 is submission's port (RFC 6409); a process not run as root cannot bind it,
# so the default is 2587 on loopback and production maps 587 to it (deploy/).
MAILHUB_SUBMISSION_BIND = parse_bind(
    "MAILHUB_SUBMISSION_BIND", env_str("MAILHUB_SUBMISSION_BIND", "127.0.0.1:2587")
)
# The certificate (chain) and private key offered with STARTTLS, PEM files. Required unless
# MAILHUB_SUBMISSION_ALLOW_PLAINTEXT_LOOPBACK; ./scripts/start makes a self-signed pair in var/.
MAILHUB_SUBMISSION_TLS_CERT = env_str("MAILHUB_SUBMISSION_TLS_CERT", "")
MAILHUB_SUBMISSION_TLS_KEY = env_str("MAILHUB_SUBMISSION_TLS_KEY", "")
if bool(MAILHUB_SUBMISSION_TLS_CERT) != bool(MAILHUB_SUBMISSION_TLS_KEY):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "MAILHUB_SUBMISSION_TLS_CERT and MAILHUB_SUBMISSION_TLS_KEY are set together or not at all"
    )
# Development only: AUTH without TLS from a loopback address (an API key in clear text never
# leaves the machine). Everyone else still needs STARTTLS first.
MAILHUB_SUBMISSION_ALLOW_PLAINTEXT_LOOPBACK = env_bool(
    "MAILHUB_SUBMISSION_ALLOW_PLAINTEXT_LOOPBACK", False
)
# The largest message accepted, as sent (headers, bodies, base64 attachments): advertised with
# SIZE. By default the API's request limit, which bounds the same content sent as JSON.
MAILHUB_SUBMISSION_MAX_MESSAGE_BYTES = env_int(
    "MAILHUB_SUBMISSION_MAX_MESSAGE_BYTES", DATA_UPLOAD_MAX_MEMORY_SIZE, minimum=1024
)
# Connections one API key may hold open at once, per submission process.
MAILHUB_SUBMISSION_MAX_CONNECTIONS_PER_KEY = env_int(
    "MAILHUB_SUBMISSION_MAX_CONNECTIONS_PER_KEY", 10, minimum=1
)
# Threads that validate and store submitted messages (each keeps its own database connection).
MAILHUB_SUBMISSION_THREADS = env_int("MAILHUB_SUBMISSION_THREADS", 4, minimum=1)

# --- Operations: admin, management commands, health, metrics, Django email backend ---------------
# Flower and the workers' remote control share the broker with any other stack on it; a prefix of
# their exchanges keeps one stack's Flower, `mailq` and /metrics from seeing another's workers.
CELERY_CONTROL_EXCHANGE = f"{MAILHUB_QUEUE_PREFIX}celery"
CELERY_EVENT_EXCHANGE = f"{MAILHUB_QUEUE_PREFIX}celeryev"
# /healthz, /readyz and the metrics answer probes and scrapers addressed by IP, whatever
# ALLOWED_HOSTS says.
MIDDLEWARE.insert(0, "deliveries.health.HealthCheckMiddleware")
# This project's own mail (password resets, error reports) goes through Mailhub itself.
EMAIL_BACKEND = env_str("DJANGO_EMAIL_BACKEND", "api.backends.MailhubBackend")
# The client that mail sent through api.backends.MailhubBackend belongs to (created on
# first use), and its priority unless a message carries an X-Mailhub-Priority header.
MAILHUB_EMAIL_BACKEND_CLIENT = env_str("MAILHUB_EMAIL_BACKEND_CLIENT", "django")
MAILHUB_EMAIL_BACKEND_PRIORITY = env_str("MAILHUB_EMAIL_BACKEND_PRIORITY", "normal")
if MAILHUB_EMAIL_BACKEND_PRIORITY not in MAILHUB_QUEUES:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "MAILHUB_EMAIL_BACKEND_PRIORITY must be one of high, normal, low, "
        f"got {MAILHUB_EMAIL_BACKEND_PRIORITY!r}"
    )
DEFAULT_FROM_EMAIL = env_str("DJANGO_DEFAULT_FROM_EMAIL", "Mailhub <mailhub@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The client `send_test_mail` sends as (created on first use).
MAILHUB_OPS_CLIENT = env_str("MAILHUB_OPS_CLIENT", "operations")
# /readyz: how long RabbitMQ may take to accept a connection before the instance is not ready.
MAILHUB_READY_BROKER_TIMEOUT_SECONDS = env_float(
    "MAILHUB_READY_BROKER_TIMEOUT_SECONDS", 1.0, minimum=0.1
)
# /metrics (and Flower's, through deploy/flowerconfig.py): with a token set, scrapers must send
# `Authorization: Bearer <token>`. ./scripts/start generates one; without one /metrics is open.
MAILHUB_METRICS_TOKEN = env_str("MAILHUB_METRICS_TOKEN", "")
# /metrics asks the workers for their pool state by broadcast. How many will answer is unknown,
# so it waits until this long has passed without a reply: every scrape costs at least this much.
# Workers answer within milliseconds (measured: all replies within 60 ms, on two saturated cores).
MAILHUB_METRICS_INSPECT_TIMEOUT_SECONDS = env_float(
    "MAILHUB_METRICS_INSPECT_TIMEOUT_SECONDS", 0.25, minimum=0.05
)
# /metrics counts rows once they are this old, so that one stamped just before its transaction
# committed is not missed.
MAILHUB_METRICS_LAG_SECONDS = env_float("MAILHUB_METRICS_LAG_SECONDS", 30.0, minimum=0)
# /metrics counts accepted mail and delivery events per client for this many clients (the previous
# UTC day's busiest, then the first seen today), the rest as client="other": a bounded label set.
MAILHUB_METRICS_TOP_CLIENTS = env_int("MAILHUB_METRICS_TOP_CLIENTS", 20, minimum=0)

# --- Webhooks: the OpenAPI schema -----------------------------------------------------------------
# Event types appear in event documents, webhook endpoints and filters: one name for all of them.
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["EventTypeEnum"] = "deliveries.models.Event.Type"

# --- Sending domains: the OpenAPI schema ----------------------------------------------------------
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "DkimAlgorithmEnum": "domains.models.DkimKey.Algorithm",
        "DkimKeyStateEnum": "domains.models.DkimKey.State",
        "SendingDomainStateEnum": "domains.models.SendingDomain.State",
    }
)
