"""What every built-in renderer shares: its command line and the frame loop's reporting."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--output", required=True, type=Path, help="folder for the frames")
    parser.add_argument("--first", required=True, type=int)
    parser.add_argument("--last", required=True, type=int)
    return parser


def frame_path(output: Path, frame: int, suffix: str) -> Path:
    return output / f"frame_{frame:04d}{suffix}"


def report_done(frame: int, path: Path) -> None:
    """The line the node reads as progress: ``frame <n> done <path>``."""
    sys.stdout.write(f"frame {frame} done {path}\n")
    sys.stdout.flush()


def fail(message: str, code: int = 1) -> int:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return code


class Orphaned(Exception):
    """The node that started this renderer is gone: stop rather than render for nobody."""


_PARENT = os.getppid()


def check_parent() -> None:
    if os.getppid() != _PARENT:
        raise Orphaned


def sleep_watching_parent(seconds: float, step: float = 0.2) -> None:
    """Sleep, but notice within ``step`` seconds when the node died."""
    end = time.monotonic() + seconds
    while True:
        check_parent()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(step, left))
