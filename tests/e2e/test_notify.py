"""An open shell tells its user when one of their jobs ends: the interactive shell and `wait`."""

from __future__ import annotations

import pytest

from tests.support.farm import Farm, wait_for
from tests.support.terminal import Terminal

pytestmark = pytest.mark.timeout(90)


def test_interactive_shell_says_when_a_job_ends(farm: Farm, unique: str) -> None:
    farm.start_node(f"n1-{unique}")
    alice = farm.user(f"alice{unique}")
    job_id = farm.rfarm("submit", "slowish", "--renderer", "sleep", "--param", "seconds=3", "--json",
                        config=alice).json()["id"]
    term = Terminal(farm, alice, [])
    try:
        wait_for(lambda: "rfarm shell" in term.screen(), timeout=30, what="the shell to start")
        wait_for(lambda: f"job {job_id} slowish succeeded" in term.screen(), timeout=60, what="the notification")
    finally:
        term.close()
    quiet = Terminal(farm, alice, [], RFARM_NOTIFY="off")
    try:
        wait_for(lambda: "rfarm shell" in quiet.screen(), timeout=30, what="the shell to start")
        other = farm.rfarm("submit", "unheard", "--renderer", "sleep", "--param", "seconds=1", "--json",
                           config=alice).json()["id"]
        wait_for(lambda: farm.rfarm("show", str(other), "--json", config=alice).json()["job"]["status"] == "succeeded",
                 timeout=60, what="the second job")
        # each command the shell runs makes it refresh at once: after two, it has seen the job end
        for n in (1, 2):
            quiet.keys("whoami --json", "Enter")
            wait_for(lambda n=n: quiet.screen().count('"username"') >= n, timeout=30, what="whoami")
        assert f"job {other} unheard succeeded" not in quiet.screen()
    finally:
        quiet.close()
