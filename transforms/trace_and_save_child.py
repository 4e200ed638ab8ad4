"""The process that holds a job's model: build it, trace it, compute golden
outputs, save it, and leave a receipt (trace_and_save.py starts it).

Started as ``child_process.run_child("tf_bigexport.transforms.trace_and_save_child:main", [REQUEST])``
where REQUEST is a pickled ExportTask the parent wrote into the job's work
dir. Everything TensorFlow touches happens here, so the memory of the model
is returned to the system when this process ends.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import time
import traceback

from tf_bigexport.transforms import save_receipt
from tf_bigexport.transforms.child_process import Reporter, exit_with_parent
from tf_bigexport.transforms.errors import describe
from tf_bigexport.transforms.factories import use_search_path

BUILD_PHASE = "building the model"  # trace_and_save.py starts the trace_timeout clock at this phase
_BYTES_EVERY = 0.25  # seconds between byte-count reports while saving


def main(argv: list[str]) -> int:
    exit_with_parent()
    reporter = Reporter()
    with open(argv[0], "rb") as f:
        task = pickle.load(f)  # written by our own parent process
    use_search_path(task.python_path, task.launch_dir)
    try:
        receipt, timings = _trace_and_save(task, reporter)
    except _InStage as e:
        traceback.print_exception(e.__cause__, file=sys.stderr)
        reporter.send(error=describe(e.__cause__), stage=e.stage)
        return 1
    reporter.send(result={"receipt": dataclasses.asdict(receipt), "seconds": timings})
    return 0


class _InStage(Exception):
    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


def _trace_and_save(task, reporter: Reporter) -> tuple[save_receipt.SaveReceipt, dict[str, float]]:
    from tf_bigexport.transforms import save, trace

    timings: dict[str, float] = {}
    start = time.monotonic()
    try:
        reporter.phase("starting TensorFlow", "trace")
        tf = _quiet_tensorflow()
        reporter.phase(BUILD_PHASE, "trace")
        model = trace.build_model(task)
        reporter.phase("tracing signatures", "trace")
        traced = trace.trace_signatures(model, task)
        if task.sample_inputs:
            reporter.phase("computing golden outputs", "trace")
        golden_npz = trace.arrays_to_npz(trace.golden_outputs(task, traced))
        signatures = trace.signature_summary(task, traced)
    except Exception as e:
        raise _InStage("trace") from e
    reporter.send(traced=True)
    timings["trace"] = time.monotonic() - start

    start = time.monotonic()
    try:
        reporter.phase("writing the SavedModel", "save")
        written = [0, 0, 0.0]  # bytes so far, expected total, when last reported

        def progress(increment: int, expected_total: int) -> None:
            written[0] += increment
            written[1] = expected_total
            now = time.monotonic()
            if now - written[2] >= _BYTES_EVERY:
                written[2] = now
                reporter.send(bytes=[written[0], written[1]])

        saved = save.save_model(task, traced, golden_npz, progress=progress)
        reporter.send(bytes=[written[0], written[1]])
        del traced, model  # the fingerprint below reads files, not the model
        reporter.phase("reading the fingerprint", "save")
        fingerprint = save.read_or_write_fingerprint(saved["saved_dir"])
        receipt = save_receipt.SaveReceipt(
            job_key=task.job_key, job_spec_sha256=str(task.release_extras.get("job_spec_sha256", "")),
            proto_file=saved["proto_file"], chunks=saved["chunks"], shards=saved["shards"],
            saved_bytes=saved["saved_bytes"], signatures=signatures, fingerprint=fingerprint,
            tensorflow_version=tf.__version__, loading=saved["loading"],
            golden_sha256=save_receipt.sha256_of(os.path.join(task.work_dir, save_receipt.GOLDEN)))
        save_receipt.write(task.work_dir, receipt)
    except Exception as e:
        raise _InStage("save") from e
    timings["save"] = time.monotonic() - start
    return receipt, timings


def _quiet_tensorflow():
    import logging

    import tensorflow as tf
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") != "0":
        tf.get_logger().setLevel(logging.ERROR)
        tf.autograph.set_verbosity(0)
    return tf
