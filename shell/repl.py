"""The interactive shell: a thin prompt-toolkit loop over the same registry as argv and scripts.

Minimal for now (prompt, history, command/option completion); the toolbar and watch come later.
Completion is a pure function of the text typed (``completions``); prompt-toolkit only adapts it.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output

from shell.errors import UsageError
from shell.registry import Registry
from shell.session import Session

LEAVE = frozenset({"exit", "quit"})


def completions(registry: Registry, text: str) -> list[str]:
    """What may finish the last word of ``text``: a command name first, then that command's options."""
    words = text.split()
    current = "" if not words or text.endswith(" ") else words[-1]
    done = words if current == "" else words[:-1]
    if not done:
        names = [*registry.names(), *sorted(LEAVE)]
        return [n for n in names if n.startswith(current)]
    command = registry.commands.get(done[0])
    if command is None:
        return []
    if command.name == "help" and len(done) == 1:
        return [n for n in registry.names() if n.startswith(current)]
    options = [a.name for a in command.args if not a.positional]
    if command.request is not None:
        options += ["--json", "--timeout"]
    if current and not current.startswith("-"):
        return []
    repeatable = {a.name for a in command.args if a.repeat}
    return [o for o in options if o.startswith(current) and (o not in done or o in repeatable)]


class _RegistryCompleter(Completer):
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        current = "" if not text or text.endswith(" ") else text.split()[-1]
        for word in completions(self.registry, text):
            yield Completion(word, start_position=-len(current))


def _history(session: Session) -> History:
    folder = session.settings.config_dir
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return FileHistory(str(folder / "history"))
    except OSError:
        return InMemoryHistory()


def split_line(text: str, prog: str) -> list[str]:
    """A typed line to words; a leading `rfarm` is allowed and dropped. UsageError on bad quoting."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if words and words[0] == prog:
        words = words[1:]
    return words


def run(session: Session, *, input: Input | None = None, output: Output | None = None) -> int:
    """Read commands until `exit`, `quit` or Ctrl-D; each runs through ``session.run``. Returns 0,
    or the exit code of the last command when the shell ends. ``input``/``output`` are for tests."""
    prompt: PromptSession[str] = PromptSession(
        history=_history(session),
        completer=_RegistryCompleter(session.registry),
        complete_while_typing=False,
        input=input,
        output=output,
    )
    print("rfarm shell: `help` lists the commands, Ctrl-D leaves", file=session.out)
    last = 0
    while True:
        try:
            text = prompt.prompt("rfarm> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            return last
        try:
            words = split_line(text, session.registry.prog)
        except UsageError as exc:
            last = session.run_error(exc)
            continue
        if not words:
            continue
        if words[0] in LEAVE:
            return last
        last = session.run(words)
