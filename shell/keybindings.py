"""The REPL's key bindings, in one factory. Everything else is prompt-toolkit's emacs defaults
(Ctrl-R / Ctrl-S search the history, Ctrl-A / Ctrl-E, Alt-B / Alt-F, …)."""

from __future__ import annotations

from prompt_toolkit.enums import DEFAULT_BUFFER
from prompt_toolkit.filters import Condition, has_focus
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent


def make_key_bindings() -> KeyBindings:
    kb = KeyBindings()
    in_line = has_focus(DEFAULT_BUFFER)

    @kb.add("c-c", filter=in_line)
    def _clear_line(event: KeyPressEvent) -> None:
        """Ctrl-C clears what is typed (and closes the completion menu); the shell stays."""
        event.current_buffer.reset()

    @Condition
    def _line_empty() -> bool:
        from prompt_toolkit.application.current import get_app

        return not get_app().current_buffer.text

    @kb.add("c-d", filter=in_line & _line_empty)
    def _leave(event: KeyPressEvent) -> None:
        """Ctrl-D on an empty line leaves the shell (like `exit`); on a typed line it deletes."""
        event.app.exit(exception=EOFError)

    @kb.add("tab", filter=in_line)
    def _complete(event: KeyPressEvent) -> None:
        """Tab completes: a single candidate is taken at once (with a space after it, unless it
        ends in "="), several open the menu and Tab again moves through it."""
        buffer = event.current_buffer
        state = buffer.complete_state
        if state is None:
            buffer.start_completion(insert_common_part=True)
            return
        if len(state.completions) == 1:
            completion = state.completions[0]
            buffer.apply_completion(completion)
            if not completion.text.endswith("="):
                buffer.insert_text(" ")
            return
        buffer.complete_next()

    @kb.add("s-tab", filter=in_line)
    def _complete_back(event: KeyPressEvent) -> None:
        """Shift-Tab moves back through the completion menu."""
        buffer = event.current_buffer
        if buffer.complete_state:
            buffer.complete_previous()

    return kb
