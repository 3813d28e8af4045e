"""`rfarmctl node-credential`: issue, list and revoke the credentials render nodes sign reports with.

The database keeps only each node's public key; the credential (the node's private key and the
gateways' work key) is printed once and never stored.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from broker_contracts.config import Settings
from broker_contracts.keys import valid_name
from broker_contracts.signing import CredentialError, NodeCredential, new_pair
from rfarmctl.errors import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CtlError, unreachable


def issue(url: str, name: str, *, replace: bool) -> NodeCredential:
    """A new credential for node ``name``; with ``replace`` it takes the place of a live one."""
    from store import credentials

    if not valid_name(name):
        raise CtlError(EXIT_USAGE, f"node name {name!r} must be letters, digits, '_', '.' or '-' (at most 64)")
    try:
        with psycopg.connect(url, row_factory=dict_row, connect_timeout=10) as conn, conn.transaction():
            _, gateway_key = credentials.signing_key(conn, credentials.WORK_KEY, *new_pair())
            credential = NodeCredential.new(name, gateway_key)
            if not credentials.add_node(conn, name, credential.public_key, replace=replace):
                raise CtlError(EXIT_REFUSED, f"node {name} already has a credential: revoke it first, or use --replace")
    except psycopg.OperationalError as exc:
        raise unreachable("PostgreSQL", url, exc) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise CtlError(EXIT_REFUSED, "the database has no node credentials yet: run `rfarmctl migrate`") from exc
    return credential


def kept(url: str, name: str, saved: Path) -> str:
    """The credential of node ``name`` kept in ``saved`` (mode 0600) while the database still holds
    its key, else a new one, saved there: `rfarmctl up` keeps its nodes' identities across restarts,
    so what a node reported before a restart still counts after it."""
    from store import credentials

    if saved.exists():
        try:
            credential = NodeCredential.parse(saved.read_text())
            with psycopg.connect(url, row_factory=dict_row, connect_timeout=10) as conn:
                if credential.name == name and credentials.node_keys(conn).get(name) == credential.public_key:
                    return credential.text()
        except (CredentialError, OSError):
            pass
        except psycopg.OperationalError as exc:
            raise unreachable("PostgreSQL", url, exc) from exc
    text = issue(url, name, replace=True).text()
    saved.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text + "\n")
    return text


def cmd_add(args: argparse.Namespace) -> int:
    credential = issue(Settings.from_env().database_url, args.name, replace=args.replace)
    print(credential.text())
    return EXIT_OK


def cmd_list(_args: argparse.Namespace) -> int:
    from store import credentials

    url = Settings.from_env().database_url
    try:
        with psycopg.connect(url, row_factory=dict_row, connect_timeout=10) as conn:
            found = credentials.list_nodes(conn)
    except psycopg.OperationalError as exc:
        raise unreachable("PostgreSQL", url, exc) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise CtlError(EXIT_REFUSED, "the database has no node credentials yet: run `rfarmctl migrate`") from exc
    if not found:
        print("no node credentials")
        return EXIT_OK
    width = max(len("NODE"), *(len(k.name) for k in found))
    print(f"{'NODE':<{width}}  ISSUED               STATE")
    for k in found:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        print(f"{k.name:<{width}}  {k.created_at:%Y-%m-%d %H:%M:%S}  {state}")
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    from store import credentials

    url = Settings.from_env().database_url
    try:
        with psycopg.connect(url, row_factory=dict_row, connect_timeout=10) as conn, conn.transaction():
            revoked = credentials.revoke_node(conn, args.name)
    except psycopg.OperationalError as exc:
        raise unreachable("PostgreSQL", url, exc) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise CtlError(EXIT_REFUSED, "the database has no node credentials yet: run `rfarmctl migrate`") from exc
    if not revoked:
        raise CtlError(EXIT_REFUSED, f"node {args.name!r} has no active credential")
    print(f"revoked the credential of node {args.name}: its reports are refused within seconds")
    return EXIT_OK


def _no_action(_args: argparse.Namespace) -> int:
    raise CtlError(EXIT_USAGE, "node-credential needs an action: add NAME, list or revoke NAME")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("node-credential", help="issue, list or revoke render node credentials")
    p.set_defaults(run=_no_action)
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    add = actions.add_parser("add", help="issue a credential for node NAME (printed once)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--replace", action="store_true", help="replace the node's live credential")
    add.set_defaults(run=cmd_add)
    actions.add_parser("list", help="the nodes that have a credential").set_defaults(run=cmd_list)
    revoke = actions.add_parser("revoke", help="refuse node NAME's reports from now on")
    revoke.add_argument("name", metavar="NAME")
    revoke.set_defaults(run=cmd_revoke)
