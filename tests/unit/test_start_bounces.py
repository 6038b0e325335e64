"""./scripts/start's choice of processes, its section run on its own: the bounces server always
runs, and while mail is captured the bounce domain defaults to one the settings accept, so a
new user sees VERP; with a real relay, or a domain set (even to empty), nothing is imposed."""

import os
import subprocess
import sys
from pathlib import Path

START = Path(__file__).resolve().parents[2] / "scripts" / "start"
BEGIN = "# --- which processes"
END = "# --- where everything is"


def run_process_section(**env: str) -> tuple[list[str], str | None]:
    text = START.read_text()
    script = (
        'die() { echo "$*" >&2; exit 1; }\n'
        + text[text.index(BEGIN) : text.index(END)]
        + 'echo "PROCESSES=${processes[*]}"\n'
        + 'echo "DOMAIN=${MAILHUB_BOUNCE_DOMAIN-<unset>}"\n'
    )
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=True,
    )
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    domain = values["DOMAIN"]
    return values["PROCESSES"].split(), None if domain == "<unset>" else domain


def test_while_mail_is_captured_the_bounces_server_runs_for_bounces_localhost():
    processes, domain = run_process_section()

    assert "bounces" in processes and "capture" in processes
    assert domain == "bounces.localhost"
    # ... which the settings accept (a bad value would stop every process at start).
    settings = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mailhub import settings; print(settings.MAILHUB_BOUNCE_DOMAIN)",
        ],
        cwd=START.parents[1],
        env={**os.environ, "MAILHUB_BOUNCE_DOMAIN": domain, "DJANGO_SECRET_KEY": "x"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert settings.stdout.strip() == "bounces.localhost"


def test_with_a_real_relay_or_a_domain_of_its_own_nothing_is_imposed():
    processes, domain = run_process_section(MAILHUB_SMTP_URL="smtp://relay.example.net:587")
    assert "bounces" in processes and "capture" not in processes
    assert domain is None

    assert run_process_section(MAILHUB_BOUNCE_DOMAIN="bounces.shop.example")[1] == (
        "bounces.shop.example"
    )
    assert run_process_section(MAILHUB_BOUNCE_DOMAIN="")[1] == ""  # set empty: VERP off
