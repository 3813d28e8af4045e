"""The render node's command line: ``python -m render_nodes`` (``rfarmctl node`` runs the same).

Exit codes: 0 stopped cleanly; 2 bad options or configuration; 3 Redis cannot be reached.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import NoReturn

import redis

from broker_contracts.config import Settings
from broker_contracts.keys import Keys, valid_name
from broker_contracts.signing import CredentialError, NodeCredential, Signer
from render_nodes.blender import BlenderError, find_blender
from render_nodes.link import Link, redact
from render_nodes.node import Node, NodeOptions
from render_nodes.offered import ProfileFileError, confine_paths, load_profiles

PROG = "rfarm-node"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Run a render node: claim tasks from a pool and render them.")
    p.add_argument("--pool", default="default", help="the pool to take work from (default: default)")
    p.add_argument("--slots", type=int, help="tasks to run at once (default: 1, or one per --gpus)")
    p.add_argument(
        "--gpus",
        metavar="ID,ID",
        help="one slot per listed GPU, each task seeing only its own (CUDA_VISIBLE_DEVICES and alike); "
        "the node offers tag gpu",
    )
    p.add_argument("--tags", default="", help="comma list of tags this node offers, e.g. gpu,linux")
    p.add_argument("--profiles", type=Path, help="TOML file of command profiles")
    p.add_argument("--output-root", type=Path, default=Path("renders"), help="where frames go (./renders)")
    p.add_argument("--lease", type=float, default=30.0, help="seconds before a silent node's task is taken over")
    p.add_argument("--name", help="node id (default: host-pid-random)")
    p.add_argument(
        "--path-root",
        action="append",
        type=Path,
        metavar="DIR",
        help="path parameters must lie in this folder; may repeat (default: $RFARM_PATH_ROOTS, ':'-separated)",
    )
    p.add_argument(
        "--credential-file",
        type=Path,
        metavar="FILE",
        help="the node credential from `rfarmctl node-credential add` (default: $RFARM_NODE_CREDENTIAL)",
    )
    p.add_argument(
        "--blender",
        metavar="PATH",
        help="the Blender to offer as the built-in blender profile (default: blender on PATH, if any)",
    )
    p.add_argument("--no-blender", action="store_true", help="do not offer the blender profile")
    p.add_argument("--grace", type=float, default=30.0, help="seconds running tasks get after SIGTERM")
    p.add_argument("--drain", action="store_true", help="process the work that is there, then exit")
    p.add_argument("--heartbeat", type=float, help="seconds between heartbeats (default: min(5, lease/3))")
    p.add_argument(
        "--log-level",
        default=os.environ.get("RFARM_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO (a line per task start and end), WARNING or ERROR (default: $RFARM_LOG_LEVEL or INFO)",
    )
    return p


def default_name() -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()).strip("-._") or "node"
    return f"{host[:40]}-{os.getpid()}-{secrets.token_hex(2)}"


def credential_from(args: argparse.Namespace) -> NodeCredential | None:
    """The node's credential from --credential-file or $RFARM_NODE_CREDENTIAL, or None."""
    if args.credential_file is not None:
        try:
            text = args.credential_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read --credential-file {str(args.credential_file)!r} ({exc})") from None
        where = "--credential-file"
    else:
        text = os.environ.get("RFARM_NODE_CREDENTIAL", "")
        where = "RFARM_NODE_CREDENTIAL"
        if not text.strip():
            return None
    try:
        credential = NodeCredential.parse(text)
    except CredentialError as exc:
        raise UsageError(f"{where}: {exc}") from None
    if args.name is not None and args.name != credential.name:
        raise UsageError(f"--name {args.name!r} is not the name the credential was issued to ({credential.name!r})")
    args.name = credential.name
    return credential


def gpus_from(text: str | None) -> tuple[str, ...]:
    """--gpus 0,1 (indexes, or ids like GPU-8f3a…): each at most once."""
    if text is None:
        return ()
    gpus = tuple(g.strip() for g in text.split(",") if g.strip())
    if not gpus or any(not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}", g) for g in gpus):
        raise UsageError(f"--gpus {text!r} must be a comma list of GPU indexes or ids, like 0,1")
    if len(set(gpus)) != len(gpus):
        raise UsageError(f"--gpus {text!r} names a GPU twice: two renders would share it")
    return gpus


