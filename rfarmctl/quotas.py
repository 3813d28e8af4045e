"""`rfarmctl quota`: set, list and unset the per-user quotas (store/quotas.py) in the database."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from pydantic import TypeAdapter, ValidationError

from broker_contracts.config import Settings
from broker_contracts.errors import RfarmError
from broker_contracts.types import Username
from rfarmctl.errors import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CtlError, unreachable
from store import quotas

T = TypeVar("T")


def add_parser(sub: Any) -> None:
    """`quota set|list|unset` under the subcommands ``sub`` of rfarmctl's parser."""
    p = sub.add_parser("quota", help="per-user quotas: queued tasks, submits per minute, watches")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", parser_class=type(p))
    s = verbs.add_parser("set", help="set a user's quotas (or --default: everyone's without their own)")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("user", nargs="?", help="the user")
    who.add_argument("--default", action="store_true", help="change the defaults instead")
    for field in quotas.FIELDS:
        s.add_argument(f"--{field.replace('_', '-')}", dest=field, type=int, metavar="N")
    s.set_defaults(run=cmd_set)
    u = verbs.add_parser("unset", help="drop a user's own quotas: the defaults hold for them again")
    u.add_argument("user")
    u.set_defaults(run=cmd_unset)
    ls = verbs.add_parser("list", help="the defaults and every user's own quotas")
    ls.set_defaults(run=cmd_list)
    p.set_defaults(run=lambda _args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    raise CtlError(EXIT_USAGE, f"say set, list or unset (see {p.prog} --help)")


def cmd_set(args: argparse.Namespace) -> int:
    limits = {f: getattr(args, f) for f in quotas.FIELDS if getattr(args, f) is not None}
    if not limits:
        flags = ", ".join("--" + f.replace("_", "-") for f in quotas.FIELDS)
        raise CtlError(EXIT_USAGE, f"nothing to set: give one or more of {flags}")
    if args.default:
        _in_database(lambda conn: quotas.set_default(conn, limits))
        target = "the defaults"
    else:
        username = _username(args.user)
        _in_database(lambda conn: quotas.set_user(conn, username, limits))
        target = username
    print(f"quota of {target}: " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in limits.items()))
    return EXIT_OK


def cmd_unset(args: argparse.Namespace) -> int:
    username = _username(args.user)
    had = _in_database(lambda conn: quotas.unset_user(conn, username))
    print(f"{username} has the default quotas again" if had else f"{username} had no quotas of their own")
    return EXIT_OK


def cmd_list(_args: argparse.Namespace) -> int:
    rows = _in_database(quotas.listed)
    header = ("user", *(f.replace("_", "-") for f in quotas.FIELDS))
    table = [header] + [
        (
            "(default)" if q.username is None else q.username,
            *("default" if getattr(q, f) is None else str(getattr(q, f)) for f in quotas.FIELDS),
        )
        for q in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


def _username(text: str) -> str:
    try:
        return TypeAdapter(Username).validate_python(text)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise CtlError(EXIT_USAGE, f"username refused: {problem}") from exc


def _in_database(work: Callable[[psycopg.Connection], T]) -> T:
    with _connection() as conn:
        try:
            return work(conn)
        except RfarmError as exc:
            raise CtlError(EXIT_REFUSED, exc.message) from exc


@contextmanager
def _connection() -> Iterator[psycopg.Connection]:
    url = Settings.from_env().database_url
    try:
        with psycopg.connect(url, row_factory=dict_row, connect_timeout=10) as conn, conn.transaction():
            yield conn
    except psycopg.OperationalError as exc:
        raise unreachable("PostgreSQL", url, exc) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise CtlError(EXIT_REFUSED, "the database has no quota tables yet: run `rfarmctl migrate`") from exc
