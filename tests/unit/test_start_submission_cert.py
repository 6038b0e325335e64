"""./scripts/start's certificate for SMTP submission, its section run on its own in a scratch
folder: made once when none is configured, kept afterwards, never made over a configured one."""

import os
import ssl
import subprocess
from pathlib import Path

START = Path(__file__).resolve().parents[2] / "scripts" / "start"
BEGIN = "# --- STARTTLS for SMTP submission"
END = "# --- which processes"


def run_cert_section(folder: Path, **env: str) -> dict[str, str]:
    text = START.read_text()
    script = (
        'say() { echo "start: $*"; }\ndie() { echo "$*" >&2; exit 1; }\n'
        + text[text.index(BEGIN) : text.index(END)]
        + 'echo "CERT=${MAILHUB_SUBMISSION_TLS_CERT:-}"\n'
        + 'echo "KEY=${MAILHUB_SUBMISSION_TLS_KEY:-}"\n'
    )
    (folder / "var").mkdir(exist_ok=True)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=folder,
        env={"PATH": os.environ["PATH"], "HOME": str(folder), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in result.stdout.splitlines() if "=" in line]
    return dict(line.split("=", 1) for line in lines)


def test_a_first_start_makes_a_certificate_for_localhost_and_a_later_one_keeps_it(tmp_path):
    made = run_cert_section(tmp_path)
    cert, key = Path(made["CERT"]), Path(made["KEY"])
    assert cert == tmp_path / "var" / "submission-cert.pem"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)  # a pair that goes together
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(cert)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    before = cert.read_bytes()
    assert run_cert_section(tmp_path) == made
    assert cert.read_bytes() == before


def test_a_configured_certificate_is_used_as_it_is(tmp_path):
    env = {"MAILHUB_SUBMISSION_TLS_CERT": "/etc/tls/c.pem", "MAILHUB_SUBMISSION_TLS_KEY": "/k"}
    assert run_cert_section(tmp_path, **env) == {"CERT": "/etc/tls/c.pem", "KEY": "/k"}
    assert not (tmp_path / "var" / "submission-cert.pem").exists()
