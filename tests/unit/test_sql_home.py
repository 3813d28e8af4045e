"""Every state change in one home: the store's transition modules own every status-changing
statement and write history only through store/history.py; nothing else holds a status rule.

Reads the farm's Python and SQL sources (not tests/ nor benchmarks/, which seed and inspect a
database from outside the farm) and reports what breaks these rules:

- no status written as a SQL literal ('queued', 'failed' …) in Python: the store renders each from
  broker_contracts/states.py, so whoever edits the tables edits every guard;
- in migrations, a status literal only in the schema (CHECK, DEFAULT, a partial index);
- an `INSERT INTO task_history` / `job_history` only in store/history.py (the one writer);
- an `UPDATE tasks|jobs SET status` only in store/tasks.py and store/jobs.py;
- no SQL at all in gateway/: its handlers decide and call the store.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

NOT_THE_FARM = frozenset({"tests", "benchmarks"})
HISTORY_WRITER = "store/history.py"
TRANSITION_MODULES = frozenset({"store/tasks.py", "store/jobs.py"})
SERVICE = "gateway/"

STATUS_LITERAL = re.compile(r"'(queued|running|succeeded|failed|cancelled)'")
HISTORY_INSERT = re.compile(r"\bINSERT\s+INTO\s+(task_history|job_history)\b", re.IGNORECASE)
STATUS_UPDATE = re.compile(
    r"\bUPDATE\s+(?:tasks|jobs)\b(?:\s+(?:AS\s+)?\w+)?\s+SET\s+"
    r"(?:(?!\b(?:FROM|WHERE|RETURNING)\b).)*?(?<![\w.])status\s*=",
    re.IGNORECASE | re.DOTALL,
)
SQL_STATEMENT = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE\s+\w+(\s+\w+)?\s+SET|DELETE\s+FROM|ANALYZE)\b")
SCHEMA_STATEMENT = re.compile(r"^\s*(CREATE\s+(UNIQUE\s+)?INDEX|CREATE\s+TABLE|ALTER\s+TABLE)\b", re.IGNORECASE)


def sources(root: Path) -> list[Path]:
    """The farm's Python packages (top-level folders with an __init__.py) and its .sql files."""
    found: list[Path] = []
    for top in sorted(root.iterdir()):
        if top.name in NOT_THE_FARM or top.name.startswith(".") or not top.is_dir():
            continue
        if (top / "__init__.py").exists() or any(top.glob("*.sql")):
            found += sorted(p for p in top.rglob("*") if p.suffix in (".py", ".sql") and p.is_file())
    return found


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string constant (f-string parts too) with its line, docstrings left out."""
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def _python(rel: str, text: str) -> list[str]:
    found = []
    for line, s in _strings(ast.parse(text, filename=rel)):
        where = f"{rel}:{line}"
        for literal in STATUS_LITERAL.findall(s):
            found.append(f"{where}: status literal '{literal}' in SQL (render it from broker_contracts/states.py)")
        if HISTORY_INSERT.search(s) and rel != HISTORY_WRITER:
            found.append(f"{where}: a history row written outside {HISTORY_WRITER}")
        if STATUS_UPDATE.search(s) and rel not in TRANSITION_MODULES:
            found.append(f"{where}: a status change outside {', '.join(sorted(TRANSITION_MODULES))}")
        if rel.startswith(SERVICE) and SQL_STATEMENT.search(s):
            found.append(f"{where}: SQL in the gateway ({SQL_STATEMENT.search(s).group(1)}): it belongs in store/")  # type: ignore[union-attr]
    return found


def _sql(rel: str, text: str) -> list[str]:
    found = []
    code = re.sub(r"--[^\n]*", "", text)
    for statement in code.split(";"):
        if STATUS_LITERAL.search(statement) and not SCHEMA_STATEMENT.match(statement):
            found.append(f"{rel}: status literal outside the schema in: {statement.strip()[:80]!r}")
        if HISTORY_INSERT.search(statement):
            found.append(f"{rel}: a history row written outside {HISTORY_WRITER}")
        if STATUS_UPDATE.search(statement):
            found.append(f"{rel}: a status change outside {', '.join(sorted(TRANSITION_MODULES))}")
    return found


def violations(root: Path) -> list[str]:
    found = []
    for path in sources(root):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        found += _python(rel, text) if path.suffix == ".py" else _sql(rel, text)
    return found


def test_every_state_change_has_one_home() -> None:
    assert violations(REPO) == []


def test_the_scan_reads_the_farm() -> None:
    scanned = {p.relative_to(REPO).as_posix() for p in sources(REPO)}
    assert {"store/tasks.py", "gateway/control.py", "migrations/0001_initial.sql"} <= scanned
    assert not any(p.split("/")[0] in NOT_THE_FARM for p in scanned)


def _farm(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in {"store/__init__.py": "", "gateway/__init__.py": "", **files}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("rel", "text", "says"),
    [
        ("store/tasks.py", "Q = \"SELECT id FROM tasks WHERE status = 'queued'\"\n", "status literal 'queued'"),
        ("store/jobs.py", "Q = f\"UPDATE jobs SET x = 1 WHERE status IN ('failed', {x})\"\n", "literal 'failed'"),
        ("gateway/control.py", 'Q = """INSERT INTO task_history (task_id) VALUES (1)"""\n', "history row"),
        ("store/jobs.py", 'Q = "INSERT INTO job_history (job_id) VALUES (%s)"\n', "history row"),
        ("store/nodes.py", 'Q = "UPDATE tasks t SET work_msg = NULL, status = %s WHERE id = 1"\n', "status change"),
        ("gateway/notices.py", 'Q = "SELECT count(*) FROM tasks"\n', "SQL in the gateway"),
        ("migrations/0009_x.sql", "UPDATE tasks SET status = 'failed' WHERE id = 1;\n", "status change"),
        ("migrations/0009_x.sql", "CREATE FUNCTION f() AS $$ SELECT 'cancelled' $$;\n", "outside the schema"),
    ],
)
def test_the_check_finds_a_rule_out_of_its_home(tmp_path: Path, rel: str, text: str, says: str) -> None:
    found = violations(_farm(tmp_path, {rel: text}))
    assert any(says in v and v.startswith(rel) for v in found), found


def test_the_check_lets_the_home_be(tmp_path: Path) -> None:
    root = _farm(
        tmp_path,
        {
            "store/tasks.py": '"""No \'queued\': a docstring."""\nQ = f"UPDATE tasks SET status = {D} WHERE id = 1"\n',
            "store/history.py": 'Q = "INSERT INTO task_history (task_id) SELECT id FROM moved"\n',
            "gateway/control.py": 'def f() -> str:\n    return "job is queued: it cannot be selected"\n',
            "migrations/0001_a.sql": "CREATE TABLE t (status text DEFAULT 'queued' CHECK (status IN ('queued')));\n"
            "CREATE INDEX i ON t (status) WHERE status = 'running'; -- 'failed' in a comment\n",
            "benchmarks/__init__.py": "",
            "benchmarks/seed.py": "Q = \"INSERT INTO job_history VALUES (1, 'queued')\"\n",
        },
    )
    assert violations(root) == []
