"""deploy/Dockerfile: hadolint finds nothing, and the image matches what compose and the
Kubernetes manifests expect of it (user, build context, what it copies and leaves out)."""

from __future__ import annotations

import re
import shutil
import subprocess

import yaml

from tests.deploy.conftest import DEPLOY

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*(#.*\n\s*)*", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_hadolint_finds_nothing_to_fix():
    hadolint = shutil.which("hadolint") or str(DEPLOY.parent / ".venv/bin/hadolint")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_as_the_user_the_manifests_expect_and_serves_the_api():
    steps = instructions()
    [user] = [rest for keyword, rest in steps if keyword == "USER"]
    workers = yaml.safe_load((DEPLOY / "k8s/workers.yaml").read_text().split("---")[1])
    run_as = workers["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert user == f"{run_as}:{run_as}"
    [cmd] = [rest for keyword, rest in steps if keyword == "CMD"]
    assert "deploy/gunicorn.conf.py" in cmd
    assert steps[0][0] == "FROM" and "python:3.11" in steps[0][1]


def test_compose_builds_it_from_the_repository_root_without_the_local_state():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    build = compose["x-mailhub"]["build"]
    assert (DEPLOY / build["context"]).resolve() == DEPLOY.parent
    assert (DEPLOY.parent / build["dockerfile"]).resolve() == DOCKERFILE
    ignored = set((DEPLOY / "Dockerfile.dockerignore").read_text().split())
    assert {".git", ".venv", "var", ".env", "**/.env", "tests"} <= ignored
    for keyword, rest in instructions():
        if keyword == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                assert source == "." or (DEPLOY.parent / source).exists(), source


def test_the_image_installs_the_runtime_lock_with_its_hashes_and_nothing_more():
    steps = instructions()
    copied = {
        rest.split()[-1]: rest.split()[0]
        for keyword, rest in steps
        if keyword == "COPY" and rest.split()[0] != "."
    }
    [install] = [rest for keyword, rest in steps if keyword == "RUN" and "pip install" in rest]
    assert re.search(r"pip install --require-hashes -r (\S+)", install), install
    target = re.search(r"-r (\S+)", install)[1]
    assert copied[target] == "requirements/runtime.txt"
    assert install.count("pip install") == 1
