"""Fuzzing the .cpb reader and merger with hostile variants of our own files.

Seeds are real saved_model.cpb files written by imageformat for a tiny
SavedModel (compressions none / zstd / brotli, plus one file spanning several
64 KiB blocks). Mutations range from blind byte edits to forgeries that
recompute every HighwayHash, so inputs get past the hash checks into the
chunk parser, the decompressors and the merger.

Properties, for every input:
* only RiegeliError or ChunkedFormatError escapes imageformat.read_saved_model,
  RecordReader and ChunkedFile, and the error names the file;
* no hang: a watchdog raises after WATCHDOG_SECONDS (and, should a C call
  never return, faulthandler dumps every stack and exits the process);
* no memory blow-up: forged sizes run in a subprocess under RLIMIT_AS.

Size of a run: FUZZ_EXAMPLES (default 500) examples per fuzz test. Figures
(inputs and seconds per test) are printed at the end of the module (visible
with -s) and written as JSON to the path in FUZZ_REPORT, if set.
"""
from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tf_bigexport import imageformat
from tf_bigexport.imageformat import chunked
from tf_bigexport.imageformat.chunk_errors import ChunkedFormatError
from tf_bigexport.imageformat.highwayhash import hash64
from tf_bigexport.imageformat.proto import chunk_pb2
from tf_bigexport.imageformat.riegeli import RecordReader, RecordWriter, RiegeliError
from tf_bigexport.imageformat.riegeli.chunk_header import ChunkHeader, decode_chunk_header
from tf_bigexport.imageformat.riegeli.layout import (
    BLOCK_SIZE,
    CHUNK_HEADER_SIZE,
    add_with_overhead,
    chunk_end,
    encode_block_header,
    physical_runs,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "500"))
WATCHDOG_SECONDS = 20.0
ACCEPTED = (RiegeliError, ChunkedFormatError)
COMPRESSIONS = ("none", "zstd", "brotli")
# Sizes a forger would try: limits of int32/uint32/int64/uint64 and friends.
HUGE = (1 << 31) - 1, 1 << 31, 1 << 32, (1 << 40) + 1, 1 << 62, (1 << 63) - 1, 1 << 63, (1 << 64) - 1

FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                HealthCheck.data_too_large])

# ---- figures for SECURITY.md --------------------------------------------------

_figures: dict[str, dict] = {}


def _record(test: str, outcome: str, seconds: float) -> None:
    entry = _figures.setdefault(test, {"inputs": 0, "seconds": 0.0, "outcomes": Counter()})
    entry["inputs"] += 1
    entry["seconds"] += seconds
    entry["outcomes"][outcome] += 1


