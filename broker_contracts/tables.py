"""Lists of rows as tables on the wire: the field names once, then one list of values per row.

A page of 50 jobs sent as 50 maps repeats fifteen field names fifty times. As a table it is smaller
and cheaper to pack and to unpack (docs/PERFORMANCE.md has the figures), and the gateway can send
the database's row tuples as they come. The reply models that carry many rows
(ListReply, HistoryReply) read this form, and plain maps as well.

    {"columns": ["id", "name", …], "jobs": [[7, "shot-10", …], [6, "shot-9", …]]}
"""

from __future__ import annotations

from typing import Any

MAX_COLUMNS = 64


def from_table(data: Any, key: str) -> Any:
    """``{"columns": [...], key: [[...], ...], ...}`` → ``{key: [{...}, ...], ...}``; anything
    without ``columns`` is returned as it is, for the model to judge."""
    if not isinstance(data, dict) or "columns" not in data:
        return data
    columns, rows = data["columns"], data.get(key)
    if (
        not isinstance(columns, list)
        or not 0 < len(columns) <= MAX_COLUMNS
        or not all(isinstance(c, str) for c in columns)
        or len(set(columns)) != len(columns)
    ):
        raise ValueError("columns must be a list of distinct field names")
    if not isinstance(rows, list):
        raise ValueError(f"{key} must be a list of rows")
    width = len(columns)
    maps = []
    for row in rows:
        if not isinstance(row, (list, tuple)) or len(row) != width:
            raise ValueError(f"every row of {key} must have one value per column ({width})")
        maps.append(dict(zip(columns, row, strict=True)))
    out = {k: v for k, v in data.items() if k != "columns"}
    out[key] = maps
    return out

