"""Lists of rows as tables (broker_contracts/tables.py): what the reply models accept and refuse."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from broker_contracts.messages import HistoryReply, JobSummary, ListReply

JOB = {"id": 7, "name": "shot", "owner": "ana", "status": "queued", "paused": False, "priority": 50,
       "renderer": "noop", "pool": "default", "frames": "1-3", "frames_total": 3, "frames_done": 0,
       "tasks_total": 3, "created_at": "2026-11-28T09:48:59.781937Z", "updated_at": "2026-11-28T09:48:59Z",
       "reason": None, "eta_seconds": None}


def table(rows: list[dict[str, Any]], columns: list[str]) -> dict[str, Any]:
    return {"columns": columns, "jobs": [[row[c] for c in columns] for row in rows]}


def test_a_table_reads_as_the_same_jobs_as_maps_in_any_column_order() -> None:
    rows = [JOB, {**JOB, "id": 6, "status": "failed", "reason": "exit 1"}]
    as_maps = ListReply.model_validate({"jobs": rows})
    columns = list(reversed(JobSummary.model_fields))
    assert ListReply.model_validate(table(rows, columns)) == as_maps
    assert ListReply.model_validate({"columns": columns, "jobs": []}).jobs == []


def test_a_history_table_names_from_as_the_wire_does() -> None:
    body = {"job": JOB, "columns": ["at", "task", "frames", "attempt", "from", "to", "reason", "actor"],
            "history": [["2026-11-28T09:48:59Z", None, None, None, "queued", "running", "started", "node-1"]]}
    entry = HistoryReply.model_validate(body).history[0]
    assert (entry.from_, entry.to, entry.actor) == ("queued", "running", "node-1")


@pytest.mark.parametrize(
    "body",
    [
        {"columns": "id", "jobs": []},
        {"columns": [], "jobs": []},
        {"columns": ["id", "id"], "jobs": []},
        {"columns": ["id", 3], "jobs": []},
        {"columns": list(JobSummary.model_fields), "jobs": "rows"},
        {"columns": list(JobSummary.model_fields), "jobs": [list(JOB.values())[:-1]]},  # one value short
        {"columns": list(JobSummary.model_fields), "jobs": [{**JOB}]},  # a map where a row belongs
        {"columns": ["id"] * 65, "jobs": []},
    ],
)
def test_a_malformed_table_is_refused_as_invalid(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ListReply.model_validate(body)