@pytest.fixture(scope="module", autouse=True)
def fuzz_report():
    started = time.monotonic()
    yield
    inputs = sum(entry["inputs"] for entry in _figures.values())
    report = {
        "examples_per_test": EXAMPLES,
        "inputs": inputs,
        "seconds": round(time.monotonic() - started, 1),
        "tests": {name: {"inputs": e["inputs"], "seconds": round(e["seconds"], 2),
                         "outcomes": dict(e["outcomes"])} for name, e in sorted(_figures.items())},
    }
    per_test = ", ".join(f"{name}: {entry['inputs']}" for name, entry in report["tests"].items())
    print(f"\nfuzz: {inputs} inputs in {report['seconds']} s ({per_test})")
    path = os.environ.get("FUZZ_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)


# ---- seeds --------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, bytes]:
    """name -> bytes of a real saved_model.cpb."""
    from saved_model_cases import saved_case  # TensorFlow import: only when this module runs
    proto = saved_case("calculator").proto()
    files = {}
    for compression in COMPRESSIONS:
        for max_chunk_size in (300, 4000):
            files[f"{compression}-{max_chunk_size}"] = _cpb_bytes(tmp_path_factory, proto, max_chunk_size,
                                                                  compression)
    # A file spanning several blocks, so block headers are on the path too.
    node = proto.meta_graphs[0].graph_def.node.add(name="fuzz_big_constant", op="Const")
    tensor = node.attr["value"].tensor
    tensor.dtype = 4  # uint8
    tensor.tensor_shape.dim.add(size=150_000)
    tensor.tensor_content = bytes(range(256)) * 585 + bytes(150_000 - 256 * 585)
    files["multiblock"] = _cpb_bytes(tmp_path_factory, proto, 300, "none")
    assert len(files["multiblock"]) > 2 * BLOCK_SIZE
    # The same chunks in many small Riegeli chunks (our writer puts up to 1 MiB in one).
    for name in ("none-300", "zstd-300", "multiblock"):
        files[f"{name}-small"] = _rechunked(files[name], "zstd" if name.startswith("zstd") else "none")
    # The same records in chunks Google's Riegeli writes (transposed, snappy, large windows), so
    # forgeries reach those decoders too. array-record ends them with its footer, not a ChunkMetadata.
    from riegeli_interop import rewrite_records
    source = tmp_path_factory.mktemp("google") / "source.cpb"
    source.write_bytes(files["none-300"])
    for options in GOOGLE_OPTIONS:
        target = source.with_name(options)
        rewrite_records(source, target, f"group_size:4,{options}")
        files[f"{GOOGLE}{options}"] = target.read_bytes()
    return files


GOOGLE = "google-riegeli:"
GOOGLE_OPTIONS = ("transpose:true,uncompressed", "transpose:true,zstd:3", "snappy", "brotli:4,window_log:30")


def _rechunked(seed: bytes, compression: str) -> bytes:
    """A valid .cpb holding ``seed``'s records in Riegeli chunks of about 2 KB."""
    records = list(RecordReader(io.BytesIO(seed)))
    metadata = chunk_pb2.ChunkMetadata.FromString(records[-1])
    out = io.BytesIO()
    with RecordWriter(out, compression=compression, chunk_size=2000) as writer:
        for info, record in zip(metadata.chunks, records[:-1]):
            info.offset = writer.write_record(record)
        writer.write_record(metadata.SerializeToString())
    data = out.getvalue()
    assert len(chunk_begins(data)) > 5
    return data


def _cpb_bytes(tmp_path_factory, proto, max_chunk_size: int, compression: str) -> bytes:
    directory = tmp_path_factory.mktemp("seed")
    path = chunked.write_saved_model_proto(proto, directory, max_chunk_size=max_chunk_size,
                                           compression=compression)
    assert path.endswith(chunked.SAVED_MODEL_CPB)
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def seed_records(corpus) -> dict[str, list[bytes]]:
    return {name: list(RecordReader(io.BytesIO(data))) for name, data in corpus.items()}


@pytest.fixture(scope="module")
def seed_models(corpus, tmp_path_factory) -> set[bytes]:
    """The SavedModels the seeds hold (deterministic serializations)."""
    models = set()
    for data in corpus.values():
        directory = tmp_path_factory.mktemp("seed-model")
        (directory / chunked.SAVED_MODEL_CPB).write_bytes(data)
        models.add(chunked.read_saved_model(directory).SerializeToString(deterministic=True))
    return models


@pytest.fixture(scope="module")
def seed_begins(corpus) -> dict[str, list[int]]:
    return {name: chunk_begins(data) for name, data in corpus.items()}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("fuzz"))


# ---- the target -----------------------------------------------------------------

class ParseHang(Exception):
    """The watchdog fired: parsing one input took far too long."""


