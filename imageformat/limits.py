"""Bounds on what reading one SavedModel program file may cost.

A hostile file can be small and still ask for a lot: 200 bytes of brotli can
decode to 20 MB of empty messages, 150 KB of zstd to 4 GiB of zeros, and a
protobuf of b"\\x12\\x00" repeated parses into about forty times its size
(one empty message every two bytes). So every reader of program files
(saved_model.pb, saved_model.cpb) works within bounds derived from the size
of the file it reads; in ``verify`` that size was first checked against the
release record. The bounds, for a file of S bytes:

* **Decoded bytes** (Riegeli, .cpb): the records decoded from the file, every
  re-read of a chunk included, total at most ``max(256 MiB, 64 * S)``. It caps
  decompression bombs, and it keeps reading time linear in the file size
  (a chunk read again and again for its records counts every time).
* **Expansion of one chunk**: its decoded size is at most 2**20 times its
  data size (``riegeli.reader.MAX_EXPANSION``), checked before decoding.
* **Record count**: every record decoded also counts 64 bytes against the
  decoded budget (the cost of a record object), so a chunk of ten million
  empty records is a bomb too.
* **Messages**: parsing N bytes of protobuf from the file (a .pb; the
  ChunkMetadata and the message chunks of a .cpb, summed) may create at most
  ``100_000 + min(N // 4, 8 * S)`` messages, map entries included, counted by
  ``protoscan`` before anything is parsed. b"\x12\x00" has a message every 2
  bytes; real SavedModels one every 17-19 bytes (MobileNet, ResNet50, an LSTM:
  measured) and ChunkMetadata, the densest real content, one every 4.2-4.7
  bytes. The file-size term catches compressed bombs, which are dense only
  after decoding. A parsed message costs protobuf 40-90 bytes, so what is
  admitted stays within about 20 times the bytes parsed.
* **Nesting**: 100 levels of messages (protobuf's own limit) and of chunked
  messages in a ChunkMetadata.
* **File types**: only regular files are read, and symbolic links only when
  they stay inside the model directory (``program_files``); FIFOs, devices
  and sockets are refused before they are opened for reading.
* **A .pb** is at most 2 GiB - 1 bytes (protobuf cannot parse more), read once.
* **TensorFlow's checkpoint index** (variables/variables.index), which
  TensorFlow's fingerprinting reads whole: at most 256 MiB.

``TF_BIGEXPORT_READ_LIMIT_SCALE`` (a positive number, default 1) multiplies
the byte and message budgets above, for the rare real file past them; errors
name the bound that was hit and this variable.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

SCALE_ENV = "TF_BIGEXPORT_READ_LIMIT_SCALE"

DECODED_FLOOR = 256 << 20
EXPANSION = 64
RECORD_COST = 64
MESSAGES_FLOOR = 100_000
BYTES_PER_MESSAGE = 4
MESSAGES_PER_FILE_BYTE = 8
MAX_NESTING = 100
MAX_PB_BYTES = (1 << 31) - 1
MAX_CHECKPOINT_INDEX_BYTES = 256 << 20


class ReadLimitError(ValueError):
    """$TF_BIGEXPORT_READ_LIMIT_SCALE is not a positive number."""


def _scale() -> float:
    text = os.environ.get(SCALE_ENV, "").strip()
    if not text:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise ReadLimitError(f"${SCALE_ENV}={text!r} is not a number") from None
    if not value > 0:
        raise ReadLimitError(f"${SCALE_ENV}={text!r} must be positive")
    return value


@dataclass(frozen=True)
class ReadLimits:
    """The budgets of one file (see the module docstring for what each bounds)."""

    decoded_bytes: int
    messages_floor: int = MESSAGES_FLOOR
    messages_by_file_size: int = 1 << 62
    checkpoint_index_bytes: int = MAX_CHECKPOINT_INDEX_BYTES

    @classmethod
    def for_file(cls, size: int) -> ReadLimits:
        """The limits of a program file of ``size`` bytes (scaled by $TF_BIGEXPORT_READ_LIMIT_SCALE)."""
        scale = _scale()
        return cls(decoded_bytes=int(max(DECODED_FLOOR, EXPANSION * size) * scale),
                   messages_floor=int(MESSAGES_FLOOR * scale),
                   messages_by_file_size=int(MESSAGES_PER_FILE_BYTE * size * scale),
                   checkpoint_index_bytes=int(MAX_CHECKPOINT_INDEX_BYTES * scale))

    @classmethod
    def unlimited(cls) -> ReadLimits:
        """For data this process made itself (no file to distrust)."""
        return cls(decoded_bytes=1 << 62, messages_floor=1 << 62, checkpoint_index_bytes=1 << 62)

    def messages_allowed(self, parsed_bytes: int) -> int:
        """How many messages ``parsed_bytes`` of protobuf from the file may hold in total."""
        return self.messages_floor + min(parsed_bytes // BYTES_PER_MESSAGE, self.messages_by_file_size)


def exceeded(what: str) -> str:
    """The reason given for a budget that ran out: what happened and how to raise the limits.
    The caller's error type (RiegeliError, ChunkedFormatError) names the file."""
    return (f"{what}; refusing it as a likely decompression or message bomb (read limits are derived "
            f"from the file size: set ${SCALE_ENV} to a factor > 1 if this file is genuine)")
