"""`python -m gateway`: the request loop, the ledger and the dispatcher of one gateway process."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import sys
import threading

import broker_client
from broker_contracts.config import Settings, redact_url
from gateway.announce import Announcer
from gateway.context import GatewayConfig
from gateway.dispatcher import Dispatcher
from gateway.lanes import AuthLane
from gateway.ledger import Ledger
from gateway.repair import Watchdog
from gateway.replies import ReplyStreams
from gateway.sealing import GatewayKey, keep_announcing
from gateway.transport import RequestLoop
from store.db import open_pool

log = logging.getLogger("rfarm.gateway")


_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def _keep_big_blocks_out_of_the_heaps() -> None:
    """Every argon2 hash allocates 19 MiB. glibc raises its mmap threshold to the size of the first
    such block freed, so later hashes come from the calling thread's heap and stay there: each
    request thread would keep a hash's worth of memory of its own. A fixed
    threshold of 1 MiB keeps big blocks mmapped and returns them when freed (no effect off glibc)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 1 << 20)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError("must be between 1 and 64")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rfarmctl gateway", description="Run one rfarm gateway.")
    p.add_argument("--name", default=None, help="consumer name (default: host-pid)")
    p.add_argument("--lease", type=float, default=30.0, help="seconds a node's silence is tolerated")
    p.add_argument(
        "--claim-idle", type=float, default=15.0, help="seconds before a dead gateway's requests are taken over"
    )
    p.add_argument("--token-ttl", type=float, default=7 * 24 * 3600, help="seconds a login lasts")
    p.add_argument("--pool-size", type=int, default=8)
    p.add_argument(
        "--request-threads",
        type=_positive,
        default=2,
        help="requests answered at once: while one waits on PostgreSQL another runs (default 2)",
    )
    p.add_argument(
        "--reply-ttl", type=int, default=300, help="seconds a reply stream outlives its last reply (a vanished shell)"
    )
    p.add_argument(
        "--require-node-credentials",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("RFARM_REQUIRE_NODE_CREDENTIALS", "") not in ("", "0", "no", "false"),
        help="apply reports only from nodes with a credential (default: $RFARM_REQUIRE_NODE_CREDENTIALS, off)",
    )
    p.add_argument(
        "--forget-nodes-after",
        type=_positive_seconds,
        default=7 * 24 * 3600,
        metavar="SECONDS",
        help="remove a node not heard from for this long from the farm's list (default: a week)",
    )
    p.add_argument("--log-level", default=os.environ.get("RFARM_LOG_LEVEL", "INFO"))
    return p.parse_args(argv)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        print(
            f"rfarmctl gateway: --log-level must be DEBUG, INFO, WARNING or ERROR, not {args.log_level!r}",
            file=sys.stderr,
        )
        return 2
    _keep_big_blocks_out_of_the_heaps()
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    settings = Settings.from_env()
    try:
        broker_client.connect(settings.redis_url).close()  # checks the URL's form; connects to nothing
    except broker_client.RedisUrlError as exc:
        print(f"rfarmctl gateway: cannot use RFARM_REDIS_URL {redact_url(settings.redis_url)}: {exc}", file=sys.stderr)
        return 2
    config = GatewayConfig(
        prefix=settings.prefix,
        token_ttl=args.token_ttl,
        lease=args.lease,
        claim_idle=args.claim_idle,
        reply_ttl=max(1, args.reply_ttl),
        fault=os.environ.get("RFARM_FAULT_POINT") or None,
        require_node_credentials=args.require_node_credentials,
        forget_nodes_after=args.forget_nodes_after,
    )
    consumer = args.name or f"gw-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
    stop = threading.Event()
    wake = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    # each request thread holds a connection while it answers; the auth lane, the ledger, the
    # dispatcher and the stream watchdog one each
    pool = open_pool(settings.database_url, max_size=max(args.pool_size, args.request_threads + 4), name="gateway")
    n = args.request_threads
    clients = [
        broker_client.connect(settings.redis_url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
        for _ in range(n + 5)
    ]
    # Several request loops, each its own consumer of the group: a batch is shared out among them
    # by Redis, and the PostgreSQL round trips of one overlap the Python work of another.
    names = [consumer] + [f"{consumer}.{i}" for i in range(1, n)]
    outages: dict[str, int] = {}
    key = GatewayKey(pool)
    replies = ReplyStreams(config)
    lane = AuthLane(clients[n + 2], pool, config, stop, replies)
    loops = [
        RequestLoop(
            clients[2 + i],
            pool,
            config,
            name,
            stop,
            reclaims=i == 0,
            outage_deliveries=outages,
            replies=replies,
            lane=lane,
            key=key,
        )
        for i, name in enumerate(names)
    ]
    ledger = Ledger(clients[0], pool, config, consumer, stop, wake)
    dispatcher = Dispatcher(clients[1], pool, config, stop, wake, ledger)
    watchdog = Watchdog(clients[n + 3], pool, config, stop)
    announcer = Announcer(clients[n + 2], pool, config.keys, stop)
    announcer.announce()  # before the first request is answered, where the servers allow it
    threads = [
        threading.Thread(target=ledger.run, name="ledger", daemon=True),
        threading.Thread(target=dispatcher.run, name="dispatcher", daemon=True),
        threading.Thread(target=announcer.run, name="announcer", daemon=True),
        threading.Thread(target=lane.run, name="auth-lane", daemon=True),
        threading.Thread(target=watchdog.run, name="watchdog", daemon=True),
        threading.Thread(
            target=keep_announcing, args=(key, clients[n + 4], config.keys, stop), name="key", daemon=True
        ),
    ] + [threading.Thread(target=loop.run, name=f"requests-{i}", daemon=True) for i, loop in enumerate(loops)]
    log.info("gateway %s serving prefix %r", consumer, settings.prefix)
    for t in threads:
        t.start()
    try:
        while not stop.is_set():
            stop.wait(1.0)
            for t in threads:
                if not t.is_alive():
                    log.error("thread %s died; stopping", t.name)
                    stop.set()
    finally:
        for t in threads:
            t.join(timeout=5)
        pool.close()
        for c in clients:
            c.close()
    log.info("gateway %s stopped", consumer)
    return 0
