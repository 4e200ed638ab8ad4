"""The same stages, called one after another without Beam.

The benchmark measures the Beam pipeline against this; tests use it to
publish a model quickly. Failures raise instead of being tagged.
"""
from __future__ import annotations

from tf_bigexport.pipeline.graph import to_task
from tf_bigexport.pipeline.jobs import JobSpec
from tf_bigexport.transforms import commit, fingerprint, stage, verify
from tf_bigexport.transforms.elements import ExportState
from tf_bigexport.transforms.trace_and_save import trace_and_save

STAGES = ("trace", "save", "fingerprint", "stage", "verify", "commit")


def export_directly(job: JobSpec, *, work_root: str, run_id: str,
                    storage_options: dict | None = None, registration: dict | None = None) -> ExportState:
    task = to_task(job, work_root=work_root, run_id=run_id, storage_options=storage_options,
                   registration=registration)
    state = trace_and_save(task)
    state = fingerprint.fingerprint(state)
    state = stage.stage(state)
    state = verify.verify(state)
    return commit.commit(state)