@contextlib.contextmanager
def watchdog(seconds: float = WATCHDOG_SECONDS):
    def on_alarm(signum, frame):
        raise ParseHang(f"parsing did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    # Backstop for a C call that never returns to Python: dump stacks and exit.
    faulthandler.dump_traceback_later(3 * seconds, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()


def test_watchdog_stops_a_hanging_parse():
    started = time.monotonic()
    with pytest.raises(ParseHang):
        with watchdog(0.2):
            while True:
                pass
    assert time.monotonic() - started < 5


def _expect_clean(path: str, call, results: list | None = None) -> str:
    """Runs ``call``; returns "ok" or the accepted error's type. Anything else propagates."""
    try:
        result = call()
        if results is not None:
            results.append(result)
    except ACCEPTED as error:
        named = error.path if isinstance(error, RiegeliError) else error.source
        assert named == path, f"error names {named!r}, not the file {path!r}: {error}"
        assert str(error).startswith(f"{path}: ") and len(str(error)) > len(path) + 10
        return type(error).__name__
    return "ok"


def _read_everything(path: str) -> None:
    with RecordReader(path) as reader:
        positions = [pos for pos, _ in reader.records_with_positions()]
        reader.read_last_record()
        for pos in positions[-3:]:
            reader.read_record_at(pos)


def _read_chunks(path: str) -> None:
    with chunked.ChunkedFile(path) as chunked_file:
        for index in range(len(chunked_file)):
            chunked_file.read(index)


def parse(data: bytes | bytearray, workdir: str, test: str, merged: list | None = None) -> str:
    """Feeds ``data`` as saved_model.cpb to every reading entry point; returns the outcome.

    The SavedModel read_saved_model returns, if any, is appended to ``merged``.
    """
    path = os.path.join(workdir, chunked.SAVED_MODEL_CPB)
    with open(path, "wb") as f:
        f.write(data)
    started = time.monotonic()
    with watchdog():
        outcomes = [
            _expect_clean(path, lambda: imageformat.read_saved_model(workdir), merged),
            _expect_clean(path, lambda: _read_everything(path)),
            _expect_clean(path, lambda: _read_chunks(path)),
        ]
    outcome = "ok" if outcomes[0] == "ok" else outcomes[0]
    _record(test, outcome, time.monotonic() - started)
    return outcome


# ---- file surgery ---------------------------------------------------------------

def chunk_begins(data: bytes) -> list[int]:
    """Begin of every chunk of an intact file (the signature chunk at 0 included)."""
    begins, pos = [], 0
    while pos < len(data):
        header, _ = decode_chunk_header(read_logical(data, pos, 0, CHUNK_HEADER_SIZE))
        begins.append(pos)
        pos = chunk_end(pos, header.data_size, header.num_records)
    return begins


def read_logical(data, chunk_begin: int, begin: int, end: int) -> bytes:
    return b"".join(bytes(data[at:at + n]) for kind, at, n in physical_runs(chunk_begin, begin, end)
                    if kind == "data")


def write_logical(buf: bytearray, chunk_begin: int, begin: int, payload: bytes) -> None:
    """Overwrites logical bytes of a chunk in place, stepping over block headers."""
    done = 0
    for kind, at, n in physical_runs(chunk_begin, begin, begin + len(payload)):
        if kind == "data":
            buf[at:at + n] = payload[done:done + n]
            done += n


def rewrite_header(buf: bytearray, chunk_begin: int, **fields) -> None:
    """Sets chunk header fields and recomputes the header hash."""
    header, _ = decode_chunk_header(read_logical(buf, chunk_begin, 0, CHUNK_HEADER_SIZE))
    values = {**header.__dict__, **fields}
    write_logical(buf, chunk_begin, 0, ChunkHeader(**values).encode())


def rewrite_data(buf: bytearray, chunk_begin: int, edit) -> None:
    """Edits a chunk's data (same length) and recomputes data hash and header hash."""
    header, _ = decode_chunk_header(read_logical(buf, chunk_begin, 0, CHUNK_HEADER_SIZE))
    if add_with_overhead(chunk_begin, CHUNK_HEADER_SIZE + header.data_size) > len(buf):
        return  # an earlier forgery made data_size huge: leave that one as it is
    data = bytearray(read_logical(buf, chunk_begin, CHUNK_HEADER_SIZE, CHUNK_HEADER_SIZE + header.data_size))
    edit(data)
    write_logical(buf, chunk_begin, CHUNK_HEADER_SIZE, bytes(data))
    rewrite_header(buf, chunk_begin, data_hash=hash64(bytes(data)))


def _compression_of(seed_name: str) -> str:
    return next((c for c in COMPRESSIONS if seed_name.startswith(c)), "none")


def riegeli_file(records: list[bytes], compression: str = "none") -> bytes:
    out = io.BytesIO()
    with RecordWriter(out, compression=compression) as writer:
        for record in records:
            writer.write_record(record)
    return out.getvalue()


# ---- 1. blind byte mutations ------------------------------------------------------

def _mutate_bytes(data, buf: bytearray, seeds: dict[str, bytes], begins: dict[str, list[int]],
                  name: str) -> bytearray:
    kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate", "splice", "overwrite"]))
    position = data.draw(st.integers(0, max(len(buf) - 1, 0)))
    if kind == "flip" and buf:
        buf[position] ^= data.draw(st.integers(1, 255))
    elif kind == "insert":
        buf[position:position] = data.draw(st.binary(min_size=1, max_size=64))
    elif kind == "delete":
        del buf[position:position + data.draw(st.integers(1, 4096))]
    elif kind == "truncate":
        del buf[position:]
    elif kind == "overwrite":
        patch = data.draw(st.binary(min_size=1, max_size=16))
        buf[position:position + len(patch)] = patch
    else:  # splice: the head of this file with the tail of another, at chunk boundaries or anywhere
        other_name = data.draw(st.sampled_from(sorted(seeds)))
        other = seeds[other_name]
        if data.draw(st.booleans()):  # boundaries of the unmutated seed: still mostly right
            cut = data.draw(st.sampled_from(begins[name]))
            resume = data.draw(st.sampled_from(begins[other_name]))
        else:
            cut = position
            resume = data.draw(st.integers(0, len(other)))
        buf[cut:] = other[resume:]
    return buf


@FUZZ_SETTINGS
@given(data=st.data())
def test_byte_mutations(corpus, seed_begins, seed_models, workdir, data):
    name = data.draw(st.sampled_from(sorted(corpus)))
    buf = bytearray(corpus[name])
    for _ in range(data.draw(st.integers(1, 3))):
        buf = _mutate_bytes(data, buf, corpus, seed_begins, name)
    merged: list = []
    parse(buf, workdir, "byte_mutations", merged)
    # Without recomputed hashes, damage is caught or harmless (padding, a splice giving back a
    # whole seed): what reads fine is one of the seeds' models, never a silently different one.
    for saved_model in merged:
        assert saved_model.SerializeToString(deterministic=True) in seed_models


# ---- 2. forged Riegeli structure with valid hashes ------------------------------

def _forge_header(data, buf: bytearray, begin: int) -> None:
    field = data.draw(st.sampled_from(["data_size", "num_records", "decoded_data_size", "chunk_type"]))
    if field == "chunk_type":
        value = data.draw(st.sampled_from([ord(c) for c in "srmpt"] + [0, 0xFF]) | st.integers(0, 255))
    elif field == "num_records":
        value = data.draw(st.integers(0, 80) | st.sampled_from([(1 << 56) - 1, 1 << 31, 1 << 40]))
    else:
        header, _ = decode_chunk_header(read_logical(buf, begin, 0, CHUNK_HEADER_SIZE))
        current = getattr(header, field)
        value = data.draw(st.sampled_from(HUGE) | st.integers(0, 100_000)
                          | st.integers(max(current - 3, 0), current + 3))
    rewrite_header(buf, begin, **{field: value})


def _forge_data(data, buf: bytearray, begin: int) -> None:
    def edit(chunk_data: bytearray) -> None:
        if not chunk_data:
            return
        for _ in range(data.draw(st.integers(1, 4))):
            # Mostly the prefix: compression byte, sizes length, compressed size varints.
            limit = len(chunk_data) - 1
            at = data.draw(st.integers(0, min(limit, 24)) | st.integers(0, limit))
            chunk_data[at] = data.draw(st.sampled_from([0, 0x7F, 0x80, 0xFF, ord("b"), ord("z"), ord("s")])
                                       | st.integers(0, 255))

    rewrite_data(buf, begin, edit)


def _forge_block_header(data, buf: bytearray) -> None:
    blocks = list(range(BLOCK_SIZE, len(buf), BLOCK_SIZE))
    if not blocks:
        return
    block = data.draw(st.sampled_from(blocks))
    previous = data.draw(st.integers(0, block + 100) | st.sampled_from(HUGE))
    following = data.draw(st.integers(0, len(buf) + 100) | st.sampled_from(HUGE))
    buf[block:block + 24] = encode_block_header(previous, following)


@FUZZ_SETTINGS
@given(data=st.data())
def test_forged_riegeli_structure_with_valid_hashes(corpus, seed_begins, workdir, data):
    name = data.draw(st.sampled_from(sorted(corpus)))
    buf = bytearray(corpus[name])
    begins = seed_begins[name]
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["header", "data", "data", "block"]))
        begin = data.draw(st.sampled_from(begins[1:]))  # begins[0] is the fixed signature chunk
        if kind == "header":
            _forge_header(data, buf, begin)
        elif kind == "data":
            _forge_data(data, buf, begin)
        else:
            _forge_block_header(data, buf)
    parse(buf, workdir, "forged_riegeli")


