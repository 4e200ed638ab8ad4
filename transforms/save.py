"""Stage 2, Save: write the traced model as a SavedModel into the job's local
work directory, in the job's format (servable: large constants in the
checkpoint and a plain saved_model.pb; image: the image format).

The proto is split into chunks below the job's split_threshold and the
checkpoint into shards below max_shard_size. Like Beam's WriteToFiles, it
writes into a fresh temporary directory and renames it into place, so a
retried bundle never sees a half-written model.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from typing import Callable, Iterable, Iterator, TextIO

import apache_beam as beam

from tf_bigexport.local_files import write_file
from tf_bigexport.savedmodel_files import PROGRAM_FILES
from tf_bigexport.storage.progress import Progress

from tf_bigexport.transforms import trace as trace_stage
from tf_bigexport.transforms.elements import ExportState
from tf_bigexport.transforms.stage_dofn import StageDoFn, apply_stage, counter

SAVED_MODEL_DIRNAME = "saved_model"
# Next to it: which job (key and spec hash) the completed save belongs to.
SAVED_STAMP = "saved_model.job"
SAVED_GOLDEN = "saved_model.golden.npz"


def proto_file_of(saved_dir: str) -> str:
    for name in PROGRAM_FILES:
        if os.path.exists(os.path.join(saved_dir, name)):
            return name
    raise FileNotFoundError(f"{saved_dir}: no saved_model.pb or saved_model.cpb was written")


def count_chunks(cpb_path: str) -> int:
    """Number of chunks listed in a .cpb's ChunkMetadata (its last record)."""
    from tf_bigexport.imageformat.proto import chunk_pb2
    from tf_bigexport.imageformat.riegeli import RecordReader
    with RecordReader(cpb_path) as reader:
        metadata = chunk_pb2.ChunkMetadata.FromString(reader.read_last_record())
    return len(metadata.chunks)


def count_shards(saved_dir: str) -> int:
    variables = os.path.join(saved_dir, "variables")
    if not os.path.isdir(variables):
        return 0
    return sum(1 for name in os.listdir(variables) if name.startswith("variables.data-"))


def directory_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


@contextlib.contextmanager
def save_progress(label: str, stream: TextIO | None = None) -> Iterator[Callable[[int, int], None]]:
    """A progress callback for imageformat.save: a live line on a TTY, log lines otherwise."""
    progress = Progress(label, 0, stream=stream, logger=logging.getLogger("tf_bigexport"))

    def report(written: int, expected_total: int) -> None:
        progress.expect(expected_total)
        progress.add_bytes(written)

    yield report
    progress.close()  # not on failure: the error says what happened


def _completed_save_of(final_dir: str, stamp_path: str, stamp: str) -> bool:
    """True if this job (same key and spec) already saved here, e.g. before its process was killed.

    Reusing it matters: TensorFlow's saves are not byte-reproducible, and a
    commit cut short after its marker can only be finished with the same bytes.
    """
    try:
        with open(stamp_path, encoding="utf-8") as f:
            return f.read() == stamp and os.path.isdir(final_dir)
    except OSError:
        return False


def _save_into(final_dir: str, stamp_path: str, stamp: str, task, traced, golden_path: str,
               golden_npz: bytes) -> None:
    import tensorflow as tf

    temp_dir = os.path.join(task.work_dir, f".{SAVED_MODEL_DIRNAME}.tmp-{uuid.uuid4().hex[:12]}")
    options = tf.saved_model.SaveOptions(
        experimental_sharding_callback=tf.train.experimental.MaxShardSizePolicy(task.max_shard_size))
    try:
        with contextlib.suppress(FileNotFoundError):
            os.remove(stamp_path)
        with save_progress(f"save {os.path.join(final_dir, 'saved_model')}") as progress:
            save_in_format(task, traced, temp_dir, options, progress)
        if os.path.exists(final_dir):
            shutil.rmtree(final_dir)
        os.replace(temp_dir, final_dir)
        write_file(golden_path, golden_npz)
        write_file(stamp_path, stamp.encode("utf-8"))  # only a complete save gets a stamp
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def save_in_format(task, traced, export_dir: str, options, progress) -> None:
    """Saves in the job's format: "image" (constants in the program, split when it must be),
    "servable" (large constants in the checkpoint, a plain saved_model.pb or an error), or
    "auto": servable if the rest of the program fits under split_threshold, else image."""
    from tf_bigexport import imageformat
    from tf_bigexport.imageformat.chunk_errors import ProgramTooLargeError

    def write(**how) -> None:
        imageformat.save(traced.model, export_dir, signatures=traced.functions, options=options,
                         max_chunk_size=task.split_threshold, progress=progress, **how)

    if task.format == "image":
        write()
    elif task.format == "servable":
        write(large_constants="variables")
    else:
        try:
            write(large_constants="variables", max_program_bytes=task.split_threshold)
        except ProgramTooLargeError as error:  # raised before anything was written
            logging.getLogger("tf_bigexport").info(
                "job %s: format auto: not servable (%s); saving in the image format", task.model_name, error)
            shutil.rmtree(export_dir, ignore_errors=True)
            write()


def save(state: ExportState, traced: "trace_stage.TracedModel") -> ExportState:
    """Saves ``traced`` for ``state.task``; returns the state with the local saved dir."""
    start = time.monotonic()
    task = state.task
    os.makedirs(task.work_dir, exist_ok=True)
    final_dir = os.path.join(task.work_dir, SAVED_MODEL_DIRNAME)
    stamp_path = os.path.join(task.work_dir, SAVED_STAMP)
    stamp = f"{task.job_key} {task.release_extras.get('job_spec_sha256', '')}\n"
    golden_path = os.path.join(task.work_dir, SAVED_GOLDEN)
    if _completed_save_of(final_dir, stamp_path, stamp):
        # The golden outputs of the trace that produced these bytes (a factory may not be seeded).
        with open(golden_path, "rb") as f:
            state = state.advance("save", 0.0, golden_npz=f.read())
    else:
        _save_into(final_dir, stamp_path, stamp, task, traced, golden_path, state.golden_npz)

    from tf_bigexport.imageformat import loadability
    proto_file = proto_file_of(final_dir)
    chunks = count_chunks(os.path.join(final_dir, proto_file)) if proto_file.endswith(".cpb") else 1
    return state.advance("save", time.monotonic() - start, saved_dir=final_dir, proto_file=proto_file,
                         saved_bytes=directory_size(final_dir), chunks=chunks, shards=count_shards(final_dir),
                         loading=loadability.describe(final_dir).to_dict())


class _SaveImageFormat(StageDoFn):
    stage = "save"

    def __init__(self) -> None:
        super().__init__()
        self._bytes = counter("bytes_written")
        self._chunks = counter("chunks")
        self._shards = counter("shards")

    def run(self, state: ExportState) -> Iterable[ExportState]:
        saved = save(state, trace_stage.take_traced(state.task))
        self._bytes.inc(saved.saved_bytes)
        self._chunks.inc(saved.chunks)
        self._shards.inc(saved.shards)
        yield saved


class SaveImageFormat(beam.PTransform):
    """ExportState (traced) -> ExportState with a local saved dir; returns (ok, failed)."""

    def expand(self, traced):
        return apply_stage(traced, "WriteSavedModel", _SaveImageFormat())
