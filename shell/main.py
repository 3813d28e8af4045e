"""`rfarm`: one-shot commands from argv, a script of commands from piped stdin, or the REPL."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from broker_contracts.config import Settings
from broker_contracts.envelope import first_error
from broker_contracts.version import rfarm_version
from shell.commands import default_registry
from shell.errors import EXIT_OK, HelpShown, ShellError, UsageError
from shell.registry import Registry, _Parser, positive_seconds
from shell.safe import printable
from shell.session import Session, timeout_from_env

EXIT_FAILED = 1


def _top_parser(registry: Registry) -> argparse.ArgumentParser:
    parser = _Parser(prog=registry.prog, add_help=False, allow_abbrev=False)
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("--version", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--timeout", type=positive_seconds)
    parser.add_argument("--keep-going", action="store_true")
    parser.add_argument("words", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script. Returns the exit code: 0 done, 1 farm error, 2 usage, 3 no answer."""
    args = list(sys.argv[1:] if argv is None else argv)
    registry = default_registry()
    try:
        return _main(args, registry)
    except ShellError as exc:  # errors before a Session exists (bad global options, settings)
        print(f"error: {printable(exc.message)}", file=sys.stderr)
        return exc.exit_code
    except HelpShown as shown:
        print(shown.text)
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`rfarm jobs | head`): stop quietly, no traceback at exit either
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:  # a bug in the shell itself: still one line, never a traceback
        print(f"error: rfarm failed unexpectedly ({type(exc).__name__}: {exc}); please report it", file=sys.stderr)
        return EXIT_FAILED


def _main(args: list[str], registry: Registry) -> int:
    top = _top_parser(registry).parse_args(args)
    if top.help:
        raise HelpShown("\n".join(registry.overview()))
    if top.version:
        raise HelpShown(f"{registry.prog} {rfarm_version()}")
    try:
        settings = Settings.from_env()
    except ValidationError as exc:
        raise UsageError(f"bad RFARM_* setting: {first_error(exc)}") from None
    timeout = top.timeout or timeout_from_env(os.environ)
    session = Session(settings, registry, json_mode=top.json, timeout=timeout, reload=Settings.from_env)
    try:
        if top.words:
            return session.run(top.words)
        if not sys.stdin.isatty():
            return run_script(session, keep_going=top.keep_going)
        from shell import repl

        return repl.run(session)
    finally:
        session.close()


def run_script(session: Session, *, keep_going: bool = False) -> int:
    """One command per line of stdin (blank lines and `#` comments skipped). Stops at the first
    failing line with its exit code, unless ``keep_going``: then the first failure's code at the end."""
    first_failure = EXIT_OK
    number = 0
    while True:
        line = session.stdin.readline()
        if not line:
            return first_failure
        number += 1
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            words = shlex.split(text)
        except ValueError as exc:
            code = session.run_error(UsageError(f"line {number}: {exc}"))
        else:
            if words and words[0] == session.registry.prog:
                words = words[1:]
            code = session.run(words, where=f"line {number}")
        if code != EXIT_OK:
            if not keep_going:
                return code
            if first_failure == EXIT_OK:
                first_failure = code


if __name__ == "__main__":
    sys.exit(main())
