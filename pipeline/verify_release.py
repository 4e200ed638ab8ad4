"""`verify`: re-check a published version from its bytes.

1. storage checksums (size, crc32c, sha256) of every file against the release record;
2. every .cpb read fully with the Riegeli reader (chunk and block hashes);
3. TensorFlow's fingerprint recomputed from the published bytes vs the recorded one.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from tf_bigexport.pipeline.exit_codes import ExitCode, fail
from tf_bigexport.pipeline.locations import local_model_dir, open_registry, split_version_uri
from tf_bigexport.pipeline.logs import LOGGER_NAME


def read_records_fully(path: str, name: str, stream: TextIO | None = None) -> int:
    """Reads every record (verifying every hash on the way); returns the record count.

    Shows progress on ``stream`` (default stderr) if a terminal, else logs a few lines.
    """
    from tf_bigexport.imageformat.riegeli import RecordReader
    from tf_bigexport.storage.progress import Progress

    count = 0
    with RecordReader(path, name=name) as reader:
        progress = Progress(f"riegeli {name}", reader.size, stream=stream,
                            logger=logging.getLogger(LOGGER_NAME))
        done = 0
        for position, _ in reader.records_with_positions():
            count += 1
            # A numeric position is its chunk's byte offset plus the record's index in
            # the chunk: as a byte count it is off by a few records at most.
            if position > done:
                progress.add_bytes(min(position, reader.size) - done)
                done = min(position, reader.size)
        progress.add_bytes(reader.size - done)
        progress.close()
    return count


def resolve_version(uri: str):
    """(Registry, model, version, note): <registry>/<model>/<version>, or <registry>/<model> meaning its
    latest published version (the note says which)."""
    from tf_bigexport.storage.names import model_name_problem
    try:
        registry_uri, model, version = split_version_uri(uri)
    except ValueError:
        registry_uri, _, model = uri.rstrip("/").rpartition("/")
        if not registry_uri or registry_uri.endswith(":/") or model_name_problem(model):
            raise ValueError(f"{uri}: expected <registry>/<model>/<version>, or <registry>/<model> for its "
                             "latest version") from None
        registry = open_registry(registry_uri)
        versions = registry.list_versions(model)
        if not versions:
            raise ValueError(f"{uri}: model {model!r} has no published version in {registry.uri} "
                             "(expected <registry>/<model>/<version>)") from None
        return registry, model, versions[-1], (f"{uri}: verifying the latest published version, "
                                               f"{versions[-1]} (of {len(versions)})")
    return open_registry(registry_uri), model, version, None


def verify_release(uri: str) -> tuple[list[str], list[str]]:
    """(report lines, problems); each problem names the file it is about."""
    from tf_bigexport.imageformat.fingerprints import compute_fingerprint_bytes, fingerprint_dict, fingerprint_mismatches

    registry, model, version, chosen = resolve_version(uri)
    version_uri = registry.version_uri(model, version)
    report = [chosen] if chosen else []
    state = registry.release_state(model, version)
    if state.state != "published":  # say exactly what is there instead
        return report + [f"{version_uri}: {state.state}"], [f"{version_uri}: {state.state}: {state.detail}"]
    record = state.record
    report.append(f"{version_uri}: published by job {record.job_key}; release record lists {len(record.files)} "
                  f"files, {record.total_bytes} bytes")

    problems = [str(m) for m in registry.verify_version(model, version)]
    report.append(f"storage checksums: {'ok' if not problems else f'{len(problems)} mismatch(es)'}")

    with local_model_dir(version_uri, check_record=False) as local:  # mismatches are reported above
        for entry in record.files:
            if not entry.path.endswith(".cpb"):
                continue
            try:
                count = read_records_fully(os.path.join(local, *entry.path.split("/")), f"{version_uri}/{entry.path}")
                report.append(f"riegeli {entry.path}: ok ({count} records, hashes checked)")
            except (OSError, ValueError) as e:  # RiegeliError is a ValueError naming file and offset
                problems.append(f"{entry.path}: {e}")
                report.append(f"riegeli {entry.path}: FAILED")
        recorded = record.fingerprint or {}
        try:
            # Our readers check what TensorFlow's C++ will read before it does.
            recomputed = fingerprint_dict(compute_fingerprint_bytes(local))
        except (OSError, ValueError) as e:
            problems.append(f"tensorflow fingerprint: {e}")  # the error names the file refused
            recomputed = None
    if recomputed is not None:
        differing = fingerprint_mismatches(recorded, recomputed)
        if differing:
            problems += [f"fingerprint.pb: {line}" for line in differing]
            report.append("tensorflow fingerprint: MISMATCH")
        else:
            report.append(f"tensorflow fingerprint: ok (singleprint {recomputed['singleprint']})")
    return report, problems


def verify_command(args) -> int:
    try:
        report, problems = verify_release(args.uri)
    except Exception as e:  # storage/format errors already name what is wrong
        return fail(f"verify: {e}")
    print("\n".join(report))
    if problems:
        print(f"\nverify: {args.uri}: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return ExitCode.FAILED
    print("verified: all files match the release record")
    return ExitCode.OK
