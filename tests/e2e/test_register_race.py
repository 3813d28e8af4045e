"""Fifty shells registering one name at once, through the real gateway process, make one user."""

from __future__ import annotations

import secrets
import threading
import time

import psycopg

from broker_contracts.envelope import Envelope, Reply, decode_reply, encode
from tests.support.farm import Farm
from tests.support.sealing import farm_key, sealed_body


def test_fifty_shells_registering_one_name_at_once_make_one_user(farm: Farm, unique: str) -> None:
    name = f"race{unique}"
    start = threading.Barrier(50)
    replies: list[Reply | None] = [None] * 50
    key = farm_key(farm.database_url)

    def shell(i: int) -> None:
        r = farm.redis()
        try:
            body, _ = sealed_body("auth.register", {"username": name, "password": f"password-{i:04d}"}, key)
            env = Envelope.new("auth.register", body, secrets.token_hex(16))
            start.wait(timeout=30)
            r.xadd(farm.keys.requests, {"m": encode(env)})
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and replies[i] is None:
                for _, items in r.xread({farm.keys.reply(env.reply_to): "0-0"}, block=1000) or []:
                    for _, fields in items:
                        reply = decode_reply(fields[b"m"])
                        if isinstance(reply, Reply) and reply.re == env.id:
                            replies[i] = reply
        finally:
            r.close()

    threads = [threading.Thread(target=shell, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert all(r is not None for r in replies), "some shells got no answer"
    winners = [i for i, r in enumerate(replies) if r is not None and r.ok]
    assert len(winners) == 1, winners
    codes = {r.error.code for r in replies if r is not None and r.error is not None}
    assert codes == {"auth.username_taken"}
    with psycopg.connect(farm.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM users WHERE username = %s", (name,)).fetchone()
    assert row is not None and row[0] == 1
    winner_password = f"password-{winners[0]:04d}"
    assert farm.rfarm("login", name, "--password-stdin", stdin=winner_password + "\n", config=name).code == 0
