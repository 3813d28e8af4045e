"""Fair share's order, limits' room and the spelling of durations: pure functions, no servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker_contracts.durations import format_duration, parse_duration
from broker_contracts.profiles import parse_profiles_toml
from store.fairshare import Candidate, deal

A, B, C = 1, 2, 3


def job(owner: int, job_id: int, n: int, priority: int = 50, limits: tuple[str, ...] = ()) -> list[Candidate]:
    return [Candidate(job_id * 1000 + s, owner, priority, job_id, s, limits) for s in range(n)]


def owners(picked: list[Candidate]) -> list[int]:
    return [c.owner for c in picked]


def test_equal_users_take_turns_then_job_age() -> None:
    picked = deal(job(A, 1, 10) + job(B, 2, 3), held={}, weights={}, room={}, want=8)
    assert owners(picked) == [A, B, A, B, A, B, A, A]
    assert [c.seq for c in picked if c.owner == A] == [0, 1, 2, 3, 4]


def test_slots_held_now_count_first() -> None:
    # A holds 4 slots already: B (newcomer) gets the next four, then they alternate
    picked = deal(job(A, 1, 10) + job(B, 2, 10), held={A: 4}, weights={}, room={}, want=8)
    assert owners(picked) == [B, B, B, B, A, B, A, B]


def test_weights_scale_the_share() -> None:
    picked = deal(job(A, 1, 20) + job(B, 2, 20), held={}, weights={A: 3.0}, room={}, want=8)
    assert owners(picked).count(A) == 6 and owners(picked).count(B) == 2


def test_priority_wins_over_fairness() -> None:
    picked = deal(job(A, 1, 5, priority=90) + job(B, 2, 5), held={A: 100}, weights={}, room={}, want=6)
    assert owners(picked) == [A] * 5 + [B]


def test_older_job_of_one_user_first() -> None:
    picked = deal(job(A, 7, 2) + job(A, 3, 2), held={}, weights={}, room={}, want=4)
    assert [c.job_id for c in picked] == [3, 3, 7, 7]


def test_a_full_limit_is_passed_over_not_waited_for() -> None:
    lic = ("lic",)
    picked = deal(job(A, 1, 5, limits=lic) + job(A, 2, 3) + job(B, 3, 5, limits=lic), held={}, weights={},
                  room={"lic": 2}, want=10)
    assert sum(1 for c in picked if "lic" in c.limits) == 2
    assert {c.job_id for c in picked if not c.limits} == {2}
    assert len(picked) == 5


def test_an_unset_limit_caps_nothing() -> None:
    assert len(deal(job(A, 1, 5, limits=("gone",)), held={}, weights={}, room={}, want=10)) == 5


def test_none_wanted_none_given() -> None:
    assert deal(job(A, 1, 5), held={}, weights={}, room={}, want=0) == []


@pytest.mark.parametrize(
    ("text", "seconds", "spelled"),
    [("2h", 7200, "2h"), ("2H", 7200, "2h"), (" 90 m ", 5400, "90m"), ("2", 2, "2s"), ("120m", 7200, "2h"),
     ("45s", 45, "45s")],
)
def test_durations(text: str, seconds: int, spelled: str) -> None:
    assert parse_duration(text) == seconds
    assert format_duration(seconds) == spelled


@pytest.mark.parametrize("text", ["", "0", "-5s", "2d", "1.5h", "h", "2 hours", "999999999h"])
def test_bad_durations_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_a_profile_declares_its_default_timeout() -> None:
    spec = parse_profiles_toml('[profiles.slow]\nargv = ["slow", "{first}"]\ntimeout = "2h"\n')["slow"]
    assert spec.timeout == 7200
    with pytest.raises(ValueError, match="slow"):
        parse_profiles_toml('[profiles.slow]\nargv = ["slow"]\ntimeout = "forever"\n')


def test_gpus_give_one_slot_each_and_the_gpu_tag() -> None:
    from render_nodes.cli import build_parser, options_from

    opts = options_from(build_parser().parse_args(["--gpus", "0,1", "--tags", "linux", "--name", "n1"]))
    assert opts.slots == 2 and opts.gpus == ("0", "1") and opts.tags == {"gpu", "linux"}
    assert options_from(build_parser().parse_args(["--name", "n1"])).slots == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [(["--gpus", "0,0"], "twice"), (["--gpus", ","], "comma list"), (["--gpus", "0;rm"], "comma list"),
     (["--gpus", "0,1", "--slots", "3"], "one slot per GPU")],
)
def test_bad_gpus_are_refused(args: list[str], words: str) -> None:
    from render_nodes.cli import UsageError, build_parser, options_from

    with pytest.raises(UsageError, match=words):
        options_from(build_parser().parse_args([*args, "--name", "n1"]))


def test_a_gpu_slot_sees_only_its_gpu() -> None:
    from render_nodes.process import GPU_VARIABLES, child_env

    env = child_env("1")
    assert [env[v] for v in GPU_VARIABLES] == ["1", "1", "1"]
    assert "CUDA_VISIBLE_DEVICES" not in child_env() or child_env()["CUDA_VISIBLE_DEVICES"] != "1"


def test_a_profiles_file_gives_builtins_a_default_timeout(tmp_path: Path) -> None:
    from render_nodes.offered import ProfileFileError, load_profiles

    path = tmp_path / "p.toml"
    path.write_text('[timeouts]\nsleep = "30s"\n')
    offered = load_profiles(path)
    assert offered["sleep"].timeout == 30 and offered["fractal"].timeout is None
    path.write_text('builtins = ["fractal"]\n[timeouts]\nsleep = "30s"\n')
    with pytest.raises(ProfileFileError, match="sleep"):
        load_profiles(path)
    path.write_text('[timeouts]\nsleep = "soon"\n')
    with pytest.raises(ProfileFileError, match="duration"):
        load_profiles(path)


def test_why_counts_what_goes_first_as_the_deal_would() -> None:
    from gateway.why import _ahead
    from store.why import Facts

    job_ = {"owner_id": A, "priority": 50}
    facts = Facts(tasks={"ready": 5}, next_seq=0, window=3, held={A: 4, B: 1}, weights={},
                  waiting=[{"owner_id": B, "priority": 50, "older": False, "n": 100},
                           {"owner_id": C, "priority": 70, "older": False, "n": 7},
                           {"owner_id": A, "priority": 50, "older": True, "n": 2},
                           {"owner_id": C, "priority": 10, "older": True, "n": 50}])
    # A's next task weighs (4 + 1) / 1 = 5; B's k-th (1 + k): k = 1..3 go first (the 4th ties: older job)
    assert _ahead(job_, facts, 1.0) == {"window": 3, "higher_priority": 7, "other_users": 3, "older_jobs": 2}
    ranks = [c.owner for c in deal(job(B, 9, 10) + job(A, 8, 1), held={A: 4, B: 1}, weights={}, room={}, want=4)]
    assert ranks.index(A) == 3


def test_the_shell_completes_node_names_pools_and_tags() -> None:
    from shell.commands import default_registry
    from shell.complete import Known, suggest

    known = Known(nodes=("n1", "n2", "x9"), pools=("default", "gpu"), tags=("gpu", "linux"))
    registry = default_registry()
    assert [s.text for s in suggest(registry, "drain n", known)] == ["n1", "n2"]
    assert [s.text for s in suggest(registry, "submit x --pool g", known)] == ["gpu"]
    assert [s.text for s in suggest(registry, "submit x --require l", known)] == ["linux"]
    assert "why" in [s.text for s in suggest(registry, "wh", known)]
