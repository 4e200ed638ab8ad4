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
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterable

import apache_beam as beam

from tf_bigexport.transforms import trace as trace_stage
from tf_bigexport.transforms.elements import ExportState
from tf_bigexport.imageformat.fingerprints import fingerprint_mismatches
from tf_bigexport.transforms.stage_dofn import StageDoFn, apply_stage, counter, describe, log

RELOAD_TIMEOUT_SECONDS = 3600


@dataclasses.dataclass(frozen=True)
class StagedObject:
    """One file to check: small, so the fan-out does not copy whole job states."""
    registry: str
    storage_options: dict
    staging_uri: str
    entry: Any  # tf_bigexport.storage.FileEntry


def _files_of(state: ExportState) -> Iterable[tuple[str, StagedObject]]:
    for entry in state.manifest.files:
        yield state.task.job_key, StagedObject(state.task.registry, dict(state.task.storage_options),
                                               state.staging_uri, entry)


class _CheckStagedObject(beam.DoFn):
    """One staged object vs the manifest; emits (job_key, [problem, ...])."""

    def process(self, keyed: tuple[str, StagedObject]):
        from tf_bigexport import storage
        job_key, item = keyed
        path = item.entry.path
        try:
            registry = storage.Registry(item.registry, storage_options=item.storage_options)
            mismatches = registry.verify_staged(item.staging_uri, storage.Manifest(files=[item.entry]))
            yield job_key, [f"{m.path}: {m.reason} (expected {m.expected}, got {m.actual})" for m in mismatches]
        except Exception as e:  # reported with the job, not as a crashed bundle
            yield job_key, [f"{path}: cannot verify: {describe(e)}"]


def reload_and_compare(state: ExportState) -> list[str]:
    """Problems found by reloading the staged model in a subprocess (empty list: all good)."""
    from tf_bigexport import storage
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
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        proc = subprocess.run([sys.executable, "-m", "tf_bigexport.transforms.reload_check", model_dir, inputs_path, golden_path],
                              capture_output=True, text=True, env=env, timeout=RELOAD_TIMEOUT_SECONDS)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return [f"reloading the staged model failed (exit {proc.returncode}): {tail}"]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    problems = list(result["problems"])
    problems += [f"fingerprint {p}" for p in fingerprint_mismatches(state.fingerprint, result["fingerprint"])]
    return problems


class _JudgeStaged(StageDoFn):
    stage = "verify"

    def __init__(self) -> None:
        super().__init__()
        self._verification_failures = counter("verification_failures")

    def model_name(self, joined: tuple[str, dict[str, list]]) -> str:
        return joined[1]["state"][0].task.model_name

    def run(self, joined: tuple[str, dict[str, list]]) -> Iterable[ExportState]:
        _, groups = joined
        state: ExportState = groups["state"][0]
        start = time.monotonic()
        problems = sorted(p for problem_list in groups["checks"] for p in problem_list)
        if len(groups["checks"]) != len(state.manifest.files):
            problems.append(f"{len(groups['checks'])} of {len(state.manifest.files)} staged files were checked")
        if not problems:
            problems = reload_and_compare(state)
        if problems:
            self._verification_failures.inc(len(problems))
            discard_staged(state)
            raise VerificationFailed(f"staged model at {state.staging_uri}: " + "; ".join(problems))
        yield state.advance("verify", time.monotonic() - start)


class VerificationFailed(Exception):
    pass


def discard_staged(state: ExportState) -> None:
    """Best effort: bytes that failed verification are never published, so drop them."""
    try:
        state.registry().cleanup_staging(state.staging_uri)
    except Exception as e:  # the failure being reported matters more than the leftovers
        log.warning("job=%s could not remove staging %s: %s", state.task.model_name, state.staging_uri, describe(e))


def verify(state: ExportState) -> ExportState:
    """The stage as a plain function: checksums of every staged file, then the reload check."""
    start = time.monotonic()
    mismatches = state.registry().verify_staged(state.staging_uri, state.manifest)
    problems = [f"{m.path}: {m.reason}" for m in mismatches] or reload_and_compare(state)
    if problems:
        discard_staged(state)
        raise VerificationFailed(f"staged model at {state.staging_uri}: " + "; ".join(problems))
    return state.advance("verify", time.monotonic() - start)


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
