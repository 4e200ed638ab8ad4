"""What killed or abandoned runs leave in a registry, found and removed.

`find_garbage` lists, `collect` removes:

- staging uploads (.staging/<job>/) of jobs that committed, or untouched for
  longer than the age;
- record drafts (.staging/.drafts/<job>.json) no unrecorded version needs;
- claims older than the age whose job never committed (no record, no program
  file), with whatever the job copied into the version directory;
- numeric directories with no program file that nobody claims;
- temporary files of interrupted local writes (.<name>.tmp-<hex>).

Never removed: a version with a release record or a program file (TensorFlow
may serve it; an unrecorded one is reported: a rerun of its job finishes it),
and objects gc does not recognise. gc refuses to run unless it can read every
claim and record: deciding from half the facts could remove a live job's files.
Everything younger than the age is left alone, so the age must exceed the
longest publish.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from tf_bigexport.local_files import is_temporary_name
from tf_bigexport.savedmodel_files import PROGRAM_FILES

from .errors import StorageError
from .names import model_name_problem, parse_version
from .publication import DRAFTS_DIR, STAGING_DIR
from .record import RELEASES_DIR, ReleaseRecord
from .versions import CLAIMS_DIR

log = logging.getLogger("storage")


@dataclass(frozen=True)
class Garbage:
    kind: str  # "temp file" | "staging" | "draft" | "version directory" | "claim"
    path: str  # on the registry's filesystem (a directory for staging and version directories)
    uri: str
    reason: str
    size: int = 0


@dataclass
class Survey:
    garbage: list[Garbage]
    attention: list[str]  # versions gc leaves alone but a person should look at


def _age(info: dict, now: float) -> float:
    """Seconds since an object was last written, from whichever field the backend reports."""
    for key in ("mtime", "updated", "LastModified", "last_modified", "timeCreated", "created"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            return now - float(value)
        if isinstance(value, datetime):
            return now - value.timestamp()
        if isinstance(value, str):
            try:
                return now - datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return float("inf")  # no time at all: as old as can be, the other rules still apply


def _newest(infos: list[dict], now: float) -> float:
    return min((_age(info, now) for info in infos), default=float("inf"))


def find_garbage(registry, older_than: float, now: float | None = None) -> Survey:
    """What `collect` would remove from `registry`; StorageError if it cannot read all of it."""
    store, now = registry.store, time.time() if now is None else now
    everything = store.find_files(store.root)
    staging: dict[str, list[str]] = {}
    drafts: dict[str, str] = {}
    versions: dict[tuple[str, int], list[str]] = {}
    claims: dict[tuple[str, int], str] = {}
    records: dict[tuple[str, int], str] = {}
    temp: list[str] = []
    for rel in everything:
        parts = rel.split("/")
        if is_temporary_name(parts[-1]):
            temp.append(rel)
        elif parts[0] == STAGING_DIR and len(parts) >= 3:
            if parts[1] == DRAFTS_DIR:
                drafts[parts[2].removesuffix(".json")] = rel
            else:
                staging.setdefault(parts[1], []).append(rel)
        elif len(parts) >= 2 and model_name_problem(parts[0]) is None:
            model, version = parts[0], parse_version(parts[-1].removesuffix(".json"))
            if len(parts) == 3 and parts[1] == CLAIMS_DIR and parts[2].endswith(".json") and version:
                claims[model, version] = rel
            elif len(parts) == 3 and parts[1] == RELEASES_DIR and parts[2].endswith(".json") and version:
                records[model, version] = rel
            elif parse_version(parts[1]):
                versions.setdefault((model, parse_version(parts[1])), []).append(rel)

    raw = store.read_many([store.join(rel) for rel in [*claims.values(), *records.values()]])
    owners, committed_jobs = {}, set()
    try:
        for key, rel in claims.items():
            owners[key] = registry.claims.parse(store.join(rel), raw.get(store.join(rel), b""))
        for key, rel in records.items():
            record = ReleaseRecord.from_json(raw.get(store.join(rel), b""), where=store.uri_of(store.join(rel)))
            committed_jobs.add(record.job_key)
    except StorageError as exc:
        raise StorageError(f"cannot read all of {store.uri}: {exc}; repair or remove it by hand, then run "
                           "gc again") from exc

    survey = Survey([], [])
    add = lambda kind, rel, reason, size=0: survey.garbage.append(
        Garbage(kind, store.join(rel), store.uri_of(store.join(rel)), reason, size))
    for rel in sorted(temp):
        if _age(everything[rel], now) > older_than:
            add("temp file", rel, "left by an interrupted write", int(everything[rel].get("size") or 0))
    needed_drafts = set()
    for key in sorted(set(versions) | set(claims)):
        model, version = key
        files = versions.get(key, [])
        claim = owners.get(key)
        where = f"{model}/{version}"
        if key in records:
            continue
        if any(rel.split("/")[-1] in PROGRAM_FILES for rel in files):
            job = claim["job_key"] if claim else None
            needed_drafts.add(job)
            survey.attention.append(f"{store.uri_of(store.join(where))}: program file present but no release "
                                    f"record; {'a rerun of job ' + job + ' finishes it' if job else 'nobody claims it'}")
            continue
        size = sum(int(everything[rel].get("size") or 0) for rel in files)
        if claim is not None:
            job = claim["job_key"]
            claimed = _claim_age(claim, everything[claims[key]], now)
            touched = _newest([everything[rel] for rel in files + staging.get(job, [])], now)
            if min(claimed, touched) <= older_than:
                continue  # a live job may still be uploading or copying
            if files:
                add("version directory", where, f"job {job} claimed it and never committed", size)
            add("claim", claims[key], f"job {job} never committed; claimed {claimed / 3600:.1f} h ago")
        elif _newest([everything[rel] for rel in files], now) > older_than:
            add("version directory", where, "no program file and no claim", size)
    for job, rels in sorted(staging.items()):
        size = sum(int(everything[rel].get("size") or 0) for rel in rels)
        if job in committed_jobs:
            add("staging", f"{STAGING_DIR}/{job}", f"job {job} committed", size)
        elif _newest([everything[rel] for rel in rels], now) > older_than:
            add("staging", f"{STAGING_DIR}/{job}", "upload untouched for longer than the age", size)
    for job, rel in sorted(drafts.items()):
        if job not in needed_drafts and (job in committed_jobs or _age(everything[rel], now) > older_than):
            add("draft", rel, f"record draft of job {job}, which no unrecorded version needs")
    return survey


def _claim_age(claim: dict, info: dict, now: float) -> float:
    try:
        return now - datetime.fromisoformat(claim["claimed_at"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return _age(info, now)


def collect(registry, survey: Survey, step=lambda item: None) -> list[Garbage]:
    """Remove what `survey` found, re-checking each version first; returns what was removed."""
    store, removed = registry.store, []
    for item in survey.garbage:
        if item.kind in ("version directory", "claim"):
            parts = item.path[len(store.root) + 1:].split("/")  # <model>/<version> or <model>/.claims/<version>.json
            model, version = parts[0], int(parts[-1].removesuffix(".json"))
            if registry.release_state(model, version).state in ("published", "unrecorded", "damaged"):
                log.warning("%s: changed since it was listed; left alone", item.uri)
                continue
        if item.kind in ("staging", "version directory"):
            store.remove_tree(item.path)
        else:
            store.remove_file(item.path)
        removed.append(item)
        step(item)
    return removed
