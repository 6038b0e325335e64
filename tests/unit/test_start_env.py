"""./scripts/start's first-run secrets, its `.env` section run on its own in a scratch folder:
every secret is generated once, kept afterwards, and the metrics token is among them."""

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

START = Path(__file__).resolve().parents[2] / "scripts" / "start"
BEGIN = "# --- .env: the secrets of this installation"
END = "# --- Django:"


def env_section() -> str:
    text = START.read_text()
    return text[text.index(BEGIN) : text.index(END)]


def run_env_section(folder: Path) -> dict[str, str]:
    script = "say() { :; }\nload_env() { :; }\n" + env_section()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=folder,
        env={"PATH": path, "HOME": str(folder)},
        check=True,
    )
    lines = (folder / ".env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_a_first_start_generates_every_secret_the_metrics_token_included(tmp_path):
    env = run_env_section(tmp_path)

    assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", env["MAILHUB_METRICS_TOKEN"])
    assert re.fullmatch(r"[A-Za-z0-9_-]{60,}", env["DJANGO_SECRET_KEY"])
    assert env["FLOWER_BASIC_AUTH"].startswith("admin:")
    assert env["DJANGO_DEBUG"] == "0"
    Fernet(env["MAILHUB_DKIM_ENCRYPTION_KEYS"])  # a key the settings accept
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600


def test_a_later_start_keeps_the_secrets_it_generated(tmp_path):
    first = run_env_section(tmp_path)
    assert run_env_section(tmp_path) == first


@pytest.mark.parametrize(
    "spelling", ["MAILHUB_METRICS_TOKEN=mine", "export MAILHUB_METRICS_TOKEN=mine"]
)
def test_a_token_already_in_env_is_kept_and_a_missing_one_is_added(tmp_path, spelling):
    (tmp_path / ".env").write_text("DJANGO_SECRET_KEY=kept\n")
    added = run_env_section(tmp_path)
    assert added["DJANGO_SECRET_KEY"] == "kept" and len(added["MAILHUB_METRICS_TOKEN"]) >= 40

    (tmp_path / ".env").write_text(f"{spelling}\n")
    assert run_env_section(tmp_path).get("MAILHUB_METRICS_TOKEN", "mine") == "mine"
    assert (tmp_path / ".env").read_text().count("MAILHUB_METRICS_TOKEN") == 1
