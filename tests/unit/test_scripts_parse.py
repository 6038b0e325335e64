"""Every shell script in scripts/ (and .ci/run) parses: a quote that ends a string early (an
apostrophe in a comment of an embedded Python snippet did once) breaks the command for
everyone, and only `bash -n` sees it without running the script."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(
    path
    for path in [*(ROOT / "scripts").iterdir(), ROOT / ".ci" / "run"]
    if path.is_file()
    and path.read_text(errors="replace").startswith(("#!/usr/bin/env bash", "#!/bin/bash"))
)


def test_there_are_scripts_to_check():
    assert {"start", "test", "bootstrap"} <= {path.name for path in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_the_script_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
