"""Helpers for the hostile-input, fault and load tests: child-process environment,
registry invariants, and the figures SECURITY.md is generated from."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
# Set by tools/security_figures.py: each test writes its figures there as <name>.json.
REPORT_DIR_ENV = "SECURITY_REPORT_DIR"


def child_env(**extra: str) -> dict:
    """Environment for `python -m tf_bigexport ...` children: tests/ importable. Not the
    checkout: its tf_bigexport/ folder would shadow the installed package (make test-compat)."""
    env = dict(os.environ, PYTHONPATH=str(TESTS),
               GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false", TF_CPP_MIN_LOG_LEVEL="2")
    env.update(extra)
    return env


def pipeline_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tf_bigexport", *args]


def tiny_job(name: str, seed: int = 0, **fields) -> dict:
    """A jobs-file entry for hostile_models.tiny_dense (builds, saves and reloads in about a second)."""
    job = {"name": name, "factory": "hostile_models:tiny_dense", "factory_kwargs": {"seed": seed},
           "signatures": {"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 4]}]},
           "sample_inputs": {"serving_default": {"generate": {"seed": seed, "batch": 2}}}}
    job.update(fields)
    return job


def write_jobs(path: Path, jobs: list[dict], registry: str | None = None) -> Path:
    document = {"jobs": jobs}
    if registry:
        document["registry"] = registry
    path.write_text(json.dumps(document, indent=1))
    return path


def report(name: str, figures: dict) -> None:
    """Print the figures (visible with -s) and write them for tools/security_figures.py."""
    print(f"\nsecurity figures {name}: {json.dumps(figures, sort_keys=True)}")
    directory = os.environ.get(REPORT_DIR_ENV)
    if directory:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2, sort_keys=True)


def numeric_dirs(fs, model_dir: str) -> list[int]:
    fs.invalidate_cache()
    try:
        names = fs.ls(model_dir, detail=False)
    except FileNotFoundError:
        return []
    return sorted(int(n.rstrip("/").rsplit("/", 1)[-1]) for n in names
                  if n.rstrip("/").rsplit("/", 1)[-1].isdigit())


def check_visible_versions(registry, fs, root: str, model: str) -> dict[str, int]:
    """Every numeric dir that carries saved_model.pb|cpb matches its release record, byte for byte.

    Returns counts: complete versions, marker-less numeric dirs (a commit cut
    short between payload and marker; TensorFlow sees no model there), and
    complete ones still waiting for their record (cut short after the marker).
    """
    counts = {"complete": 0, "without_marker": 0, "unrecorded": 0}
    recorded = set(registry.list_versions(model))
    for version in numeric_dirs(fs, f"{root}/{model}"):
        names = {p.rsplit("/", 1)[-1] for p in fs.find(f"{root}/{model}/{version}")}
        if not names & {"saved_model.pb", "saved_model.cpb"}:
            counts["without_marker"] += 1
            continue
        counts["complete"] += 1
        if version in recorded:
            assert registry.verify_version(model, version) == [], f"{model}/{version} differs from its record"
        else:  # the commit died between marker and record; the rerun writes the record
            counts["unrecorded"] += 1
    return counts


# ---- hostile SavedModel directories (issue 13.3) ---------------------------------------------------
# Each builder writes a directory holding one hostile program file (and nothing else a reader
# needs), returns the program file's path, and documents what the file does to an unbounded reader.
# The .cpb files are hash-valid Riegeli files written by our own writer: they pass every checksum.

def _cpb(directory: Path, records: list[bytes], compression: str = "none",
         chunk_size: int = 1 << 20) -> Path:
    from tf_bigexport.imageformat.riegeli import RecordWriter
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "saved_model.cpb"
    with RecordWriter(path, compression=compression, chunk_size=chunk_size) as writer:
        for record in records:
            writer.write_record(record)
    return path


def _metadata(chunks: list[tuple[int, int, int]], message) -> bytes:
    """A ChunkMetadata: ``chunks`` as (type, size, record position), ``message`` the ChunkedMessage."""
    from tf_bigexport.imageformat.proto import chunk_pb2
    metadata = chunk_pb2.ChunkMetadata(message=message)
    metadata.version.splitter_version = 1
    for kind, size, offset in chunks:
        metadata.chunks.add(type=kind, size=size, offset=offset)
    return metadata.SerializeToString()


def forged_chunk_index_cpb(directory: Path) -> Path:
    """Empty chunk list, root chunk index 10**12: TensorFlow's C++ fingerprinting indexes its chunk
    vector with it (SIGSEGV) when handed this file."""
    from tf_bigexport.imageformat.proto import chunk_pb2
    return _cpb(directory, [_metadata([], chunk_pb2.ChunkedMessage(chunk_index=10 ** 12))])


def deep_field_path_cpb(directory: Path, levels: int = 45) -> Path:
    """A root chunk and ``levels`` nested ChunkedMessages, each placed at field path [2]: not a
    path the SavedModel schema allows past the first level, but TensorFlow's C++ fingerprinting
    prunes the tree before merging, copying each level once per hashed section (GraphDef,
    SignatureDefs, object graph): 3**levels nodes."""
    from tf_bigexport.imageformat.proto import chunk_pb2
    message = chunk_pb2.ChunkedMessage(chunk_index=1)
    for _ in range(levels):
        outer = chunk_pb2.ChunkedMessage()
        outer.chunked_fields.add(field_tag=[chunk_pb2.FieldIndex(field=2)], message=message)
        message = outer
    message.chunk_index = 0
    root = b""
    return _cpb(directory, [root, b"", _metadata([(1, 0, 64), (1, 0, 65)], message)])


def many_empty_messages_brotli_cpb(directory: Path, messages: int = 10_000_000) -> Path:
    """About 200 bytes of brotli whose root chunk decodes to ``messages`` empty MetaGraphDefs
    (b"\\x12\\x00" repeated, 20 MB): the parsed proto, and every reader walking it, grow to GBs."""
    from tf_bigexport.imageformat.proto import chunk_pb2
    root = b"\x12\x00" * messages
    return _cpb(directory, [root, _metadata([(1, len(root), 64)], chunk_pb2.ChunkedMessage(chunk_index=0))],
                compression="brotli", chunk_size=1 << 30)


def _constants_placed_in_chunks(count: int, size: int):
    """(root SavedModel, ChunkedMessage): ``count`` uint8 constants of ``size`` bytes whose
    tensor_content are chunks 1..count, as our splitter places large constants."""
    from tensorflow.core.protobuf import saved_model_pb2

    from tf_bigexport.imageformat import fieldpath
    from tf_bigexport.imageformat.proto import chunk_pb2
    root = saved_model_pb2.SavedModel()
    graph = root.meta_graphs.add().graph_def
    message = chunk_pb2.ChunkedMessage(chunk_index=0)
    for i in range(count):
        node = graph.node.add(name=f"c{i}", op="Const")
        node.attr["value"].tensor.dtype = 4  # uint8
        node.attr["value"].tensor.tensor_shape.dim.add(size=size)
        message.chunked_fields.add(
            field_tag=fieldpath.build(saved_model_pb2.SavedModel.DESCRIPTOR,
                                      ["meta_graphs", 0, "graph_def", "node", i, "attr", "value", "tensor",
                                       "tensor_content"]),
            message=chunk_pb2.ChunkedMessage(chunk_index=i + 1))
    return root, message


def zstd_bomb_cpb(directory: Path, chunks: int = 16, chunk_bytes: int = 256 << 20) -> Path:
    """``chunks`` zstd chunks of ``chunk_bytes`` zeros each (about 150 KB of file for 4 GiB), placed
    as tensor_content of constants: decoded and merged, they need the full size in memory."""
    import zstandard

    from tf_bigexport.imageformat.riegeli import RecordWriter
    from tf_bigexport.imageformat.riegeli.chunk_header import SIMPLE
    from tf_bigexport.imageformat.riegeli.varint import encode_varint
    root, message = _constants_placed_in_chunks(chunks, chunk_bytes)
    root_bytes = root.SerializeToString()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "saved_model.cpb"
    # One compressed zeros stream, reused: compressing 4 GiB would take a minute.
    zeros = zstandard.ZstdCompressor(level=3).compress(bytes(chunk_bytes))
    with RecordWriter(path, compression="none") as writer:
        positions = [writer.write_record(root_bytes)]
        writer.flush()
        for _ in range(chunks):
            positions.append(writer.position)
            sizes_block = encode_varint(chunk_bytes)
            sizes_compressed = zstandard.ZstdCompressor().compress(sizes_block)
            sizes = encode_varint(len(sizes_block)) + sizes_compressed
            values = encode_varint(chunk_bytes) + zeros
            writer._write_chunk(SIMPLE, 1, chunk_bytes,
                                [bytes([ord("z")]) + encode_varint(len(sizes)) + sizes, values])
        infos = [(1, len(root_bytes), positions[0])] + [(2, chunk_bytes, p) for p in positions[1:]]
        writer.write_record(_metadata(infos, message))
    return path


def repeated_empty_messages_pb(directory: Path, megabytes: int = 20) -> Path:
    """A saved_model.pb of b"\\x12\\x00" repeated: ``megabytes`` MB of empty MetaGraphDefs."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "saved_model.pb"
    path.write_bytes(b"\x12\x00" * (megabytes * 1_000_000 // 2))
    return path


def many_records_in_one_chunk_cpb(directory: Path, records: int = 20_000, record_bytes: int = 900) -> Path:
    """An uncompressed .cpb (~18 MB) whose records all sit in one Riegeli chunk: each BYTES record
    is a node's tensor_content. A reader that re-reads and re-hashes the chunk for every record
    it looks up takes time quadratic in the file size."""
    root, message = _constants_placed_in_chunks(records, record_bytes)
    root_bytes = root.SerializeToString()
    payload = bytes(range(256)) * (record_bytes // 256 + 1)
    records_data = [root_bytes] + [payload[:record_bytes]] * records
    infos = [(1, len(root_bytes), 64)] + [(2, record_bytes, 64 + 1 + i) for i in range(records)]
    return _cpb(directory, records_data + [_metadata(infos, message)], chunk_size=1 << 40)


def symlink_to_dev_zero(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "saved_model.pb"
    path.symlink_to("/dev/zero")
    return path


def fifo_program_file(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "saved_model.pb"
    os.mkfifo(path)
    return path


@dataclass
class BoundedRun:
    """How a child process ended under run_bounded."""

    returncode: int | None  # None: killed by the timeout
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mib: float

    @property
    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


def run_bounded(command: list[str], *, timeout: float = 120.0, address_space: int = 3 << 30,
                env: dict | None = None) -> BoundedRun:
    """Runs ``command`` with RLIMIT_AS (address space above what an idle TensorFlow maps is
    needed: its import alone maps ~1.5 GB) and a wall-clock timeout, so a regression fails a test
    instead of eating the machine. Peak RSS comes from wait4's rusage."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                 env=env if env is not None else child_env(), preexec_fn=limit)
        deadline = started + timeout
        returncode = None
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                child.kill()
                _, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.05)
        child.returncode = returncode if returncode is not None else -9
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return BoundedRun(returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                          seconds, usage.ru_maxrss / 1024)
