"""Tables and cuts count terminal columns: a CJK character or an emoji takes two."""

from __future__ import annotations

from datetime import UTC, datetime

from broker_contracts.messages import ListReply
from shell import views as r
from shell.format import RenderOptions, cut, table, width_of
from shell.toolbar import fit, text_of

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
OPTS = RenderOptions(width=100, now=NOW)


def _job(id_: int, name: str) -> dict:
    return {
        "id": id_, "name": name, "owner": "alice", "status": "queued", "priority": 50, "renderer": "fractal",
        "pool": "default", "frames": "1", "frames_total": 1, "frames_done": 0, "tasks_total": 1,
        "created_at": NOW.isoformat(), "updated_at": NOW.isoformat(),
    }  # fmt: skip


def test_width_of_counts_columns() -> None:
    assert width_of("shot") == 4
    assert width_of("渲染テスト") == 10
    assert width_of("🎬 shot") == 7
    assert width_of("e\u0301") == 1  # a combining accent takes no column
    assert width_of("a\x07b") == 3  # a control character counts as one, never negative


def test_cut_never_splits_a_wide_character_past_the_width() -> None:
    assert cut("渲染テスト", 10) == "渲染テスト"
    assert cut("渲染テスト", 6) == "渲染…"
    assert width_of(cut("渲染テスト", 6)) == 5  # the third character would need 7 columns
    assert cut("🎬🎬🎬", 4) == "🎬…"
    assert cut("abc", 1) == "…"


def test_columns_line_up_after_wide_names() -> None:
    names = ["渲染テスト", "🎬 shot", "plain-name"]
    lines = r.render_jobs(ListReply.model_validate({"jobs": [_job(i + 1, n) for i, n in enumerate(names)]}), OPTS)
    starts = {line[: line.index("queued")] for line in lines[1:]}
    assert len({width_of(s) for s in starts}) == 1, lines
    assert width_of(lines[0][: lines[0].index("STATUS")]) == width_of(next(iter(starts)))


def test_a_wide_flexible_column_is_cut_to_fit() -> None:
    lines = table(["ID", "NAME", "TAIL"], [["1", "渲染テスト" * 8, "end"]], RenderOptions(width=40, now=NOW))
    assert all(width_of(line) <= 40 for line in lines), lines
    assert lines[1].endswith("end")


def test_toolbar_fits_wide_text() -> None:
    parts = fit([("", "job 渲染テスト running"), ("", " │ more")], 12)
    assert width_of(text_of(parts)) <= 11
