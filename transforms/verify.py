"""Stage 4b, Verify the staged bytes before anything is published.

    staged --> one element per file --> checksum of that staged object --+
       |                                                                  |
       +--------------------------- join by job <-------------------------+
                                       |
                 reload in a fresh process: golden outputs, fingerprint

A job passes only if every staged object matches the manifest, the model
reloaded from the staged bytes reproduces the golden outputs, and the
fingerprint recomputed from those bytes equals the one recorded.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from typing import Any, Iterable

import apache_beam as beam

from tf_bigexport.imageformat.fingerprints import fingerprint_mismatches
from tf_bigexport.storage.progress import routed_to
from tf_bigexport.transforms import job_progress, save_receipt
from tf_bigexport.transforms import trace as trace_stage
from tf_bigexport.transforms.child_process import ChildFailed, run_child
from tf_bigexport.transforms.elements import ExportState, Registries
from tf_bigexport.transforms.stage_dofn import RegistryStageDoFn, apply_stage, counter, describe, log

RELOAD_TIMEOUT_SECONDS = 3600
RELOAD_ENTRY = "tf_bigexport.transforms.reload_check:child_main"


@dataclasses.dataclass(frozen=True)
class StagedObject:
    """One file to check: small, so the fan-out does not copy whole job states."""
    registry: str
    storage_options: dict
    model_name: str
    entry: Any  # tf_bigexport.storage.FileEntry


def _files_of(state: ExportState) -> Iterable[tuple[str, StagedObject]]:
    if state.release_record is not None:  # published by an earlier run of this job: nothing staged
        return
    for entry in state.manifest.files:
        yield state.task.job_key, StagedObject(state.task.registry, dict(state.task.storage_options),
                                               state.task.model_name, entry)


class _CheckStagedObject(beam.DoFn):
    """One staged object vs the manifest; emits (job_key, [problem, ...])."""

    def setup(self) -> None:
        self.registries = Registries()

    def process(self, keyed: tuple[str, StagedObject]):
        from tf_bigexport import storage
        job_key, item = keyed
        try:
            publication = self.registries.of(item).publication(item.model_name, job_key,
                                                               storage.Manifest(files=[item.entry]))
            # One file of many: the job's verify stage reports the whole (no line per file).
            with routed_to(lambda progress: None):
                problems = [str(m) for m in publication.verify()]
            yield job_key, problems
        except Exception as e:  # reported with the job, not as a crashed bundle
            yield job_key, [f"{item.entry.path}: cannot verify: {describe(e)}"]


def reload_and_compare(state: ExportState) -> list[str]:
    """Problems found by reloading the staged model in a fresh process (empty list: all good)."""
    from tf_bigexport import storage
    progress = job_progress.current()

    def on_event(event: dict) -> None:
        if "phase" in event:
            progress.phase(str(event["phase"]))

    def deadline(stage: str, seconds: float) -> str | None:
        return f"the reload check took longer than {RELOAD_TIMEOUT_SECONDS} s" \
            if seconds > RELOAD_TIMEOUT_SECONDS else None

    progress.phase("fetching the staged model")
    with tempfile.TemporaryDirectory(prefix="tf-bigexport-verify-") as scratch, \
            storage.local_directory(state.staging_uri, dict(state.task.storage_options),
                                    [e.path for e in state.manifest.files]) as model_dir:
        inputs = {f"{key}/{name}": value for key, feeds in state.task.sample_inputs.items()
                  for name, value in feeds.items()}
        inputs_path = os.path.join(scratch, "inputs.npz")
        golden_path = os.path.join(scratch, "golden.npz")
        with open(inputs_path, "wb") as f:
            f.write(trace_stage.arrays_to_npz(inputs))
        with open(golden_path, "wb") as f:
            f.write(state.golden_npz)
        try:
            result = run_child(RELOAD_ENTRY, [model_dir, inputs_path, golden_path],
                               log_path=os.path.join(scratch, "reload_check.log"), default_stage="verify",
                               on_event=on_event, deadline=deadline)
        except ChildFailed as e:
            return [str(e)]
    problems = list(result["problems"])
    problems += [f"fingerprint {p}" for p in fingerprint_mismatches(state.fingerprint, result["fingerprint"])]
    return problems


def reload_unless_verified_before(state: ExportState) -> list[str]:
    """The reload check, skipped for a reused save that passed it on exactly these (re-checked) bytes."""
    if state.reused == "verified":
        log.info("job=%s reload check passed before on these files; not repeated", state.task.model_name)
        return []
    problems = reload_and_compare(state)
    if not problems and state.saved_dir:
        save_receipt.update(state.task.work_dir, verified=True)
    return problems


class _JudgeStaged(RegistryStageDoFn):
    stage = "verify"

    def __init__(self) -> None:
        super().__init__()
        self._verification_failures = counter("verification_failures")

    def model_name(self, joined: tuple[str, dict[str, list]]) -> str:
        return joined[1]["state"][0].task.model_name

    def run(self, joined: tuple[str, dict[str, list]]) -> Iterable[ExportState]:
        _, groups = joined
        state: ExportState = groups["state"][0]
        if state.release_record is not None:
            yield state
            return
        start = time.monotonic()
        problems = sorted(p for problem_list in groups["checks"] for p in problem_list)
        if len(groups["checks"]) != len(state.manifest.files):
            problems.append(f"{len(groups['checks'])} of {len(state.manifest.files)} staged files were checked")
        yield judge(state, problems, self.registries.of(state.task), start, self._verification_failures)


class VerificationFailed(Exception):
    pass


def judge(state: ExportState, problems: list[str], registry: Any, start: float, failures: Any = None) -> ExportState:
    """Both forms of the stage end here: staged checksum problems, else the reload check.
    Bytes that fail are never published, so their staging is dropped."""
    problems = problems or reload_unless_verified_before(state)
    if problems:
        if failures is not None:
            failures.inc(len(problems))
        try:
            state.publication(registry).clean()
        except Exception as e:  # the failure being reported matters more than the leftovers
            log.warning("job=%s could not remove staging %s: %s", state.task.model_name, state.staging_uri,
                        describe(e))
        raise VerificationFailed(f"staged model at {state.staging_uri}: " + "; ".join(problems))
    return state.advance("verify", time.monotonic() - start)


def verify(state: ExportState, registry: Any = None) -> ExportState:
    """The stage as a plain function: checksums of every staged file, then the reload check."""
    if state.release_record is not None:
        return state
    start = time.monotonic()
    registry = registry or state.registry()
    return judge(state, [str(m) for m in state.publication(registry).verify()], registry, start)


class Verify(beam.PTransform):
    """ExportState (staged) -> ExportState (verified); returns (ok, failed)."""

    def expand(self, staged):
        by_job = staged | "KeyByJob" >> beam.Map(lambda state: (state.task.job_key, state))
        object_checks = (
            staged
            | "OnePerFile" >> beam.FlatMap(_files_of)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ChecksumStagedObject" >> beam.ParDo(_CheckStagedObject()))
        joined = {"state": by_job, "checks": object_checks} | "JoinByJob" >> beam.CoGroupByKey()
        return apply_stage(joined, "ReloadAndCompare", _JudgeStaged())