# ---- 3. hostile chunked protos in intact Riegeli files ----------------------------

def _nested_chunked_message(depth: int, chunk_index: int) -> chunk_pb2.ChunkedMessage:
    """ChunkedMessage -> chunked_fields[0].message -> ... ``depth`` levels, as raw bytes parsed back."""
    inner = b"\x08" + bytes([chunk_index & 0x7F])
    for _ in range(depth):
        field = b"\x0a\x02\x08\x02" + b"\x1a" + _varint(len(inner)) + inner  # field_tag {field: 2}, message
        inner = b"\x12" + _varint(len(field)) + field
    return inner


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _random_path(data) -> list[chunk_pb2.FieldIndex]:
    tags = []
    for _ in range(data.draw(st.integers(0, 8))):
        kind = data.draw(st.sampled_from(["field", "field", "index", "map_key", "empty"]))
        if kind == "field":
            tags.append(chunk_pb2.FieldIndex(field=data.draw(st.integers(0, 20) | st.sampled_from(
                [(1 << 29) - 1, (1 << 32) - 1]))))
        elif kind == "index":
            tags.append(chunk_pb2.FieldIndex(index=data.draw(st.integers(0, 5) | st.sampled_from(HUGE))))
        elif kind == "map_key":
            key = data.draw(st.sampled_from(["s", "boolean", "ui32", "ui64", "i32", "i64"]))
            value = {"s": st.text(max_size=8), "boolean": st.booleans(), "ui32": st.integers(0, (1 << 32) - 1),
                     "ui64": st.integers(0, (1 << 64) - 1), "i32": st.integers(-(1 << 31), (1 << 31) - 1),
                     "i64": st.integers(-(1 << 63), (1 << 63) - 1)}[key]
            tags.append(chunk_pb2.FieldIndex(map_key=chunk_pb2.FieldIndex.MapKey(**{key: data.draw(value)})))
        else:
            tags.append(chunk_pb2.FieldIndex())
    return tags


