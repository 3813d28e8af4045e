"""The shell's transport with no Redis to reach: a clear no-answer, not an exception."""

from __future__ import annotations

import pytest

from shell.client import Client
from shell.errors import NoAnswer


def test_unreachable_redis_is_no_answer() -> None:
    with Client("redis://127.0.0.1:1/0", "rfx", timeout=1) as client, pytest.raises(NoAnswer) as caught:
        client.call("auth.whoami", {}, "tok")
    assert "cannot reach Redis" in caught.value.message
