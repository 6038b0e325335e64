"""The arrows between Mailhub's apps run one way (ARCHITECTURE.md).

    api, webhooks -> deliveries -> domains -> accounts -> mailhub

The engine (`deliveries`) never imports the REST layer: a new way in goes beside the validator
it uses, in `api/`. Every import counts, at the top of a module or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: The apps each app may import, besides itself. An import of any other app is a forbidden arrow.
#: `webhooks` has REST endpoints of its own and borrows the API's HTTP helpers (error shapes,
#: schema); the API never imports `webhooks`, so the two cannot form a cycle.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "mailhub": frozenset(),
    "accounts": frozenset({"mailhub"}),
    "domains": frozenset({"accounts", "mailhub"}),
    "deliveries": frozenset({"domains", "accounts", "mailhub"}),
    "api": frozenset({"deliveries", "domains", "accounts", "mailhub"}),
    "webhooks": frozenset({"api", "deliveries", "domains", "accounts", "mailhub"}),
}

#: The project's URLconf puts every app's URLs together: it is the one module allowed to.
COMPOSITION_ROOTS = {"mailhub/urls.py"}


def imported_apps(source: str) -> list[tuple[int, str]]:
    """(line, app) for every absolute import of one of the apps in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name.split(".")[0]) for name in names]
    return [(line, app) for line, app in found if app in MAY_IMPORT]


def forbidden_arrows(app: str, path: str, source: str) -> list[str]:
    if path in COMPOSITION_ROOTS:
        return []
    allowed = MAY_IMPORT[app] | {app}
    return [
        f"{path}:{line}: {app} -> {other}"
        for line, other in imported_apps(source)
        if other not in allowed
    ]


def test_every_app_is_on_the_map():
    packages = {p.parent.name for p in ROOT.glob("*/apps.py")} | {"mailhub"}
    assert packages == set(MAY_IMPORT)


def test_no_module_imports_against_the_arrows():
    arrows = []
    for app in MAY_IMPORT:
        for file in sorted((ROOT / app).rglob("*.py")):
            path = file.relative_to(ROOT).as_posix()
            arrows += forbidden_arrows(app, path, file.read_text())
    assert arrows == []


def test_the_walk_sees_imports_anywhere_in_a_module():
    source = (
        "import os\n"
        "from deliveries.models import Message\n"
        "def view():\n"
        "    from api.serializers import intake\n"
        "    import webhooks.services as hooks\n"
        "from . import conf\n"
    )
    assert forbidden_arrows("deliveries", "deliveries/x.py", source) == [
        "deliveries/x.py:4: deliveries -> api",
        "deliveries/x.py:5: deliveries -> webhooks",
    ]
    assert forbidden_arrows("api", "api/x.py", source) == ["api/x.py:5: api -> webhooks"]
    assert forbidden_arrows("mailhub", "mailhub/urls.py", source) == []
