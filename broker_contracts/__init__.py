"""Every message rfarm sends, the codec that carries them, and the names of the keys they travel on.

Pure: no I/O. Every other part imports from here; nothing here imports from them.
"""

from broker_contracts.codec import MAX_MESSAGE_BYTES, pack, unpack
from broker_contracts.errors import DecodeError, ErrorCode, RfarmError
from broker_contracts.keys import Keys

__all__ = [
    "MAX_MESSAGE_BYTES",
    "DecodeError",
    "ErrorCode",
    "Keys",
    "RfarmError",
    "pack",
    "unpack",
]
