"""Stages 1 and 2, Trace and Save, in a process of their own.

    ExportTask --> [a checked save this job already made? reuse it]
               --> child process: build the model, trace, golden outputs, save, receipt
               --> ExportState (signatures, golden outputs, local saved dir, fingerprint)

The model lives only in the child (trace_and_save_child.py): when the step
ends, its memory is gone before the Verify stage reloads the model in a
process of its own, so an export peaks at about one model in memory. The
build, trace and golden outputs must end within the job's trace_timeout; a
hang is killed there, and a crash (a segfault, os._exit) fails this job
alone. A failure is reported as stage "trace" or "save", wherever it was.
"""
from __future__ import annotations

import logging
import os
import pickle
import time
from typing import Iterable

import apache_beam as beam

from tf_bigexport.transforms import job_progress, save_receipt
from tf_bigexport.transforms.child_process import run_child
from tf_bigexport.transforms.elements import ExportState, ExportTask
from tf_bigexport.transforms.stage_dofn import StageDoFn, apply_stage, counter
from tf_bigexport.transforms.trace_and_save_child import BUILD_PHASE

log = logging.getLogger("tf_bigexport")
CHILD_ENTRY = "tf_bigexport.transforms.trace_and_save_child:main"
REQUEST_FILE = "trace_request.pkl"
STARTUP_TIMEOUT = 600  # seconds for the child to import TensorFlow; trace_timeout starts after
LOG_FILE = "trace_and_save.log"


def reuse_save(task: ExportTask) -> ExportState | None:
    """The state after Trace and Save, from a save this job made earlier (checked), or None."""
    found = save_receipt.reusable(task.work_dir, task.job_key, _spec_sha256(task))
    if found is None:
        return None
    receipt, manifest, golden = found
    log.info("job=%s reusing the save in %s (files checked against its receipt%s)", task.model_name,
             save_receipt.saved_dir(task.work_dir), ", reload check passed before" if receipt.verified else "")
    return _state_of(task, receipt, golden, {}).advance(
        "save", 0.0, manifest=manifest, reused="verified" if receipt.verified else "saved")


def trace_and_save(task: ExportTask) -> ExportState:
    """Both stages as a plain function (the DoFn and pipeline.direct call it). Raises ChildFailed."""
    progress = job_progress.current()
    if os.path.exists(os.path.join(task.work_dir, save_receipt.RECEIPT)):
        progress.phase("checking the save an earlier attempt left")
        reused = reuse_save(task)
        if reused is not None:
            progress.switch_stage("save")
            progress.phase("reusing the checked save")
            return reused
    os.makedirs(task.work_dir, exist_ok=True)
    save_receipt.remove(task.work_dir)
    request = os.path.join(task.work_dir, REQUEST_FILE)
    with open(request, "wb") as f:
        pickle.dump(task, f)
    user_code_since: list[float] = []  # when the factory was called

    def on_event(event: dict) -> None:
        if "phase" in event:
            progress.switch_stage(str(event.get("stage", progress.stage)))
            progress.phase(str(event["phase"]))
            if event["phase"] == BUILD_PHASE:
                user_code_since.append(time.monotonic())
        elif "bytes" in event:
            done, total = event["bytes"]
            progress.bytes(int(done), int(total) if total else None)

    def deadline(stage: str, seconds: float) -> str | None:
        if stage != "trace":
            return None
        if not user_code_since:
            return (f"TensorFlow did not start within {STARTUP_TIMEOUT} s" if seconds > STARTUP_TIMEOUT else None)
        if time.monotonic() - user_code_since[0] > task.trace_timeout:
            return (f"trace_timeout: building and tracing the model took longer than {task.trace_timeout:g} s; "
                    "set the job's trace_timeout higher if it needs more")
        return None

    try:
        result = run_child(CHILD_ENTRY, [request], log_path=os.path.join(task.work_dir, LOG_FILE),
                           default_stage="trace", on_event=on_event, deadline=deadline)
    finally:
        _remove(request)
    receipt = save_receipt.SaveReceipt(**result["receipt"])
    with open(os.path.join(task.work_dir, save_receipt.GOLDEN), "rb") as f:
        golden = f.read()
    return _state_of(task, receipt, golden, result.get("seconds", {}))


def _state_of(task: ExportTask, receipt: save_receipt.SaveReceipt, golden: bytes,
              seconds: dict[str, float]) -> ExportState:
    state = ExportState(task=task).advance("trace", seconds.get("trace", 0.0), signatures=receipt.signatures,
                                          golden_npz=golden)
    return state.advance("save", seconds.get("save", 0.0), saved_dir=save_receipt.saved_dir(task.work_dir),
                         proto_file=receipt.proto_file, saved_bytes=receipt.saved_bytes, chunks=receipt.chunks,
                         shards=receipt.shards, fingerprint=dict(receipt.fingerprint),
                         tensorflow_version=receipt.tensorflow_version, loading=dict(receipt.loading))


def _spec_sha256(task: ExportTask) -> str:
    return str(task.release_extras.get("job_spec_sha256", ""))


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class _TraceAndSave(StageDoFn):
    stage = "trace"  # until the child says it is saving

    def __init__(self) -> None:
        super().__init__()
        self._bytes = counter("bytes_written")
        self._chunks = counter("chunks")
        self._shards = counter("shards")

    def run(self, task: ExportTask) -> Iterable[ExportState]:
        state = trace_and_save(task)
        self._bytes.inc(state.saved_bytes)
        self._chunks.inc(state.chunks)
        self._shards.inc(state.shards)
        yield state


class TraceAndSave(beam.PTransform):
    """ExportTask -> ExportState with signatures, golden outputs and a local saved dir; returns (ok, failed)."""

    def expand(self, tasks):
        return apply_stage(tasks, "BuildTraceSave", _TraceAndSave())

