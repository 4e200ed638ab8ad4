"""Saving: write the traced model as a SavedModel into the job's local work
directory, in the job's format (servable: large constants in the checkpoint
and a plain saved_model.pb; image: the image format).

The proto is split into chunks below the job's split_threshold and the
checkpoint into shards below max_shard_size. Like Beam's WriteToFiles, it
writes into a fresh temporary directory and renames it into place, so a
retried bundle never sees a half-written model. This runs in the process
that holds the model (trace_and_save_child.py).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from typing import Any, Callable, Iterator, TextIO

from tf_bigexport.local_files import replacing_directory, write_file
from tf_bigexport.savedmodel_files import FINGERPRINT_PB, PROGRAM_FILES
from tf_bigexport.storage.progress import Progress
from tf_bigexport.transforms.elements import ExportTask
from tf_bigexport.transforms.save_receipt import GOLDEN, saved_dir


def proto_file_of(directory: str) -> str:
    for name in PROGRAM_FILES:
        if os.path.exists(os.path.join(directory, name)):
            return name
    raise FileNotFoundError(f"{directory}: no saved_model.pb or saved_model.cpb was written")


def read_or_write_fingerprint(saved_dir: str) -> dict[str, Any]:
    """The fingerprint.pb written at save time; created here if the save did not write one."""
    from tf_bigexport.imageformat.fingerprints import compute_fingerprint_bytes, fingerprint_dict
    path = os.path.join(saved_dir, FINGERPRINT_PB)
    if not os.path.exists(path):
        write_file(path, compute_fingerprint_bytes(saved_dir, trusted=True))  # this job's own save
    with open(path, "rb") as f:
        return fingerprint_dict(f.read(), name=path)


def count_chunks(cpb_path: str) -> int:
    """Number of chunks listed in a .cpb's ChunkMetadata (its last record)."""
    from tf_bigexport.imageformat.proto import chunk_pb2
    from tf_bigexport.imageformat.riegeli import RecordReader
    with RecordReader(cpb_path) as reader:
        metadata = chunk_pb2.ChunkMetadata.FromString(reader.read_last_record())
    return len(metadata.chunks)


def count_shards(directory: str) -> int:
    variables = os.path.join(directory, "variables")
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


def save_model(task: ExportTask, traced: Any, golden_npz: bytes,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Writes <work_dir>/saved_model (with the job's warmup requests) and the golden outputs beside
    it; returns what the save produced.

    ``progress(bytes_written, expected_total)`` is called as the program file is written.
    """
    os.makedirs(task.work_dir, exist_ok=True)
    final_dir = saved_dir(task.work_dir)
    with replacing_directory(final_dir) as temp_dir:  # .saved_model.tmp-<hex>, which gc recognizes
        save_in_format(task, traced, temp_dir, progress)
        if task.serving_warmup:
            from tf_bigexport.imageformat import serving_warmup
            serving_warmup.write_requests(temp_dir, task.sample_inputs, model_name=task.model_name)
    write_file(os.path.join(task.work_dir, GOLDEN), golden_npz)
    proto_file = proto_file_of(final_dir)
    chunks = count_chunks(os.path.join(final_dir, proto_file)) if proto_file.endswith(".cpb") else 1
    from tf_bigexport.imageformat import loadability
    return {"saved_dir": final_dir, "proto_file": proto_file, "chunks": chunks, "shards": count_shards(final_dir),
            "saved_bytes": directory_size(final_dir), "loading": loadability.describe(final_dir).to_dict()}


def save_in_format(task, traced, export_dir: str, progress) -> None:
    """Saves in the job's format: "image" (constants in the program, split when it must be),
    "servable" (large constants in the checkpoint, a plain saved_model.pb or an error), or
    "auto": servable if the rest of the program fits under split_threshold, else image."""
    from tf_bigexport import imageformat
    from tf_bigexport.imageformat.chunk_errors import ProgramTooLargeError

    def write(**how) -> None:
        imageformat.save(traced.model, export_dir, signatures=traced.functions, max_shard_size=task.max_shard_size,
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

