"""Which way imports go between rfarm's packages, read from the source with `ast` (no import runs).

- broker_contracts (the wire contracts) imports nothing of the project but itself;
- broker_client (the one Redis connection factory) imports only broker_contracts;
- render_nodes and shell never import store, gateway or rfarmctl (they only talk to Redis);
- store never imports gateway or rfarmctl; gateway (the service) never imports rfarmctl (its tools);
- migrations import nothing of the project.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLIENTS_MAY_NOT = frozenset({"store", "gateway", "rfarmctl"})


def project_packages(root: Path) -> frozenset[str]:
    """The top-level packages of the project: the folders of ``root`` with an ``__init__.py``."""
    return frozenset(p.parent.name for p in root.glob("*/__init__.py"))


def forbidden(root: Path) -> dict[str, frozenset[str]]:
    """For each package with a rule, the project packages it must not import."""
    project = project_packages(root)
    return {
        "broker_contracts": project - {"broker_contracts"},
        "broker_client": project - {"broker_client", "broker_contracts"},
        "render_nodes": CLIENTS_MAY_NOT,
        "shell": CLIENTS_MAY_NOT,
        "store": frozenset({"gateway", "rfarmctl"}),
        "gateway": frozenset({"rfarmctl"}),
        "migrations": project,
    }


def imported_packages(tree: ast.AST, own: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in ``tree``, those inside functions too; a relative
    import names the module's own package."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, own if node.level else (node.module or "").split(".")[0]))
    return found


def offences(root: Path) -> list[str]:
    """``path:line: package imports other`` for every import that breaks a rule, in file order."""
    found: list[str] = []
    for package, banned in sorted(forbidden(root).items()):
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, target in imported_packages(tree, package):
                if target in banned:
                    found.append(f"{path.relative_to(root)}:{line}: {package} imports {target}")
    return found


def test_the_project_keeps_its_import_rules() -> None:
    packages = {"broker_contracts", "broker_client", "gateway", "rfarmctl", "render_nodes", "shell", "store"}
    assert packages <= project_packages(REPO)
    problems = offences(REPO)
    assert not problems, "imports against the rules:\n" + "\n".join(problems)


def test_every_kind_of_import_against_the_rules_is_reported_with_its_line(tmp_path: Path) -> None:
    files = {
        "broker_contracts/__init__.py": "from . import codec\nimport broker_contracts.keys\nimport store\n",
        "shell/__init__.py": "import os\n\ndef later():\n    from gateway.passwords import hash_password\n",
        "render_nodes/__init__.py": "import rfarmctl.embedded as embedded\n",
        "store/__init__.py": "from broker_contracts import keys\nfrom gateway import wire\n",
        "gateway/__init__.py": "from store import users\nfrom rfarmctl.errors import CtlError\n",
        "rfarmctl/__init__.py": "import gateway\nimport store\n",
        "migrations/__init__.py": "import pathlib\nfrom store import migrate\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert offences(tmp_path) == [
        "broker_contracts/__init__.py:3: broker_contracts imports store",
        "gateway/__init__.py:2: gateway imports rfarmctl",
        "migrations/__init__.py:2: migrations imports store",
        "render_nodes/__init__.py:1: render_nodes imports rfarmctl",
        "shell/__init__.py:4: shell imports gateway",
        "store/__init__.py:2: store imports gateway",
    ]
