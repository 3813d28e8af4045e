"""A finished frame as the node reports it: its file, size, checksum, render time and thumbnail.

The thumbnail travels with the frame's report, so the farm can show frames to people who cannot
reach the render storage. Pillow makes it: a PNG of at most THUMB_BYTES, aspect kept.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from broker_contracts.work import THUMB_BYTES

THUMB_SIDES = (160, 120, 96, 64, 48, 32, 16)


@dataclass(frozen=True)
class FrameFile:
    file: str
    bytes: int
    sha256: str
    thumb: str | None  # base64 of the PNG thumbnail; None when the file is no image Pillow reads


def frame_path(output: Path, writes: str, frame: int) -> Path:
    """``frame_####.png`` with the frame's number in place of the ``#``s (zero-padded to their count)."""
    start = writes.index("#")
    end = start
    while end < len(writes) and writes[end] == "#":
        end += 1
    return output / f"{writes[:start]}{frame:0{end - start}d}{writes[end:]}"


def describe(path: Path) -> FrameFile:
    """The record of a written frame file (raises OSError when it cannot be read)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return FrameFile(str(path), size, digest.hexdigest(), thumbnail(path))


def thumbnail(path: Path) -> str | None:
    """A PNG of at most THUMB_BYTES, base64, the largest of THUMB_SIDES that fits."""
    try:
        with Image.open(path) as image:
            image.load()
            source = image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    for side in THUMB_SIDES:
        small = source.copy()
        small.thumbnail((side, side))
        buffer = io.BytesIO()
        small.save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= THUMB_BYTES:
            return base64.b64encode(buffer.getvalue()).decode("ascii")
    return None
