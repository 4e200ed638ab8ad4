"""The overlapped hasher gives the same digest as hashing everything at once."""
from __future__ import annotations

import os

import pytest

from tf_bigexport.imageformat.highwayhash import hash64
from tf_bigexport.imageformat.riegeli.hashing import InlineHasher, OverlappedHasher


def test_overlapped_digest_matches_one_shot_hash():
    data = os.urandom(3 << 20)
    view = memoryview(data)
    pieces = [view[i:i + 65_521] for i in range(0, len(data), 65_521)]  # odd size: tails mid-packet
    hasher = OverlappedHasher()
    for piece in pieces:
        hasher.feed(piece)
    assert hasher.digest() == hash64(data)
    assert hasher.digest() == hash64(data)  # digest is repeatable; the thread is gone
    hasher.close()


def test_overlapped_reports_a_bad_piece_from_digest():
    hasher = OverlappedHasher()
    hasher.feed(memoryview(b"x" * 100))
    hasher.feed(12345)  # not a buffer: the error surfaces at digest()
    with pytest.raises(TypeError):
        hasher.digest()


def test_inline_and_overlapped_agree_on_empty_input():
    overlapped = OverlappedHasher()
    assert overlapped.digest() == InlineHasher().digest() == hash64(b"")
