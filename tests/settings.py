"""Settings for the test run: the real settings, with a test environment set first.

Integration tests start real Celery workers with this same environment, so the queues get a
prefix of their own: a test run never takes mail from (or gives mail to) a running Mailhub.
"""

import os
import uuid
from pathlib import Path

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("MAILHUB_QUEUE_PREFIX", f"test-{uuid.uuid4().hex[:8]}.")
# A fixed Fernet key (tests only): DKIM private keys made by a test are encrypted with it.
os.environ.setdefault(
    "MAILHUB_DKIM_ENCRYPTION_KEYS", "dGVzdHMtb25seS1ka2ltLWVuY3J5cHRpb24ta2V5ISE="
)
# Existing tests send from any domain; the tests of sending domains turn the check back on.
os.environ.setdefault("MAILHUB_ALLOW_UNVERIFIED_DOMAINS", "1")
# No test asks the internet's DNS: checks that a test does not point at its own DNS server
# (tests/support/dns_server.py) ask a port where nothing answers, and give up quickly.
os.environ.setdefault("MAILHUB_DNS_RESOLVERS", "127.0.0.1:9")
os.environ.setdefault("MAILHUB_DNS_TIMEOUT_SECONDS", "0.5")

# Every ESP's tracking webhook, with test credentials (tests/integration/test_esp_webhooks.py).
os.environ.setdefault("MAILHUB_ESP_WEBHOOKS", "amazon_ses,sendgrid,mailgun,postmark")
os.environ.setdefault("MAILHUB_ESP_WEBHOOK_SECRET", "esp:tests-only-webhook-secret")
os.environ.setdefault("MAILHUB_ESP_MAILGUN_SIGNING_KEY", "tests-only-mailgun-signing-key")
# The public half of tests/data/esp/sendgrid_test_key.pem (SendGrid's key is ECDSA P-256).
os.environ.setdefault(
    "MAILHUB_ESP_SENDGRID_VERIFICATION_KEY",
    (Path(__file__).parent / "data" / "esp" / "sendgrid_test_key.pub").read_text().strip(),
)

from mailhub.settings import *  # noqa: F403

# WhiteNoise warns about a missing STATIC_ROOT on every request; tests serve no static files.
MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("whitenoise.")]  # noqa: F405