def _forge_metadata(data, metadata: chunk_pb2.ChunkMetadata) -> bytes:
    messages = [metadata.message]
    for cm in messages:
        messages.extend(f.message for f in cm.chunked_fields)
    count = len(metadata.chunks)
    index = st.integers(0, count + 2) | st.sampled_from(HUGE)
    extra = b""
    for _ in range(data.draw(st.integers(1, 4))):
        what = data.draw(st.sampled_from([
            "chunk_index", "repeat_index", "cyclic", "clear_index", "info_size", "info_offset", "info_type",
            "path", "duplicate_field", "deep", "many_chunks", "drop_chunks", "version", "unknown_field"]))
        cm = data.draw(st.sampled_from(messages))
        info = metadata.chunks[data.draw(st.integers(0, len(metadata.chunks) - 1))] if metadata.chunks else None
        fields = list(cm.chunked_fields)
        if what == "chunk_index":
            cm.chunk_index = data.draw(index)
        elif what == "repeat_index" and fields:
            data.draw(st.sampled_from(fields)).message.chunk_index = data.draw(st.integers(0, count))
        elif what == "cyclic" and fields:
            data.draw(st.sampled_from(fields)).message.chunk_index = 0  # back to the root chunk
        elif what == "clear_index":
            cm.ClearField("chunk_index")
        elif what == "info_size" and info is not None:
            info.size = data.draw(st.sampled_from(HUGE) | st.integers(0, 100_000))
        elif what == "info_offset" and info is not None:
            info.offset = data.draw(st.sampled_from(HUGE) | st.integers(0, 300_000))
        elif what == "info_type" and info is not None:
            info.type = data.draw(st.integers(0, 3) | st.sampled_from([127, (1 << 31) - 1]))
        elif what == "path" and fields:
            field = data.draw(st.sampled_from(fields))
            del field.field_tag[:]
            field.field_tag.extend(_random_path(data))
        elif what == "duplicate_field" and fields:
            cm.chunked_fields.append(data.draw(st.sampled_from(fields)))
        elif what == "deep":
            extra += b"\x1a" + _varint(len(raw := _nested_chunked_message(
                data.draw(st.integers(50, 400)), data.draw(st.integers(0, 127))))) + raw
        elif what == "many_chunks":
            for _ in range(data.draw(st.integers(1, 5000))):
                metadata.chunks.add(type=1, size=data.draw(st.sampled_from([0, 1, 1 << 40])), offset=64)
        elif what == "drop_chunks":
            del metadata.chunks[data.draw(st.integers(0, count)):]
        elif what == "version":
            metadata.version.join_version = data.draw(st.integers(-3, 3))
        else:
            extra += data.draw(st.binary(min_size=1, max_size=24))
    return metadata.SerializeToString() + extra  # appended bytes parse as (sub)fields merged in


