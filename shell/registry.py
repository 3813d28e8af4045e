"""The command registry: each command declared once; argv, piped stdin and the REPL all use it.

A ``Command`` names its request type, declares its arguments as ``Arg`` specs (turned into an
argparse parser that raises instead of exiting), builds the request body from the parsed
arguments, and renders the typed reply with a pure function. Nothing here does I/O.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from pydantic import BaseModel

from broker_contracts.messages import REQUEST_TYPES, RequestType
from shell.errors import HelpShown, UsageError
from shell.format import RenderOptions


class Context(Protocol):
    """What a command's hooks may use from the session running it."""

    def ask_password(self, prompt: str) -> str: ...

    def read_stdin_line(self) -> str: ...

    def save_login(self, username: str, token: str) -> None: ...

    def forget_login(self) -> bool: ...

    def seal_password(self, password: str, *, accept_new_key: bool = False) -> str: ...

    def answer_key(self) -> str: ...

    def open_answer(self, sealed: str) -> str: ...


@dataclass(frozen=True)
class Arg:
    """One argument: a positional ``name`` (e.g. "job") or an option ("--frames")."""

    name: str
    help: str
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    default: Any = None
    repeat: bool = False  # an option that may be given many times (a list)
    flag: bool = False  # an option without a value (True when given)
    optional: bool = False  # a positional that may be left out
    choices: Sequence[str] | None = None
    completes: str | None = None  # what the REPL offers here: "job", "user", "status", ...

    @property
    def positional(self) -> bool:
        return not self.name.startswith("-")

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")


Builder = Callable[[argparse.Namespace, Context], dict[str, Any]]
Renderer = Callable[[Any, RenderOptions], list[str]]
JsonView = Callable[[Any], Any]
AfterHook = Callable[[Any, argparse.Namespace, Context], None]
LocalRunner = Callable[[argparse.Namespace, "Registry"], list[str]]
# (validated request body, arguments, the session) -> exit code; for commands that last (watch, wait)
LiveRunner = Callable[[dict[str, Any], argparse.Namespace, Any], int]
# (typed reply, arguments, the session) -> exit code; runs when the command was given --watch
FollowHook = Callable[[Any, argparse.Namespace, Any], int]
# (the validated form, arguments, the session) -> the body sent, its secrets sealed
SealHook = Callable[[dict[str, Any], argparse.Namespace, Context], dict[str, Any]]


def _dump(reply: Any) -> Any:
    return reply.model_dump(mode="json", by_alias=True) if isinstance(reply, BaseModel) else reply


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    args: tuple[Arg, ...] = ()
    request: str | None = None  # a name in REQUEST_TYPES; None for a local command (help)
    build: Builder | None = None
    render: Renderer | None = None
    render_raw: Renderer | None = None  # with --raw: what the farm holds, control characters and all
    as_json: JsonView = _dump
    after: AfterHook | None = None  # on success, e.g. login stores the token
    always: Callable[[Context], None] | None = None  # after the request whatever happened
    local: LocalRunner | None = None
    live: LiveRunner | None = None  # runs instead of one request/reply (it talks to the farm itself)
    follow: FollowHook | None = None  # after the reply, when --watch was given (submit --watch)
    view: Callable[[argparse.Namespace], Renderer] | None = None  # the renderer the arguments ask for
    examples: tuple[str, ...] = ()
    # what the user gives, when the body sent differs from it (a password, before ``seal`` seals it)
    form: type[BaseModel] | None = None
    seal: SealHook | None = None

    def renderer(self, ns: argparse.Namespace) -> Renderer | None:
        """``render``, or the one ``view`` picks from the arguments (`jobs --all` shows owners)."""
        return self.view(ns) if self.view is not None else self.render

    @property
    def row(self) -> RequestType:
        """The registry row of the request this command sends."""
        assert self.request is not None
        return REQUEST_TYPES[self.request]

    @property
    def needs_auth(self) -> bool:
        return self.request is not None and self.row.needs_user

    @property
    def request_model(self) -> type[BaseModel]:
        return self.row.body

    @property
    def form_model(self) -> type[BaseModel]:
        """What the command's builder makes is checked against (the form, before anything is sealed)."""
        return self.form or self.row.body

    @property
    def reply_model(self) -> type[BaseModel]:
        return self.row.reply


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError / HelpShown instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status:
            raise UsageError(message or f"{self.prog}: bad arguments")
        raise HelpShown(message or "")

    def print_help(self, file: Any = None) -> None:
        raise HelpShown(self.format_help().rstrip("\n"))


