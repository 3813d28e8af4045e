"""msgpack in and out, with limits so that no input can exhaust the reader."""

from __future__ import annotations

from typing import Any

import msgpack

from broker_contracts.errors import DecodeError, ErrorCode

MAX_MESSAGE_BYTES = 64 * 1024
_MAX_CONTAINER = 4096


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def unpack(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """Decode one msgpack value or raise DecodeError; never any other exception."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(ErrorCode.REQUEST_INVALID, "message is not bytes")
    if len(data) > max_bytes:
        raise DecodeError(
            ErrorCode.REQUEST_TOO_LARGE,
            f"message is {len(data)} bytes; the limit is {max_bytes}",
        )
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=_MAX_CONTAINER,
            max_map_len=_MAX_CONTAINER,
            max_ext_len=0,
        )
    except RecursionError:
        raise DecodeError(ErrorCode.REQUEST_INVALID, "message is nested too deeply") from None
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        reason = type(exc).__name__
        raise DecodeError(ErrorCode.REQUEST_INVALID, f"message is not valid msgpack ({reason})") from None
    except Exception as exc:  # msgpack raises a few undocumented kinds on hostile input
        reason = type(exc).__name__
        raise DecodeError(ErrorCode.REQUEST_INVALID, f"message is not valid msgpack ({reason})") from None
