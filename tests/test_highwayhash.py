"""HighwayHash-64: published test vectors, both packet loops, streaming, buffers."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tf_bigexport.imageformat import _highwayhash
from tf_bigexport.imageformat.highwayhash import (
    RIEGELI_KEY,
    HighwayHash64,
    cpu_has_avx2,
    hash64,
    hash64_rows,
    implementation,
)

# google/highwayhash c/highwayhash_test.c: key 00 01 02 .. 1f, data[i] = i, sizes 0..64.
TEST_KEY = (0x0706050403020100, 0x0F0E0D0C0B0A0908, 0x1716151413121110, 0x1F1E1D1C1B1A1918)
EXPECTED_64 = [
    0x907A56DE22C26E53, 0x7EAB43AAC7CDDD78, 0xB8D0569AB0B53D62, 0x5C6BEFAB8A463D80,
    0xF205A46893007EDA, 0x2B8A1668E4A94541, 0xBD4CCC325BEFCA6F, 0x4D02AE1738F59482,
    0xE1205108E55F3171, 0x32D2644EC77A1584, 0xF6E10ACDB103A90B, 0xC3BBF4615B415C15,
    0x243CC2040063FA9C, 0xA89A58CE65E641FF, 0x24B031A348455A23, 0x40793F86A449F33B,
    0xCFAB3489F97EB832, 0x19FE67D2C8C5C0E2, 0x04DD90A69C565CC2, 0x75D9518E2371C504,
    0x38AD9B1141D3DD16, 0x0264432CCD8A70E0, 0xA9DB5A6288683390, 0xD7B05492003F028C,
    0x205F615AEA59E51E, 0xEEE0C89621052884, 0x1BFC1A93A7284F4F, 0x512175B5B70DA91D,
    0xF71F8976A0A2C639, 0xAE093FEF1F84E3E7, 0x22CA92B01161860F, 0x9FC7007CCF035A68,
    0xA0C964D9ECD580FC, 0x2C90F73CA03181FC, 0x185CF84E5691EB9E, 0x4FC1F5EF2752AA9B,
    0xF5B7391A5E0A33EB, 0xB9B84B83B4E96C9C, 0x5E42FE712A5CD9B4, 0xA150F2F90C3F97DC,
    0x7FA522D75E2D637D, 0x181AD0CC0DFFD32B, 0x3889ED981E854028, 0xFB4297E8C586EE2D,
    0x6D064A45BB28059C, 0x90563609B3EC860C, 0x7AA4FCE94097C666, 0x1326BAC06B911E08,
    0xB926168D2B154F34, 0x9919848945B1948D, 0xA2A98FC534825EBE, 0xE9809095213EF0B6,
    0x582E5483707BC0E9, 0x086E9414A88A6AF5, 0xEE86B98D20F6743D, 0xF89B7FF609B1C0A7,
    0x4C7D9CC19E22C3E8, 0x9A97005024562A6F, 0x5DD41CF423E6EBEF, 0xDF13609C0468E227,
    0x6E0DA4F64188155A, 0xB755BA4B50D7D4A1, 0x887A3484647479BD, 0xAB8EEBE9BF2139A0,
    0x75542C5D4CD2A6FF,
]
# Same file: key (1, 2, 3, 4), 33 bytes 128..160.
SECOND_KEY_VECTOR = ((1, 2, 3, 4), bytes(range(128, 161)), 0x53C516CCE478CAD7)

PATHS = [pytest.param(True, id="portable"),
         pytest.param(False, id="avx2", marks=pytest.mark.skipif(
             not cpu_has_avx2(), reason="CPU has no AVX2; the portable loop is tested"))]


@pytest.mark.parametrize("portable", PATHS)
def test_published_vectors(portable):
    data = bytes(range(65))
    got = [hash64(data[:n], TEST_KEY, portable=portable) for n in range(65)]
    assert got == EXPECTED_64
    key, data, expected = SECOND_KEY_VECTOR
    assert hash64(data, key, portable=portable) == expected


@pytest.mark.parametrize("portable", PATHS)
def test_published_vectors_streaming(portable):
    data = bytes(range(65))
    for n in range(65):
        for split in sorted({0, min(1, n), n // 2, max(n - 1, 0), n}):
            hasher = HighwayHash64(TEST_KEY, portable=portable)
            hasher.update(data[:split])
            hasher.update(data[split:n])
            assert hasher.digest() == EXPECTED_64[n], (n, split)


def test_default_loop_matches_the_cpu():
    forced = os.environ.get("IMAGEFORMAT_HIGHWAYHASH_PORTABLE", "") not in ("", "0")
    assert implementation() == ("avx2" if cpu_has_avx2() and not forced else "portable")


def test_environment_forces_the_portable_loop():
    code = ("from tf_bigexport.imageformat import highwayhash as h; "
            "print(h.implementation(), hex(h.hash64(bytes(range(64)), "
            f"{TEST_KEY!r})))")
    env = dict(os.environ, IMAGEFORMAT_HIGHWAYHASH_PORTABLE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == ["portable", hex(EXPECTED_64[64])]


@settings(max_examples=150, deadline=None)
@given(data=st.binary(min_size=0, max_size=3000), key=st.tuples(*[st.integers(0, 2**64 - 1)] * 4))
def test_both_loops_agree(data, key):
    assert hash64(data, key, portable=True) == hash64(data, key, portable=False)


def test_both_loops_agree_on_large_input_without_holding_the_gil():
    data = os.urandom((3 << 20) + 17)  # above the GIL-release threshold
    assert hash64(data, portable=True) == hash64(data, portable=False)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_streaming_equals_one_shot(data, cuts):
    hasher = HighwayHash64()
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        hasher.update(data[start:cut])
        start = cut
    hasher.update(data[start:])
    assert hasher.digest() == hash64(data)
    assert hasher.digest() == hash64(data)  # digest does not disturb the state
    twin = hasher.copy()
    twin.update(b"x")
    assert hasher.digest() == hash64(data) and twin.digest() == hash64(data + b"x")


def test_default_key_is_riegeli():
    assert RIEGELI_KEY == (0x2F696C6567656952, 0x0A7364726F636572) * 2
    assert hash64(b"abc") == hash64(b"abc", list(RIEGELI_KEY)) == hash64(b"abc", None)
    assert HighwayHash64().digest() == hash64(b"") != hash64(b"", TEST_KEY)


def test_accepts_any_contiguous_buffer():
    raw = os.urandom(1000)
    expected = hash64(raw[100:900])
    assert hash64(bytearray(raw[100:900])) == expected
    assert hash64(memoryview(raw)[100:900]) == expected
    assert hash64(np.frombuffer(raw, dtype=np.uint8)[100:900]) == expected
    with pytest.raises((TypeError, BufferError, ValueError)):
        hash64(memoryview(raw)[::2])  # not contiguous
    with pytest.raises(TypeError):
        hash64("text")


def test_rows():
    rows = os.urandom(16 * 50)
    packed = hash64_rows(rows, 16)
    assert len(packed) == 8 * 50
    for i in range(50):
        assert int.from_bytes(packed[8 * i:8 * i + 8], "little") == hash64(rows[16 * i:16 * i + 16])
    with pytest.raises(ValueError):
        hash64_rows(rows[:-1], 16)


def test_bad_keys_are_refused():
    for key in [(1, 2, 3), (1, 2, 3, -1), (1, 2, 3, 2**64), (1, 2, 3, "4")]:
        with pytest.raises((ValueError, TypeError)):
            hash64(b"x", key)