def _hostile_record(data, records: list[bytes], seeds: dict[str, list[bytes]]) -> bytes:
    kind = data.draw(st.sampled_from(["random", "nested", "other_file", "other_chunk", "empty", "flipped"]))
    if kind == "random":
        return data.draw(st.binary(max_size=256))
    if kind == "nested":
        # NodeDef.attr -> AttrValue.func -> NameAttrList.attr -> ... far past protobuf's depth limit.
        inner = b""
        for _ in range(data.draw(st.integers(50, 2000))):
            inner = b"\x0a" + _varint(len(inner)) + inner
        return inner
    if kind == "other_file":
        other = seeds[data.draw(st.sampled_from(sorted(seeds)))]
        return other[data.draw(st.integers(0, len(other) - 1))]
    if kind == "other_chunk":
        return records[data.draw(st.integers(0, len(records) - 1))]
    if kind == "empty":
        return b""
    record = bytearray(records[data.draw(st.integers(0, len(records) - 1))])
    if record:
        record[data.draw(st.integers(0, len(record) - 1))] ^= data.draw(st.integers(1, 255))
    return bytes(record)


@FUZZ_SETTINGS
@given(data=st.data())
def test_hostile_chunked_protos_in_intact_files(seed_records, workdir, data):
    name = data.draw(st.sampled_from(sorted(seed_records)))
    records = list(seed_records[name])
    chunks, metadata_bytes = records[:-1], records[-1]
    if data.draw(st.booleans()):
        metadata_bytes = _forge_metadata(data, chunk_pb2.ChunkMetadata.FromString(metadata_bytes))
    else:
        for _ in range(data.draw(st.integers(1, 3))):
            chunks[data.draw(st.integers(0, len(chunks) - 1))] = _hostile_record(data, records, seed_records)
    parse(riegeli_file(chunks + [metadata_bytes], _compression_of(name)), workdir, "hostile_chunked_protos")


