"""Runs one command line through the registry, and turns every error into one message + exit code.

``Session.run(argv)`` is the single entry that argv, piped stdin and the REPL all call. It is the
one place where errors become output (STYLE habit 3): stderr ``error: …`` (or a JSON error
document on stdout with --json) and the exit code of the error's kind.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from nacl.public import PrivateKey
from pydantic import ValidationError

from broker_contracts.config import Settings, is_default_source
from broker_contracts.envelope import first_error
from broker_contracts.errors import ErrorCode
from broker_contracts.sealing import SealError, key_text, seal, unseal
from shell.client import DEFAULT_TIMEOUT, Client
from shell.credentials import CredentialStore
from shell.errors import EXIT_OK, FarmError, HelpShown, Refused, ShellError, UsageError
from shell.farmkey import PinnedKeys
from shell.format import RenderOptions, inside_shell
from shell.registry import Command, Registry
from shell.safe import json_text, printable

EXIT_INTERRUPTED = 130


def timeout_from_env(environ: dict[str, str] | os._Environ[str]) -> float:
    """RFARM_TIMEOUT or the default; a bad value is a usage error, not a silent default."""
    text = environ.get("RFARM_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"RFARM_TIMEOUT={text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise UsageError(f"RFARM_TIMEOUT={text!r} must be between 0 and 3600 seconds")
    return value


def relocated(current: Settings, reload: Callable[[], Settings] | None) -> Settings | None:
    """The settings ``reload`` reads now, if they name another farm address than ``current`` does.
    Falling back to the built-in default is no news (a farm.env is removed while its farm is down)."""
    if reload is None:
        return None
    try:
        found = reload()
    except ValidationError:
        return None
    if is_default_source(found.redis_source):
        return None
    if (found.redis_url, found.prefix) == (current.redis_url, current.prefix):
        return None
    return found


def _ask_on_terminal(prompt: str) -> str:
    try:
        with open("/dev/tty", "rb"):
            pass
    except OSError:
        raise UsageError("there is no terminal to ask for the password: pipe it in with --password-stdin") from None
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise UsageError("no password given") from None


class Session:
    """The state one process keeps between commands: settings, the credentials, one Client."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        json_mode: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        stdin: TextIO | None = None,
        out: TextIO | None = None,
        err: TextIO | None = None,
        ask_password: Callable[[str], str] = _ask_on_terminal,
        render_options: Callable[[], RenderOptions] | None = None,
        reload: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.json_mode = json_mode
        self.timeout = timeout
        self.stdin = stdin if stdin is not None else sys.stdin
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self._ask_password = ask_password
        self._render_options = render_options or self._terminal_options
        self.reload = reload  # where the farm is now (re-read), to follow a farm that moved
        self.store = CredentialStore(settings, self._farm_id)
        self._client: Client | None = None
        self._answer_key: PrivateKey | None = None

    # --- Context (what command hooks may use) --------------------------------------------------

    def ask_password(self, prompt: str) -> str:
        return self._ask_password(prompt)

    def read_stdin_line(self) -> str:
        line = self.stdin.readline()
        if not line:
            raise UsageError("--password-stdin: standard input is empty")
        return line.rstrip("\r\n")

    def save_login(self, username: str, token: str) -> None:
        try:
            self.store.save(username, token)
        except OSError as exc:
            raise FarmError(
                f"logged in, but the token could not be saved in {self.store.path}: {exc.strerror}",
                ErrorCode.INTERNAL.value,
            ) from None

    def forget_login(self) -> bool:
        try:
            return self.store.forget()
        except OSError:
            return False

    def seal_password(self, password: str, *, accept_new_key: bool = False) -> str:
        """The password sealed to the farm's key (pinned at first contact), for the gateways alone."""
        return seal(self.client.farm_key(accept_new=accept_new_key), password.encode("utf-8"))

    def answer_key(self) -> str:
        """A new one-off public key for a login: the farm seals the login's token to it."""
        self._answer_key = PrivateKey.generate()
        return key_text(self._answer_key.public_key)

    def open_answer(self, sealed: str) -> str:
        if self._answer_key is None:
            raise FarmError("the farm sent a sealed answer this shell did not ask for", ErrorCode.INTERNAL.value)
        try:
            return unseal(self._answer_key, sealed).decode("utf-8")
        except (SealError, UnicodeDecodeError):
            message = "the farm's sealed answer cannot be opened by this shell"
            raise FarmError(message, ErrorCode.INTERNAL.value) from None

    # --- running --------------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """Created on first use, so a wrong command line never touches Redis."""
        if self._client is None:
            settings = self.settings
            self._client = Client(
                settings.redis_url,
                settings.prefix,
                timeout=self.timeout,
                source=settings.redis_source,
                pins=PinnedKeys(settings),
            )
        return self._client

    def _farm_id(self, wait: bool) -> str | None:
        return self._announced(self.timeout if wait else 0.0)

    def _announced(self, wait: float) -> str | None:
        try:
            return self.client.farm_id(wait=wait)
        except Refused:  # an ACL user made before shells could read the farm's identity
            return None

    def _farm_is_there(self, timeout: float) -> None:
        """Nothing (no password, no token) is sent where no farm announces itself: a farm that is
        starting is waited for, up to ``timeout``; then NoAnswer says which address was tried."""
        self._announced(timeout)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def relocate(self) -> bool:
        """Re-read where the farm is; if the environment or a farm.env now names another address,
        talk there from the next request on. The saved session follows: it is keyed by the farm."""
        found = relocated(self.settings, self.reload)
        if found is None:
            return False
        self.close()
        self.settings = found
        self.store = CredentialStore(found, self._farm_id)
        return True

    def run(self, argv: Sequence[str], *, where: str = "") -> int:
        """Run one command line; return its exit code. Never raises, never prints a traceback.
        ``where`` (e.g. "line 3") prefixes error messages in script mode."""
        json_mode = self.json_mode or "--json" in argv
        try:
            return self.execute(argv)
        except HelpShown as shown:
            if shown.text:
                print(shown.text, file=self.out)
            return EXIT_OK
        except ShellError as exc:
            if where:
                exc.message = f"{where}: {exc.message}"
            self.report(exc, json_mode=json_mode)
            return exc.exit_code
        except KeyboardInterrupt:
            print("interrupted", file=self.err)
            return EXIT_INTERRUPTED

    def run_error(self, exc: ShellError) -> int:
        """Report an error found outside a command (a script line that does not split)."""
        self.report(exc, json_mode=self.json_mode)
        return exc.exit_code

    def report(self, exc: ShellError, *, json_mode: bool) -> None:
        if self.registry.inside_shell:
            exc.message = inside_shell(exc.message, self.registry.prog)
        if json_mode:
            print(json.dumps({"error": {"code": exc.code, "message": exc.message}}), file=self.out)
        else:
            print(f"error: {printable(exc.message)}", file=self.err)

    def execute(self, argv: Sequence[str]) -> int:
        """Parse, ask the farm, print; returns the exit code (errors are raised as ShellError)."""
        command, ns = self.registry.parse(argv)
        if command.local is not None:
            self._print_lines(command.local(ns, self.registry))
            return EXIT_OK
        json_mode = self.json_mode or bool(getattr(ns, "json", False))
        ns.json = json_mode
        body = self._validated_body(command, ns)
        if command.seal is not None:
            body = command.seal(body, ns, self)
        if command.live is not None:
            return command.live(body, ns, self)
        timeout = getattr(ns, "timeout", None) or self.timeout
        token = self.store.require_token() if command.needs_auth else None
        self._farm_is_there(timeout)
        assert command.request is not None
        try:
            raw = self.client.call(command.request, body, token, timeout=timeout)
        finally:
            if command.always is not None:
                command.always(self)
        reply = self._validated_reply(command, raw)
        if command.after is not None:
            command.after(reply, ns, self)
        follows = command.follow is not None and bool(getattr(ns, "watch", False))
        if json_mode:
            if not follows:  # the follow prints the one JSON document
                print(json_text(command.as_json(reply)), file=self.out)
        elif (render := command.renderer(ns)) is not None:
            if command.render_raw and getattr(ns, "raw", False):
                render = command.render_raw
            self._print_lines(render(reply, self._render_options()))
        if follows:
            assert command.follow is not None
            return command.follow(reply, ns, self)
        return EXIT_OK

    # --- what following a job needs (shell.watch.Host) ----------------------------------------

    def token(self) -> str:
        token = self.store.require_token()
        self._farm_is_there(self.timeout)
        return token

    def options(self) -> RenderOptions:
        return self._render_options()

    def live_terminal(self) -> bool:
        """Whether the output is a terminal on which a block may be redrawn in place."""
        return bool(hasattr(self.out, "isatty") and self.out.isatty() and os.environ.get("TERM") != "dumb")

    def request_for(self, argv: Sequence[str]) -> tuple[str, dict[str, Any]]:
        """The (request type, body) a command line would send, without sending it (its form:
        a password is sealed only as it is sent)."""
        command, ns = self.registry.parse(argv)
        if command.request is None:
            raise UsageError(f"{command.name} is answered by the shell itself, not the farm")
        return command.request, self._validated_body(command, ns)

    def _validated_body(self, command: Command, ns: argparse.Namespace) -> dict[str, Any]:
        """Checked here with the contracts' own model, so a bad request never goes to the farm."""
        assert command.build is not None
        raw = command.build(ns, self)
        try:
            model = command.form_model.model_validate(raw)
        except ValidationError as exc:
            said = first_error(exc, command.request_model)
            raise UsageError(f"{self.registry.prog} {command.name}: {said}") from None
        return model.model_dump(mode="json", by_alias=True)

    def _validated_reply(self, command: Command, raw: Any) -> Any:
        try:
            return command.reply_model.model_validate(raw)
        except ValidationError as exc:
            raise FarmError(
                f"the farm's reply to {command.request} is not what this shell expects ({first_error(exc)})",
                ErrorCode.INTERNAL.value,
            ) from None

    def _print_lines(self, lines: list[str]) -> None:
        for line in lines:
            print(line, file=self.out)
        self.out.flush()

    def _terminal_options(self) -> RenderOptions:
        is_tty = hasattr(self.out, "isatty") and self.out.isatty()
        color = is_tty and "NO_COLOR" not in os.environ
        width = shutil.get_terminal_size((100, 24)).columns
        return RenderOptions(width=max(width, 40), color=color, inside_shell=self.registry.inside_shell)
