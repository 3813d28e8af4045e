"""A minimal PNG writer (8-bit RGB, no interlace) on zlib and struct alone."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_rgb(width: int, height: int, rows: list[bytes]) -> bytes:
    """PNG bytes for ``height`` rows of ``width * 3`` RGB bytes each."""
    if len(rows) != height or any(len(row) != width * 3 for row in rows):
        raise ValueError("rows do not match the image size")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 (None) on every row
    return SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def write_atomic(path: Path, data: bytes) -> None:
    """Write beside the target, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
