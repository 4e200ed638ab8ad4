"""Stage 5, Commit: claim a version and publish the verified staged files.

The job's storage.Publication does it (the same protocol Registry.publish
runs): the claim is create-only and keyed by the job key, so a retry gets the
version it already claimed; the commit writes saved_model.(c)pb last and
never overwrites a published version.
"""
from __future__ import annotations

import shutil
import time
from typing import Any, Iterable

import apache_beam as beam

from tf_bigexport.transforms import job_progress
from tf_bigexport.transforms.elements import ExportState
from tf_bigexport.transforms.stage_dofn import RegistryStageDoFn, apply_stage, counter


def release_info(state: ExportState) -> dict[str, Any]:
    info = {
        "fingerprint": dict(state.fingerprint),
        "signatures": dict(state.signatures),
        "tensorflow_version": state.tensorflow_version or _tensorflow_version(),
        **dict(state.loading),
    }
    info.update(state.task.release_extras)
    return info


def _tensorflow_version() -> str:
    import tensorflow as tf
    return tf.__version__


def commit(state: ExportState, registry: Any = None) -> ExportState:
    from tf_bigexport import storage
    start = time.monotonic()
    task = state.task
    registry = registry or state.registry()
    publication = state.publication(registry)
    # A rerun of a run killed after its commit got as far as the program file: that release
    # stands. (Re-saving gives other bytes, TensorFlow's saves are not byte-reproducible.)
    record = publication.published()
    if record is None:
        version = publication.claim(storage.VersionPolicy.parse(task.version_policy))
        record = publication.commit(version, release_info(state))
    # The published copy is the one that counts now; staging and the job's local scratch can go.
    publication.clean()
    shutil.rmtree(task.work_dir, ignore_errors=True)
    registrations = register(record, registry, task.registration)
    return state.advance("commit", time.monotonic() - start, version=record.version,
                         release_record=record.to_dict(), registrations=registrations)


def register(record: Any, registry: Any, registration: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """Tells the configured model registries; a failure is reported in the outcome, never unpublishes."""
    from tf_bigexport.registries import RegistrationConfig, register_everywhere
    results = register_everywhere(record, RegistrationConfig(**registration).adapters(registry))
    return tuple(r.to_dict() for r in results)


class _CommitVersion(RegistryStageDoFn):
    stage = "commit"

    def __init__(self) -> None:
        super().__init__()
        self._published = counter("files_published")

    def run(self, state: ExportState) -> Iterable[ExportState]:
        committed = commit(state, self.registries.of(state.task))
        self._published.inc(len(committed.manifest.files))
        job_progress.current().outcome = f"published version {committed.version} ({committed.release_record.get('uri')})"
        yield committed


class Commit(beam.PTransform):
    """ExportState (verified) -> ExportState with version and release record; returns (ok, failed)."""

    def expand(self, verified):
        return apply_stage(verified, "ClaimAndPublish", _CommitVersion())
