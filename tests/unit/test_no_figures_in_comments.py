"""No measured figures in the code's comments and docstrings: they go stale there; they belong in
docs/PERFORMANCE.md (and in commit messages).

A figure is a timing below a second ("0.4 ms", "70 µs"), a CPU time ("1.2 s of CPU"), a memory
measurement ("peak 94 MiB", "+84 MB"), a throughput ("1,000 frames/s") or a speed-up ("3× faster").
The code's own limits and constants stated in its own words stay ("at most 64 KiB", "expires after
60 s", "every argon2 hash allocates 19 MiB"): only the phrases below are read as measurements.
Comments are read with `tokenize`, docstrings with `ast`; nothing is imported.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("broker_contracts", "store", "gateway", "render_nodes", "shell", "rfarmctl", "migrations")

NUMBER = r"\d[\d,]*(?:\.\d+)?"
MEMORY = r"(?:[KMGT]i?B|kB)"
FIGURES = [
    # a time below a second: what a profile or a benchmark measures, never a limit of the code
    re.compile(rf"(?<![\w.]){NUMBER}\s*(?:ms|µs|us|ns)\b"),
    # CPU time in any unit
    re.compile(rf"(?<![\w.]){NUMBER}\s*(?:s|sec|seconds?|ms|µs|us|ns)\s+of\s+(?:\w+\s+)?CPU\b", re.I),
    # memory measured: a peak, a resident size, a growth, a before → after
    re.compile(rf"\b(?:peak|RSS|resident)\b[^.;]*?{NUMBER}\s*{MEMORY}", re.I),
    re.compile(rf"{NUMBER}\s*{MEMORY}[^.;]*?\b(?:peak|RSS|resident)\b", re.I),
    re.compile(rf"\+\s*{NUMBER}\s*{MEMORY}\b"),
    re.compile(rf"{NUMBER}\s*(?:{MEMORY})?\s*(?:→|->)\s*{NUMBER}\s*{MEMORY}\b"),
    # a throughput
    re.compile(rf"(?<![\w.]){NUMBER}\s*(?:[a-z]+\s*)?/\s*s\b", re.I),
    re.compile(rf"(?<![\w.]){NUMBER}\s+\w+\s+(?:per|a)\s+second\b", re.I),
    # a speed-up or a share
    re.compile(rf"(?<![\w.]){NUMBER}\s*(?:x|×|times)\s+(?:faster|slower|quicker|less|more|fewer)\b", re.I),
    re.compile(rf"(?<![\w.]){NUMBER}\s*%"),
]


def comments_and_docstrings(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of every comment and every docstring line of a Python file."""
    source = path.read_text(encoding="utf-8")
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        first = node.body[0] if node.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            for offset, line in enumerate(first.value.value.splitlines()):
                yield first.lineno + offset, line


def figures_in(text: str) -> list[str]:
    return [m.group(0) for pattern in FIGURES for m in pattern.finditer(text)]


def figures_under(root: Path) -> list[str]:
    """``file:line: figure`` for each figure in the comments and docstrings of the project's packages."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for line, text in comments_and_docstrings(path):
                found.extend(f"{path.relative_to(root)}:{line}: {figure!r}" for figure in figures_in(text))
    return found


def test_no_figures_in_the_packages_comments() -> None:
    found = figures_under(REPO)
    assert not found, "measured figures in comments (move them to docs/PERFORMANCE.md):\n" + "\n".join(found)


@pytest.mark.parametrize(
    "text",
    [
        "# now 0.4 ms of 1 ms",
        "about 70 µs of CPU before any row",
        "# (20,000 of them: +84 MB)",
        "peak 94 MiB with 2 threads against 73 MiB with 1",
        "a full run gave 160 frames/s",
        "answers 4,115/s at 16 clients",
        "3× faster than before",
        "a third: 33 % of the gateway's CPU",
        "1.2 s of gateway CPU per submit",
        "from 11.7 KB → 5.6 KB",
    ],
)
def test_a_measured_figure_is_caught(text: str) -> None:
    assert figures_in(text), text


@pytest.mark.parametrize(
    "text",
    [
        "# an entry bigger than this is dropped unread: at most 64 KiB",
        "The subscription expires after 60 s; renewed every ~45 s (the farm keeps it 120 s).",
        "Every argon2 hash allocates 19 MiB; a fixed threshold of 1 MiB keeps big blocks mmapped.",
        "Bounded retry delays (0.2 s doubling to 5 s) that log once per outage.",
        "SIGTERM the whole process group, SIGKILL after 1.5 s.",
        "Redis's limit is 512 MB by default, and any number of fields",
        "a % b, the 2nd try, a TTL of 3600 seconds, one round trip instead of two",
    ],
)
def test_a_limit_of_the_code_is_not_a_figure(text: str) -> None:
    assert not figures_in(text), figures_in(text)
