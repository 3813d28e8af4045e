"""Completion as a pure function of the text typed and what the shell already knows.

``suggest(registry, text, known)`` returns what may finish the last word: command names, a
command's options, and values where an argument says what it ``completes`` (job ids with their
names beside them, profiles, statuses, parameter names of the chosen profile). ``Known`` is a
snapshot the background refresher keeps: nothing here waits for the farm.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from broker_contracts.profiles import BUILTIN_PROFILES, ProfileSpec
from broker_contracts.states import JobStatus
from shell.registry import Arg, Command, Registry
from shell.safe import printable

LEAVE = ("exit", "quit")
COMMON_OPTIONS = ("--json", "--timeout")


@dataclass(frozen=True)
class JobBrief:
    id: int
    name: str
    status: str


@dataclass(frozen=True)
class Known:
    """What completion may offer besides the registry: refreshed in the background."""

    jobs: tuple[JobBrief, ...] = ()
    profiles: dict[str, ProfileSpec] = field(default_factory=lambda: dict(BUILTIN_PROFILES))
    nodes: tuple[str, ...] = ()  # names, pools and tags of the nodes `node.list` showed
    pools: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Suggestion:
    text: str  # replaces the word being typed
    meta: str = ""  # shown beside it (a job's name and status, a command's help)


def split_words(text: str) -> tuple[list[str], str]:
    """The finished words and the word being typed (quotes allowed; an open quote is tolerated)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    words: list[str] = []
    try:
        words = list(lexer)
    except ValueError:
        words = text.split()
    if not text or text[-1].isspace():
        return words, ""
    return words[:-1], words[-1] if words else ""


def _options(command: Command) -> list[Arg]:
    return [a for a in command.args if not a.positional]


def _takes_value(command: Command, word: str) -> Arg | None:
    for arg in _options(command):
        if arg.name == word and not arg.flag:
            return arg
    if word == "--timeout" and command.request is not None:
        return Arg("--timeout", "seconds")
    return None


def _positionals_given(command: Command, done: list[str]) -> int:
    count, skip = 0, False
    for word in done[1:]:
        if skip:
            skip = False
            continue
        if word.startswith("-"):
            skip = _takes_value(command, word) is not None
            continue
        count += 1
    return count


def _values(arg: Arg, current: str, done: list[str], known: Known, registry: Registry) -> list[Suggestion]:
    if arg.choices is not None and arg.completes != "status":
        return [Suggestion(c) for c in arg.choices if c.startswith(current)]
    kind = arg.completes
    if kind == "job":
        by_name = bool(current) and not current.isdigit()
        low = current.lower()
        return [
            Suggestion(str(j.id), f"{printable(j.name)} · {j.status}")
            for j in known.jobs
            if (j.name.lower().startswith(low) if by_name else str(j.id).startswith(current))
        ]
    if kind == "status":
        return [Suggestion(s.value) for s in JobStatus if s.value.startswith(current)]
    if kind == "profile":
        profiles = sorted(known.profiles.items())
        return [Suggestion(p, printable(_profile_meta(spec))) for p, spec in profiles if p.startswith(current)]
    if kind == "command":
        return [Suggestion(n, registry.commands[n].help) for n in registry.names() if n.startswith(current)]
    if kind in ("node", "pool", "tag"):
        names = {"node": known.nodes, "pool": known.pools, "tag": known.tags}[kind]
        return [Suggestion(n) for n in names if n.startswith(current)]
    if kind == "param":
        return _params(current, done, known)
    return []


def _profile_meta(spec: ProfileSpec) -> str:
    return ", ".join(spec.params) if spec.params else spec.kind


def _params(current: str, done: list[str], known: Known) -> list[Suggestion]:
    """``--param`` values: the chosen profile's parameter names, then a choice parameter's values."""
    profile = "fractal"
    for i, word in enumerate(done[:-1]):
        if word == "--renderer":
            profile = done[i + 1]
    spec = known.profiles.get(profile)
    if spec is None:
        return []
    name, sep, value = current.partition("=")
    if not sep:
        return [Suggestion(f"{p}=", printable(ps.help)) for p, ps in sorted(spec.params.items()) if p.startswith(name)]
    param = spec.params.get(name)
    if param is None or not param.choices:
        return []
    return [Suggestion(f"{name}={c}") for c in param.choices if c.startswith(value)]


def suggest(registry: Registry, text: str, known: Known) -> list[Suggestion]:
    """What may finish the last word of ``text`` (a pure function: no I/O, no waiting)."""
    done, current = split_words(text)
    if done and done[0] == registry.prog:
        done = done[1:]
    if not done:
        names = [Suggestion(n, registry.commands[n].help) for n in registry.names()]
        names += [Suggestion(n, "leave the shell") for n in LEAVE]
        return [s for s in names if s.text.startswith(current)]
    command = registry.commands.get(done[0])
    if command is None:
        return []
    wanted = _takes_value(command, done[-1]) if len(done) > 1 else None
    if wanted is not None:
        if wanted.name == "--param":
            return _params(current, done, known)
        return _values(wanted, current, done, known, registry)
    if current.startswith("-") or not current:
        repeatable = {a.name for a in command.args if a.repeat}
        names = [a.name for a in _options(command)]
        if command.request is not None:
            names += [o for o in COMMON_OPTIONS if o not in names]
        options = [Suggestion(o) for o in names if o.startswith(current) and (o not in done or o in repeatable)]
        if current:
            return options
    else:
        options = []
    positionals = [a for a in command.args if a.positional]
    given = _positionals_given(command, done)
    values: list[Suggestion] = []
    if given < len(positionals):
        values = _values(positionals[given], current, done, known, registry)
    return values + options
