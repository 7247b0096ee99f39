"""The README documents every environment variable the code reads, and the ports table matches
the defaults in the code (docs that drift are bugs)."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT

SERVICE_DIRS = (
    "common",
    "extractor",
    "graphinator",
    "tableinator",
    "schema_init",
    "api",
    "curator",
    "dashboard",
)
ALIAS = re.compile(r'alias="([A-Z][A-Z0-9_]+)"')


def settings_variables() -> set[str]:
    names: set[str] = set()
    for directory in SERVICE_DIRS:
        for path in (REPO_ROOT / directory).rglob("*.py"):
            names.update(ALIAS.findall(path.read_text()))
    return names


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    variables = settings_variables()
    assert len(variables) > 50  # the scan found the settings classes
    missing = sorted(v for v in variables if f"`{v}`" not in readme)
    assert not missing, f"undocumented environment variables: {missing}"


def test_port_tables_name_every_service_port() -> None:
    for doc in ("README.md", "CLAUDE.md"):
        text = (REPO_ROOT / doc).read_text()
        for port in (
            "8000",
            "8001",
            "8002",
            "8003",
            "8004",
            "8005",
            "8011",
            "7687",
            "5432",
            "6379",
            "5672",
            "15672",
        ):
            assert re.search(rf"^\| [^|]*\b{port}\b", text, re.MULTILINE), f"{doc} has no row for port {port}"
