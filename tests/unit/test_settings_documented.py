"""Every environment variable the settings read is documented where operators look for it."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = (ROOT / "mailhub" / "settings.py").read_text()
VARIABLES = sorted(
    set(re.findall(r'env_(?:str|bool|int|float|list|choice)\(\s*"([A-Z0-9_]+)"', SETTINGS))
    | set(re.findall(r'parse_\w+\(\s*"([A-Z0-9_]+)"', SETTINGS))
)


def test_the_settings_read_variables_at_all():
    assert "DATABASE_URL" in VARIABLES and len(VARIABLES) > 20


@pytest.mark.parametrize("variable", VARIABLES)
def test_each_variable_is_in_the_readme_and_the_example_environment(variable):
    assert f"`{variable}`" in (ROOT / "README.md").read_text(), "missing from README.md"
    assert variable in (ROOT / ".env.example").read_text(), "missing from .env.example"
