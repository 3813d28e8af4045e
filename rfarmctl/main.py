"""`rfarmctl`: the operator's command line. Every failure is one line on stderr and an exit code
(see rfarmctl/errors.py); `up` lives in rfarmctl/up.py, the embedded servers in rfarmctl/embedded.py.
"""

from __future__ import annotations

import argparse
import getpass
import importlib.metadata
import importlib.util
import os
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from pydantic import TypeAdapter, ValidationError

import broker_client
from broker_contracts.config import Settings
from broker_contracts.config import redact_url as redact
from broker_contracts.types import Password, Username
from rfarmctl import credentials as node_credential
from rfarmctl import hooks, quotas, scheduling
from rfarmctl.database import create_admin, migrate_database, unlock_user
from rfarmctl.errors import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CtlError, unreachable

# --- migrate ----------------------------------------------------------------------------------------


def cmd_migrate(_args: argparse.Namespace) -> int:
    url = Settings.from_env().database_url
    applied = migrate_database(url)
    if applied:
        for name in applied:
            print(f"applied {name}")
    else:
        print(f"nothing to apply: {redact(url)} is up to date")
    return EXIT_OK


# --- gateway / node ---------------------------------------------------------------------------------


def exec_module(module: str, args: Sequence[str]) -> NoReturn:
    """Replace this process with ``python -m module args…`` (same interpreter, same environment)."""
    try:
        found = importlib.util.find_spec(f"{module}.__main__") is not None
    except ImportError:
        found = False
    if not found:
        raise CtlError(EXIT_USAGE, f"the {module} service is not installed here ({module}/__main__.py missing)")
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, [sys.executable, "-m", module, *args])
    except OSError as exc:
        raise CtlError(EXIT_REFUSED, f"cannot start {module}: {exc}") from exc


# --- create-admin -----------------------------------------------------------------------------------