# ---- 4. forged sizes under a memory limit -------------------------------------------

MEMORY_HEADROOM = 3 << 30  # address space allowed on top of what the interpreter already maps


def forged_size_cases(seeds: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """Every chunk's sizes and every ChunkInfo size/offset set to huge values, hashes recomputed."""
    cases = []
    for name, seed in sorted(seeds.items()):
        if name.startswith(GOOGLE):
            continue  # no ChunkMetadata last: their records are fuzzed by the tests above
        begins = chunk_begins(seed)[1:]
        for begin in begins:
            for field in ("data_size", "decoded_data_size", "num_records"):
                for value in HUGE:
                    if field == "num_records" and value >= 1 << 56:
                        continue
                    buf = bytearray(seed)
                    rewrite_header(buf, begin, **{field: value})
                    cases.append((f"{name}: chunk at {begin} {field}={value}", bytes(buf)))
            # A compressed size prefix (just after the compression byte and sizes length) made huge.
            for value in (0x7F, 0xFF):
                buf = bytearray(seed)
                rewrite_data(buf, begin, lambda d, v=value: d.__setitem__(slice(2, 6), bytes([v] * 4))
                             if len(d) > 6 else None)
                cases.append((f"{name}: chunk at {begin} size varints {value:#x}", bytes(buf)))
        records = list(RecordReader(io.BytesIO(seed)))
        compression = _compression_of(name)
        for value in HUGE:
            metadata = chunk_pb2.ChunkMetadata.FromString(records[-1])
            for info in metadata.chunks:
                info.size = value
            cases.append((f"{name}: every ChunkInfo.size={value}",
                          riegeli_file(records[:-1] + [metadata.SerializeToString()], compression)))
    return cases


def _memory_worker(seed_dir: str) -> None:
    """Runs every forged-size case under RLIMIT_AS; prints a JSON summary."""
    import tensorflow  # noqa: F401  (mapped before the limit is set, as in a real reader process)
    from tensorflow.core.protobuf import saved_model_pb2  # noqa: F401
    seeds = {}
    for name in os.listdir(seed_dir):
        with open(os.path.join(seed_dir, name), "rb") as f:
            seeds[name] = f.read()
    cases = forged_size_cases(seeds)
    with open("/proc/self/status", encoding="ascii") as f:
        mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (mapped + MEMORY_HEADROOM, mapped + MEMORY_HEADROOM))
    workdir = tempfile.mkdtemp(prefix="fuzz-memory-")
    outcomes: Counter = Counter()
    started = time.monotonic()
    for _, data in cases:
        outcomes[parse(data, workdir, "forged_sizes_under_rlimit_as")] += 1
    print(json.dumps({"cases": len(cases), "outcomes": dict(outcomes), "limit": mapped + MEMORY_HEADROOM,
                      "seconds": time.monotonic() - started}))


def test_forged_sizes_under_a_memory_limit(corpus, tmp_path):
    for name, data in corpus.items():
        (tmp_path / name).write_bytes(data)
    started = time.monotonic()
    done = subprocess.run([sys.executable, __file__, "--memory-worker", str(tmp_path)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, f"worker failed ({done.returncode}):\n{done.stderr[-4000:]}"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["cases"] > 150
    assert sum(summary["outcomes"].values()) == summary["cases"]
    # A forged size never passes as a good file (a few forgeries in unread fields could; none here).
    assert summary["outcomes"].get("ok", 0) == 0, summary
    entry = _figures.setdefault("forged_sizes_under_rlimit_as",
                                {"inputs": 0, "seconds": 0.0, "outcomes": Counter()})
    entry["inputs"] += summary["cases"]
    entry["seconds"] += time.monotonic() - started
    entry["outcomes"].update(summary["outcomes"])


if __name__ == "__main__" and sys.argv[1:2] == ["--memory-worker"]:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    _memory_worker(sys.argv[2])