def options_from(args: argparse.Namespace) -> NodeOptions:
    gpus = gpus_from(args.gpus)
    if gpus and args.slots is not None and args.slots != len(gpus):
        raise UsageError(f"--slots {args.slots} with --gpus: a node with --gpus has one slot per GPU ({len(gpus)})")
    args.slots = len(gpus) if gpus else (1 if args.slots is None else args.slots)
    if args.slots < 1 or args.slots > 256:
        raise UsageError("--slots must be between 1 and 256")
    if not args.lease > 0.5:
        raise UsageError("--lease must be more than 0.5 seconds")
    if args.grace < 0:
        raise UsageError("--grace must not be negative")
    if args.log_level.upper() not in LOG_LEVELS:
        raise UsageError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, not {args.log_level!r}")
    heartbeat = args.heartbeat if args.heartbeat is not None else min(5.0, args.lease / 3)
    if not heartbeat > 0:
        raise UsageError("--heartbeat must be positive")
    name = args.name or default_name()
    for label, value in (("--pool", args.pool), ("--name", name)):
        if not valid_name(value):
            raise UsageError(f"{label} {value!r} must be letters, digits, '_', '.' or '-' (at most 64)")
    tags = frozenset(t.strip() for t in args.tags.split(",") if t.strip()) | ({"gpu"} if gpus else set())
    bad = sorted(t for t in tags if not valid_name(t))
    if bad:
        raise UsageError(f"tag {bad[0]!r} must be letters, digits, '_', '.' or '-'")
    roots = args.path_root or [Path(p) for p in os.environ.get("RFARM_PATH_ROOTS", "").split(":") if p]
    relative = [str(root) for root in roots if not root.is_absolute()]
    if relative:
        raise UsageError(f"--path-root {relative[0]!r} must be an absolute folder")
    try:
        profiles = confine_paths(load_profiles(args.profiles), [str(root) for root in roots])
    except ProfileFileError as exc:
        raise UsageError(str(exc)) from None
    if not args.no_blender and "blender" not in profiles:  # an operator's own "blender" profile wins
        try:
            found = find_blender(args.blender)
        except BlenderError as exc:
            raise UsageError(str(exc)) from None
        if found is not None:
            profiles.update(confine_paths({"blender": found}, [str(root) for root in roots]))
    return NodeOptions(
        name=name,
        pool=args.pool,
        slots=args.slots,
        tags=tags,
        profiles=profiles,
        output_root=args.output_root,
        lease=args.lease,
        grace=args.grace,
        heartbeat=heartbeat,
        drain=args.drain,
        gpus=gpus,
    )


def connect(settings: Settings, pool: str, credential: NodeCredential | None = None) -> Link:
    """A link whose server answered a PING; raises UsageError or ConnectionError with a clear line."""
    keys = Keys(settings.prefix)
    signer = Signer(credential.seed) if credential is not None else None
    try:
        link = Link(settings.redis_url, keys, pool, signer)
    except ValueError as exc:
        raise UsageError(f"RFARM_REDIS_URL {redact(settings.redis_url)} is not a Redis URL ({exc})") from None
    where = redact(settings.redis_url)
    try:
        link.client.ping()
    except redis.AuthenticationError:
        link.close()
        raise ConnectionError(f"redis at {where} refused the credentials") from None
    except redis.RedisError as exc:
        link.close()
        raise ConnectionError(f"cannot reach redis at {where} ({type(exc).__name__})") from None
    return link


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        credential = credential_from(args)
        options = options_from(args)
        settings = Settings.from_env()
        link = connect(settings, options.pool, credential)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 3
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format=f"%(asctime)s {options.name} %(levelname)s %(message)s",
    )
    if credential is None:
        logging.getLogger("render_nodes").warning(
            "no node credential: a gateway that requires them ignores this node's reports"
        )
    gateway_key = credential.gateway_key if credential is not None else None
    node = Node(options, link, Keys(settings.prefix), gateway_key=gateway_key)
    previous = {sig: signal.signal(sig, lambda _s, _f: node.request_stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return node.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        link.close()
