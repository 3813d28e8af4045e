"""Hypothesis strategies for fuzzing the contracts and the gateway: nasty text, any value, a model's map."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

NASTY_TEXT = st.sampled_from(
    [
        "",
        "\x00",
        "a\x00b",
        "'); DROP TABLE jobs; --",
        "%s %(name)s $1 {0}",
        "\\",
        "\u202e\u200b",
        "ünïcødé ✓ 🎬",
        " " * 10,
        "x" * 5000,
        "1-100",
        "-5--1",
        "9" * 40,
        "\n\r\t",
    ]
)
TEXT = st.one_of(st.text(max_size=16), NASTY_TEXT)
INTS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, 1, -1, 100, 101, 2**31, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]),
)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, st.floats(), TEXT, st.binary(max_size=12))
# a field's value: mostly a scalar, sometimes a small container (cheap to generate, so 5,000 run fast)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(["id", "name"])), SCALARS, max_size=3),
)


def field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


@st.composite
def mutated_map(
    draw: st.DrawFn, names: list[str], base: dict[str, Any] | None = None, values: st.SearchStrategy[Any] = VALUES
) -> dict[str, Any]:
    """A map shaped like a model: some of its fields (kept, dropped or given wrong values) and extras."""
    out: dict[str, Any] = dict(base or {})
    for name in names:
        action = draw(st.sampled_from(["keep", "drop", "value", "value"]))
        if action == "drop":
            out.pop(name, None)
        elif action == "value":
            out[name] = draw(values)
    if draw(st.booleans()):
        out[draw(TEXT)] = draw(VALUES)
    return out


def fuzz_examples(full: int) -> int:
    """How many examples a fuzz test draws: ``full`` in CI and with RFARM_FUZZ_SCALE=1, a tenth of
    it by default, so that `./farm test tests/unit` stays quick on a developer's machine."""
    default = "1" if os.environ.get("CI") else "0.1"
    scale = float(os.environ.get("RFARM_FUZZ_SCALE", default))
    return max(20, int(full * scale))