def add_common_options(parser: argparse.ArgumentParser, *, suppress: bool, timeout: bool = True) -> None:
    """--json and --timeout work before the command name and after it (``timeout=False``: the
    command gives --timeout its own meaning, like `wait --timeout S`)."""
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print exactly one JSON document",
    )
    if not timeout:
        return
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="SECS",
        default=argparse.SUPPRESS if suppress else None,
        help="seconds to wait for the farm (default 10, or $RFARM_TIMEOUT)",
    )


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: the timeout must be between 0 and 3600 seconds")
    return value


class Registry:
    def __init__(self, commands: Sequence[Command], *, prog: str = "rfarm") -> None:
        self.prog = prog
        self.inside_shell = False  # set by the interactive shell: hints there name commands without `rfarm `
        self.commands: dict[str, Command] = {}
        for command in commands:
            if command.name in self.commands:
                raise ValueError(f"command {command.name!r} declared twice")
            self.commands[command.name] = command
        self._parsers: dict[str, _Parser] = {}

    def names(self) -> list[str]:
        return list(self.commands)

    def get(self, name: str) -> Command:
        command = self.commands.get(name)
        if command is None:
            close = difflib.get_close_matches(name, self.commands, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else f" (try `{self.prog} help`)"
            raise UsageError(f"unknown command {name!r}{hint}")
        return command

    def parser(self, name: str) -> _Parser:
        if name not in self._parsers:
            self._parsers[name] = self._build_parser(self.get(name))
        return self._parsers[name]

    def parse(self, argv: Sequence[str]) -> tuple[Command, argparse.Namespace]:
        """``["show", "42"]`` → (the show command, its arguments). UsageError if anything is wrong."""
        if not argv:
            raise UsageError(f"no command given (try `{self.prog} help`)")
        command = self.get(argv[0])
        namespace = self.parser(command.name).parse_args(list(argv[1:]))
        return command, namespace

    def _build_parser(self, command: Command) -> _Parser:
        epilog = "examples:\n" + "\n".join(f"  {e}" for e in command.examples) if command.examples else None
        parser = _Parser(
            prog=f"{self.prog} {command.name}",
            description=command.help,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )
        for arg in command.args:
            kwargs: dict[str, Any] = {"help": arg.help}
            if arg.flag:
                kwargs.update(action="store_true", default=False)
            else:
                kwargs.update(type=arg.type, metavar=arg.metavar or arg.dest.upper(), default=arg.default)
                if arg.choices is not None:
                    kwargs["choices"] = list(arg.choices)
                if arg.repeat:
                    kwargs.update(action="append", default=None)
                if arg.positional and arg.optional:
                    kwargs["nargs"] = "?"
            if arg.positional:
                kwargs["metavar"] = arg.metavar or arg.dest.upper()
                parser.add_argument(arg.dest, **kwargs)
            else:
                parser.add_argument(arg.name, dest=arg.dest, **kwargs)
        if command.request is not None:
            own_timeout = any(a.name == "--timeout" for a in command.args)
            add_common_options(parser, suppress=False, timeout=not own_timeout)
        return parser

    def overview(self) -> list[str]:
        """The list of commands with one line of help each."""
        width = max(len(n) for n in self.commands)
        lines = [f"usage: {self.prog} [--json] [--timeout SECS] COMMAND [ARGS]", "", "commands:"]
        lines += [f"  {name.ljust(width)}  {cmd.help}" for name, cmd in self.commands.items()]
        prog = "" if self.inside_shell else f"{self.prog} "
        lines += ["", f"`{prog}help COMMAND` or `{prog}COMMAND --help` for one command."]
        return lines
