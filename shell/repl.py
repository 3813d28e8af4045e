"""The interactive shell: a thin prompt-toolkit loop over the same registry as argv and scripts.

Completion (``shell.complete.suggest``), the prompt and the toolbar (``shell.toolbar``) are pure
functions; this module only adapts them to prompt-toolkit. What they need from the farm comes
from a background ``Refresher``, so nothing here ever waits for the network while you type.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable

from prompt_toolkit import PromptSession
from prompt_toolkit.application import run_in_terminal
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output
from prompt_toolkit.styles import Style

from shell import notify
from shell.background import Refresher
from shell.complete import LEAVE, JobBrief, Known, split_words, suggest
from shell.errors import EXIT_NO_ANSWER, UsageError
from shell.keybindings import make_key_bindings
from shell.registry import Registry
from shell.safe import printable
from shell.session import Session
from shell.toolbar import PLAIN_STYLE, STYLE, farm_name, prompt_fragments, toolbar_fragments

HISTORY_FILE = "history"


def completions(registry: Registry, text: str, known: Known | None = None) -> list[str]:
    """The words that may finish ``text`` (what Tab offers), without their descriptions."""
    return [s.text for s in suggest(registry, text, known or Known())]


class RegistryCompleter(Completer):
    """prompt-toolkit's side of ``suggest``: ``known`` returns the latest background snapshot."""

    def __init__(self, registry: Registry, known: Callable[[], Known]) -> None:
        self.registry = registry
        self.known = known

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        _done, current = split_words(text)
        width = len(current) if text and not text[-1].isspace() else 0
        for item in suggest(self.registry, text, self.known()):
            yield Completion(item.text, start_position=-width, display_meta=item.meta)


def history_for(session: Session) -> History:
    folder = session.settings.data_dir
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return FileHistory(str(folder / HISTORY_FILE))
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


def _prompt(refresher: Refresher) -> FormattedText:
    """Who the farm says you are (as it last said, while it is away) and where it is: no waiting."""
    settings = refresher.settings
    return FormattedText(prompt_fragments(refresher.snapshot.user, farm_name(settings.redis_url, settings.prefix)))


def run_on_the_farm(session: Session, refresher: Refresher, words: list[str]) -> int:
    """Run a command where the farm is now: where the refresher found it moved, or, when the farm
    did not answer, where the environment or a farm.env names it now (and then once more, there)."""
    if refresher.settings != session.settings:
        session.relocate()
    code = session.run(words)
    if code == EXIT_NO_ANSWER and session.relocate():
        print(f"the farm is now at {session.client.where}: trying again", file=session.err)
        code = session.run(words)
    return code


def build_prompt(
    session: Session, refresher: Refresher, *, input: Input | None = None, output: Output | None = None
) -> PromptSession[str]:
    prompt: PromptSession[str] = PromptSession(
        message=lambda: _prompt(refresher),
        history=history_for(session),
        completer=RegistryCompleter(session.registry, lambda: refresher.snapshot.known),
        complete_while_typing=True,
        key_bindings=make_key_bindings(),
        bottom_toolbar=lambda: FormattedText(toolbar_fragments(refresher.snapshot, _columns(prompt))),
        style=Style.from_dict(PLAIN_STYLE if "NO_COLOR" in os.environ else STYLE),
        refresh_interval=1.0,
        input=input,
        output=output,
    )
    return prompt


def _columns(prompt: PromptSession[str]) -> int:
    try:
        return prompt.app.output.get_size().columns
    except Exception:  # no size known (a dummy output): assume the narrow terminal
        return 80


def _tell(session: Session, prompt: PromptSession[str], ended: list[JobBrief]) -> None:
    """From the refresher's thread: a line, the bell and a notification per job that ended, above
    the prompt while it is shown, else straight out (a command is running)."""

    def show() -> None:
        for job in ended:
            notify.tell(session.out, job.id, printable(job.name), job.status)

    loop = prompt.app.loop
    if prompt.app.is_running and loop is not None:
        loop.call_soon_threadsafe(lambda: run_in_terminal(show))
    else:
        show()


def run(
    session: Session,
    *,
    input: Input | None = None,
    output: Output | None = None,
    refresher: Refresher | None = None,
) -> int:
    """Read commands until `exit`, `quit` or Ctrl-D; each runs through ``session.run``. Returns 0,
    or the exit code of the last command when the shell ends. ``input``/``output`` are for tests."""
    refresher = refresher or Refresher(session.settings, reload=session.reload)
    session.registry.inside_shell = True
    prompt = build_prompt(session, refresher, input=input, output=output)
    refresher.on_change = prompt.app.invalidate
    if notify.enabled():
        refresher.on_finished = lambda ended: _tell(session, prompt, ended)
    refresher.start()
    print("rfarm shell: `help` lists the commands, Tab completes, Ctrl-D leaves", file=session.out)
    last = 0
    try:
        while True:
            try:
                text = prompt.prompt()
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
            last = run_on_the_farm(session, refresher, words)
            refresher.poke()
    finally:
        refresher.stop()
