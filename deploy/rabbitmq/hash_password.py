"""Print the RabbitMQ password hash of a password, for the users in definitions.json.

    python deploy/rabbitmq/hash_password.py 'the new password'

RabbitMQ's default scheme (rabbit_password_hashing_sha256): four random salt bytes, followed by
SHA-256(salt + password), base64-encoded. RabbitMQ >= 3.11 prints the same with
`rabbitmqctl hash_password`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import sys


def rabbitmq_password_hash(password: str, *, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def rabbitmq_password_matches(password: str, password_hash: str) -> bool:
    salt = base64.b64decode(password_hash)[:4]
    return secrets.compare_digest(rabbitmq_password_hash(password, salt=salt), password_hash)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(rabbitmq_password_hash(sys.argv[1]))
