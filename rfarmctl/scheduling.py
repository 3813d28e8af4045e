"""`rfarmctl share` and `rfarmctl limit`: fair-share weights per user and named limits
(store/shares.py, store/limits.py), written to the database."""

from __future__ import annotations

import argparse
import math
from typing import Any

from broker_contracts.keys import valid_name
from rfarmctl.errors import EXIT_OK, EXIT_USAGE, CtlError
from rfarmctl.quotas import _in_database, _username
from store import limits, shares


def add_parsers(sub: Any) -> None:
    """`share set|list|unset` and `limit set|list|unset` under rfarmctl's subcommands ``sub``."""
    p = sub.add_parser("share", help="fair-share weights: a user of weight 2 gets twice the slots of one of 1")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", parser_class=type(p))
    s = verbs.add_parser("set", help="give a user a weight (default 1)")
    s.add_argument("user")
    s.add_argument("weight", type=_weight, metavar="WEIGHT")
    s.set_defaults(run=cmd_share_set)
    u = verbs.add_parser("unset", help="a user weighs 1 again")
    u.add_argument("user")
    u.set_defaults(run=cmd_share_unset)
    verbs.add_parser("list", help="every user with a weight of their own").set_defaults(run=cmd_share_list)
    p.set_defaults(run=lambda _args: _usage(p))

    p = sub.add_parser("limit", help="named limits (licences): at most N tasks taking one run at once")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", parser_class=type(p))
    s = verbs.add_parser("set", help="create a limit or change its count")
    s.add_argument("name", type=_limit_name, metavar="NAME")
    s.add_argument("count", type=_count, metavar="N")
    s.set_defaults(run=cmd_limit_set)
    u = verbs.add_parser("unset", help="remove a limit: the jobs that name it are capped no more")
    u.add_argument("name", type=_limit_name, metavar="NAME")
    u.set_defaults(run=cmd_limit_unset)
    verbs.add_parser("list", help="every limit, its count and the tasks holding it").set_defaults(run=cmd_limit_list)
    p.set_defaults(run=lambda _args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    raise CtlError(EXIT_USAGE, f"say set, list or unset (see {p.prog} --help)")


def _weight(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not 0 < value <= shares.MAX_WEIGHT:
        raise argparse.ArgumentTypeError(f"a weight is more than 0 and at most {shares.MAX_WEIGHT:g}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError("a limit's count is from 0 to 1000000")
    return value


def _limit_name(text: str) -> str:
    if not valid_name(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a limit name (letters, digits, '-', '_', '.')")
    return text


def cmd_share_set(args: argparse.Namespace) -> int:
    username = _username(args.user)
    _in_database(lambda conn: shares.set_share(conn, username, args.weight))
    print(f"share of {username}: {args.weight:g}")
    return EXIT_OK


def cmd_share_unset(args: argparse.Namespace) -> int:
    username = _username(args.user)
    had = _in_database(lambda conn: shares.unset(conn, username))
    print(f"{username} weighs 1 again" if had else f"{username} had no weight of their own (1)")
    return EXIT_OK


def cmd_share_list(_args: argparse.Namespace) -> int:
    rows = _in_database(shares.listed)
    _table(("user", "weight"), [(name, f"{weight:g}") for name, weight in rows])
    if not rows:
        print("(every user weighs 1)")
    return EXIT_OK


def cmd_limit_set(args: argparse.Namespace) -> int:
    _in_database(lambda conn: limits.set_limit(conn, args.name, args.count))
    print(f"limit {args.name}: {args.count}")
    return EXIT_OK


def cmd_limit_unset(args: argparse.Namespace) -> int:
    had = _in_database(lambda conn: limits.unset(conn, args.name))
    print(f"limit {args.name} removed" if had else f"no limit named {args.name}")
    return EXIT_OK


def cmd_limit_list(_args: argparse.Namespace) -> int:
    rows = _in_database(limits.listed)
    _table(("limit", "count", "in use"), [(lim.name, str(lim.count), str(lim.in_use)) for lim in rows])
    return EXIT_OK


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
