"""One renderer process: started from an argv list (never a shell) in its own session.

Two reader threads move stdout and stderr lines into one queue, so the renderer never blocks on a
full pipe and the task loop can batch the output and spot progress lines.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO

MAX_LINE = 2000
KILL_AFTER = 1.5


@dataclass(frozen=True)
class Line:
    stream: str  # "out" or "err"
    text: str


# what makes a renderer see one GPU only: CUDA, ROCm/HIP, and OpenCL on AMD
GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL")


def child_env(gpu: str | None = None) -> dict[str, str]:
    """The node's environment without rfarm's own settings (the Redis URL may hold a password);
    with ``gpu``, only that GPU visible."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RFARM_")}
    if gpu is not None:
        env.update(dict.fromkeys(GPU_VARIABLES, gpu))
    return env


class RenderProcess:
    def __init__(self, argv: list[str], lines: queue.Queue[Line], *, gpu: str | None = None) -> None:
        self.argv = argv
        self._lines = lines
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=child_env(gpu),
            close_fds=True,
        )
        self._readers = [
            threading.Thread(target=self._read, args=(self._proc.stdout, "out"), daemon=True),
            threading.Thread(target=self._read, args=(self._proc.stderr, "err"), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, pipe: IO[bytes] | None, stream: str) -> None:
        if pipe is None:
            return
        with pipe:
            for raw in iter(pipe.readline, b""):
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if len(text) > MAX_LINE:
                    text = text[:MAX_LINE] + "…"
                self._lines.put(Line(stream, text))

    @property
    def pid(self) -> int:
        return self._proc.pid

    def poll(self) -> int | None:
        return self._proc.poll()

    def finish_output(self, timeout: float = 2.0) -> None:
        """Wait for the readers to see end of output (after the process ended)."""
        deadline = time.monotonic() + timeout
        for reader in self._readers:
            reader.join(max(0.0, deadline - time.monotonic()))

    def stop(self, *, now: bool = False) -> int:
        """SIGTERM the whole process group, SIGKILL after 1.5 s (at once when ``now``); reap it."""
        if self._proc.poll() is None:
            self._signal(signal.SIGKILL if now else signal.SIGTERM)
            try:
                self._proc.wait(0 if now else KILL_AFTER)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
        code = self._proc.wait()
        # Children the renderer left behind in its group go too.
        self._signal(signal.SIGKILL)
        return code

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)
