"""`python -m benchmarks.sealing [N]`: the CPU that sealed secrets cost per request, no servers.

The gateway opens the token of every request's envelope (a sealed box, and the binding to the
request checked: broker_contracts.sealing.open_token) and copies the envelope with the token in
clear; the shell seals it. A login or register also seals/opens its password, and a login seals
its token to the shell's one-off key. Figures are CPU time (time.process_time), the best of five
rounds of N, so that other work on the machine does not count.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable

from nacl.public import PrivateKey

from broker_contracts.codec import unpack
from broker_contracts.envelope import Envelope, decode_envelope, encode
from broker_contracts.sealing import key_text, open_token, public_key, seal, unseal

SUBMIT = {"name": "bench", "frames": "1-100", "chunk": 5, "renderer": "fractal", "params": {"size": "64"},
          "priority": 50, "max_attempts": 3, "pool": "default", "requires": []}  # fmt: skip


def cpu_us(action: Callable[[], object], n: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(n):
            action()
        best = min(best, (time.process_time() - start) / n)
    return best * 1e6


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 2000
    farm = PrivateKey.generate()
    token = secrets.token_urlsafe(32)
    reply_to = secrets.token_hex(16)
    rows: list[tuple[str, float]] = []
    for type_, body in (("job.list", {"limit": 50}), ("job.submit", SUBMIT)):
        env = Envelope.new(type_, body, reply_to, token, farm_key=farm.public_key)
        got = decode_envelope(encode(env))

        def gateway(got: Envelope = got) -> Envelope:
            clear = open_token(farm, got.token or "", got.id, got.type, got.body, got.reply_to)
            return got.model_copy(update={"token": clear})

        rows.append((f"gateway: open the token of a {type_} envelope", cpu_us(gateway, n)))
        rows.append(
            (
                f"shell: make a {type_} envelope, its token sealed",
                cpu_us(lambda t=type_, b=body: Envelope.new(t, b, reply_to, token, farm_key=farm.public_key), n),
            )
        )
        rows.append((f"shell: make a {type_} envelope, token in clear (before)",
                     cpu_us(lambda t=type_, b=body: Envelope.new(t, b, reply_to, token), n)))  # fmt: skip
    sealed = seal(farm.public_key, b"correct-horse-battery")
    answer = PrivateKey.generate()
    rows.append(("gateway: open a login's password", cpu_us(lambda: unseal(farm, sealed), n)))
    rows.append(("gateway: seal a login's token to the shell's key",
                 cpu_us(lambda: seal(public_key(key_text(answer.public_key)), token.encode()), n)))  # fmt: skip
    empty = Envelope.new("auth.whoami", {}, reply_to)
    rows.append(("(for scale) encode and decode an empty envelope", cpu_us(lambda: unpack(encode(empty)), n)))
    width = max(len(label) for label, _ in rows)
    for label, us in rows:
        print(f"{label:<{width}}  {us:7.1f} µs CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
