"""A real terminal for the shell: a private tmux server running one command, its screen read back."""

from __future__ import annotations

import secrets
import shlex
import subprocess

from tests.support.farm import BIN, Farm, wait_for


class Terminal:
    """``rfarm ARGS`` in a 120x60 tmux window of a private server (its own socket); ``close`` ends it."""

    def __init__(self, farm: Farm, config: str, args: list[str], **env: str) -> None:
        self.root = farm.root
        tag = secrets.token_hex(4)
        self.done = farm.root / f"tmux-{tag}.done"
        self.base = ["tmux", "-S", str(farm.root / f"tmux-{tag}.sock"), "-f", "/dev/null"]
        environ = farm.env(RFARM_CONFIG_DIR=str(farm.root / config), **env)
        environ.pop("NO_COLOR", None)
        wanted = {k: v for k, v in environ.items() if k.startswith(("RFARM_", "PATH"))}
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in wanted.items())
        script = farm.root / f"tmux-{tag}.sh"
        script.write_text(
            f"{exports}cd {shlex.quote(str(farm.root))}\n{shlex.join([str(BIN / 'rfarm'), *args])}\n"
            f"echo $? > {shlex.quote(str(self.done))}\nsleep 60\n"
        )
        subprocess.run([*self.base, "new-session", "-d", "-x", "120", "-y", "60", "bash", str(script)], check=True)

    def screen(self) -> str:
        """The window's text with its colour escapes, scrollback included."""
        shot = subprocess.run([*self.base, "capture-pane", "-p", "-e", "-S", "-200"], capture_output=True, check=True)
        return shot.stdout.decode("utf-8", errors="replace")

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", *keys], check=True)

    def ended(self) -> int:
        """Wait for the command to end; its exit code."""
        wait_for(self.done.exists, timeout=60, what="the command in tmux to end")
        return int(self.done.read_text().strip())

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], check=False, capture_output=True)


def run_in_terminal(farm: Farm, config: str, args: list[str]) -> str:
    """Run ``rfarm ARGS`` to its end in a real terminal; the screen it left (exit code 0 asserted)."""
    term = Terminal(farm, config, args)
    try:
        assert term.ended() == 0, term.screen()
        return term.screen()
    finally:
        term.close()


