"""The tiers of tests/ stay apart: no module imports a test module, and unit tests ask for no server."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
# the fixtures of tests/conftest.py (and tests/faults/conftest.py) that reach Redis or PostgreSQL
SERVER_FIXTURES = {"redis_url", "pg_admin_url", "database_url", "prefix", "farm", "gw", "rig", "redis_farm", "pg_farm"}


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(TESTS.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imported(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Every dotted name an import statement reaches, `from x import y` giving both x and x.y."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if node.module else base + alias.name


def test_no_module_under_tests_imports_a_test_module() -> None:
    found = [
        f"{path.relative_to(TESTS)}:{line}: {name}"
        for path, tree in _modules()
        for line, name in _imported(tree)
        if name.rsplit(".", 1)[-1].startswith("test_")
    ]
    assert found == [], "share helpers through tests/support or a conftest fixture instead:\n" + "\n".join(found)


def test_unit_tests_ask_for_no_server_fixture() -> None:
    found = [
        f"{path.relative_to(TESTS)}:{node.lineno}: {node.name}({arg.arg})"
        for path, tree in _modules()
        if path.is_relative_to(TESTS / "unit")
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for arg in node.args.args
        if arg.arg in SERVER_FIXTURES
    ]
    assert found == [], "a test that needs Redis or PostgreSQL belongs in tests/integration:\n" + "\n".join(found)