def read_password(username: str, from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CtlError(EXIT_USAGE, "no password on stdin")
        password = line.rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise CtlError(EXIT_USAGE, "no terminal to ask for the password: use --password-stdin")
        try:
            password = getpass.getpass(f"password for {username}: ")
            again = getpass.getpass("again: ")
        except (EOFError, KeyboardInterrupt) as exc:
            raise CtlError(EXIT_USAGE, "no password given") from exc
        if password != again:
            raise CtlError(EXIT_USAGE, "the two passwords differ")
    try:
        return TypeAdapter(Password).validate_python(password)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise CtlError(EXIT_USAGE, f"password refused: {problem}") from exc


def cmd_create_admin(args: argparse.Namespace) -> int:
    try:
        username = TypeAdapter(Username).validate_python(args.user)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise CtlError(EXIT_USAGE, f"username refused: {problem}") from exc
    password = read_password(username, args.password_stdin)
    print(create_admin(Settings.from_env().database_url, username, password))
    return EXIT_OK


# --- unlock -----------------------------------------------------------------------------------------


def cmd_unlock(args: argparse.Namespace) -> int:
    """Forget a user's failed logins: whoever made them, the user may log in at once."""
    try:
        username = TypeAdapter(Username).validate_python(args.user)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise CtlError(EXIT_USAGE, f"username refused: {problem}") from exc
    removed = unlock_user(Settings.from_env().database_url, username)
    print(f"unlocked {username}" if removed else f"{username} had no failed logins to forget")
    return EXIT_OK


# --- redis-acl --------------------------------------------------------------------------------------


def cmd_redis_acl(args: argparse.Namespace) -> int:
    import redis

    from rfarmctl import acl

    settings = Settings.from_env()
    url = args.redis_url or settings.redis_url
    given = {"gateway": args.gateway_password, "node": args.node_password, "shell": args.shell_password}
    try:
        users = acl.build_users(settings.prefix, given)
    except acl.AclError as exc:
        raise CtlError(EXIT_USAGE, str(exc)) from exc
    if args.apply:
        try:
            # ACL users are not replicated: behind a sentinel URL, the primary and every replica
            servers = broker_client.data_servers(url, socket_connect_timeout=5, socket_timeout=10)
            try:
                for _, r in servers:
                    users = acl.fit_to_server(r, users)
                for _, r in servers:
                    acl.apply(r, users)
            finally:
                for _, r in servers:
                    r.close()
        except acl.AclError as exc:
            raise CtlError(EXIT_REFUSED, str(exc)) from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise unreachable("Redis", url, exc) from exc
        except redis.RedisError as exc:
            raise CtlError(EXIT_REFUSED, f"Redis at {redact(url)} refused: {' '.join(str(exc).split())}") from exc
    print(acl.render(users, url, settings.prefix, applied=args.apply))
    return EXIT_OK


# --- up ---------------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from rfarmctl.up import UpOptions, run_up

    if args.nodes < 0 or args.slots < 1:
        raise CtlError(EXIT_USAGE, "--nodes must be 0 or more and --slots 1 or more")
    return run_up(
        UpOptions(
            data_dir=args.data_dir,
            nodes=args.nodes,
            slots=args.slots,
            output_root=args.output_root,
        )
    )


# --- the command line -------------------------------------------------------------------------------


def rfarm_version() -> str:
    """The installed rfarm's version; from a checkout that was never installed, its pyproject.toml's."""
    try:
        return importlib.metadata.version("rfarm")
    except importlib.metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a wrong command line in one line with exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise CtlError(EXIT_USAGE, f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rfarmctl", description="Operate an rfarm render farm.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {rfarm_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("migrate", help="create the database if needed and apply pending migrations")
    p.set_defaults(run=cmd_migrate)

    sub.add_parser("gateway", help="run a gateway (arguments go to python -m gateway)", add_help=False)
    sub.add_parser("node", help="run a render node (arguments go to python -m render_nodes)", add_help=False)

    p = sub.add_parser("create-admin", help="create an admin user, or make an existing user admin")
    p.add_argument("user")
    p.add_argument("--password-stdin", action="store_true", help="read the password as one line of stdin")
    p.set_defaults(run=cmd_create_admin)

    p = sub.add_parser("unlock", help="forget a user's failed logins, so that they may log in at once")
    p.add_argument("user")
    p.set_defaults(run=cmd_unlock)

    quotas.add_parser(sub)
    hooks.add_parser(sub)
    scheduling.add_parsers(sub)

    p = sub.add_parser("redis-acl", help="print, or --apply, least-privilege Redis ACL users for each role")
    p.add_argument("--apply", action="store_true", help="create the users (connects as RFARM_REDIS_URL's user)")
    p.add_argument("--redis-url", default=None, help="an admin's Redis URL (default: RFARM_REDIS_URL)")
    for role in ("gateway", "node", "shell"):
        p.add_argument(f"--{role}-password", default=None, help=f"the {role} user's password (default: generated)")
    p.set_defaults(run=cmd_redis_acl)

    node_credential.add_parser(sub)

    p = sub.add_parser("up", help="a whole farm on this machine: Redis, PostgreSQL, a gateway and nodes")
    p.add_argument("--data-dir", default="./.rfarm", help="where embedded servers keep data (./.rfarm)")
    p.add_argument("--nodes", type=int, default=2, help="render nodes to run (2)")
    p.add_argument("--slots", type=int, default=1, help="tasks each node runs at once (1)")
    p.add_argument("--output-root", default="./renders", help="where rendered frames go (./renders)")
    p.set_defaults(run=cmd_up)
    return parser


def run(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv and argv[0] in ("gateway", "node"):
        exec_module("gateway" if argv[0] == "gateway" else "render_nodes", argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return int(args.run(args))


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: returns the exit status (the generated wrapper passes it to sys.exit)."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except CtlError as exc:
        print(f"rfarmctl: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("rfarmctl: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line for the operator, the traceback on request
        if os.environ.get("RFARM_DEBUG"):
            raise
        print(
            f"rfarmctl: internal error: {type(exc).__name__}: {exc} (RFARM_DEBUG=1 shows where)",
            file=sys.stderr,
        )
        return EXIT_REFUSED
