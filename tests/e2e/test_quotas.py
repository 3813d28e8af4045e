"""`rfarmctl quota` as an operator runs it, and a refused submit as the shell shows it."""

from __future__ import annotations

import pytest

from tests.support.farm import Farm

pytestmark = pytest.mark.timeout(120)


def test_quota_set_list_unset_and_the_defaults(farm: Farm, unique: str) -> None:
    name = f"qc{unique}"
    farm.user(name)
    res = farm.rfarmctl("quota", "set", name, "--max-queued-tasks", "5", "--max-watches", "2")
    assert res.code == 0 and res.out.strip() == f"quota of {name}: max-queued-tasks 5, max-watches 2", res
    listed = farm.rfarmctl("quota", "list")
    assert listed.code == 0, listed
    lines = [line.split() for line in listed.out.splitlines()]
    assert lines[0] == ["user", "max-queued-tasks", "max-submits-per-minute", "max-watches"]
    assert lines[1] == ["(default)", "100000", "60", "16"]
    assert [name, "5", "default", "2"] in lines
    try:
        res = farm.rfarmctl("quota", "set", "--default", "--max-submits-per-minute", "30")
        assert res.code == 0, res
        assert farm.rfarmctl("quota", "list").out.splitlines()[1].split() == ["(default)", "100000", "30", "16"]
    finally:
        assert farm.rfarmctl("quota", "set", "--default", "--max-submits-per-minute", "60").code == 0
    res = farm.rfarmctl("quota", "unset", name)
    assert res.code == 0 and "default quotas again" in res.out, res
    assert name not in farm.rfarmctl("quota", "list").out


@pytest.mark.parametrize(
    "args, code, message",
    [
        (("quota", "set", "nobody-here", "--max-watches", "1"), 1, "no such user: nobody-here"),
        (("quota", "unset", "nobody-here"), 1, "no such user: nobody-here"),
        (("quota", "set", "--default"), 2, "nothing to set"),
        (("quota", "set", "--default", "--max-watches", "-1"), 1, "max-watches must be 0 or more"),
        (("quota", "set", "--max-watches", "x", "--default"), 2, "invalid int value"),
    ],
)
def test_bad_quota_commands_are_one_line(farm: Farm, args: tuple[str, ...], code: int, message: str) -> None:
    res = farm.rfarmctl(*args)
    assert res.code == code and message in res.err and len(res.err.splitlines()) == 1, res
    assert "Traceback" not in res.err


def test_the_shell_shows_a_refused_submit_in_one_line(farm: Farm, unique: str) -> None:
    name = farm.user(f"qs{unique}")
    assert farm.rfarmctl("quota", "set", name, "--max-queued-tasks", "3").code == 0
    res = farm.rfarm("submit", "too-big", "--frames", "1-4", config=name)
    assert res.code == 1, res
    assert len(res.err.strip().splitlines()) == 1 and "quota is 3 queued or running tasks" in res.err, res
    assert "Traceback" not in res.err + res.out
    assert farm.rfarm("submit", "fits", "--frames", "1-3", config=name).code == 0
