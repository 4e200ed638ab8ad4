"""`gc`: list, and with --apply remove, what killed or abandoned runs left in a registry
(storage/gc.py says what counts) and in the local work directories of runs.

Never touches a published version; refuses a registry it cannot fully read.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time

from tf_bigexport.byte_sizes import human_bytes
from tf_bigexport.local_files import is_temporary_name
from tf_bigexport.pipeline.exit_codes import ExitCode, fail

DEFAULT_AGE = "7d"
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)", re.ASCII)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> float:
    """Seconds from "90", "90s", "30m", "12h" or "7d"."""
    match = _AGE.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age: use a number with s, m, h or d (e.g. 7d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("registry", metavar="URI", help="the registry to clean (a directory or gs://, s3://, ...)")
    parser.add_argument("--apply", action="store_true", help="remove what is listed (default: only list it)")
    parser.add_argument("--older_than", default=DEFAULT_AGE, metavar="AGE",
                        type=parse_age,
                        help=f"leave alone anything written more recently, such as the claims and uploads of "
                             f"runs that may still be going (default {DEFAULT_AGE}; a number with s, m, h or d)")
    parser.add_argument("--work_root", default=None, metavar="DIR",
                        help="where runs keep their local work directories, one per run id "
                             "(default: <temp dir>/tf-bigexport, as for `run`)")


def stale_work_dirs(root: str, older_than: float, now: float) -> list[tuple[str, int]]:
    """(path, size) of run work directories under `root` untouched for longer than the age.

    Only directories that look like a run's (an outcomes/ directory, or a job directory with
    a save receipt or a temporary save) count: `root` may hold anything else too."""
    from tf_bigexport.transforms.save_receipt import RECEIPT, SAVED_MODEL_DIRNAME
    found = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        path = os.path.join(root, name)
        if not os.path.isdir(path) or os.path.islink(path):
            continue
        jobs = [os.path.join(path, j) for j in os.listdir(path) if os.path.isdir(os.path.join(path, j))]
        ours = os.path.isdir(os.path.join(path, "outcomes")) or any(
            os.path.exists(os.path.join(j, RECEIPT))
            or any(is_temporary_name(n, of=SAVED_MODEL_DIRNAME) for n in os.listdir(j)) for j in jobs)
        stats = [os.lstat(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files]
        newest = max((s.st_mtime for s in stats), default=os.lstat(path).st_mtime)
        if ours and now - newest > older_than:
            found.append((path, sum(s.st_size for s in stats)))
    return found


def gc_command(args) -> int:
    from tf_bigexport import storage
    from tf_bigexport.pipeline.locations import open_registry
    from tf_bigexport.pipeline.options import default_work_root
    from tf_bigexport.storage.gc import collect, find_garbage

    older_than, now = args.older_than, time.time()
    try:
        registry = open_registry(args.registry)
        survey = find_garbage(registry, older_than, now)
    except storage.StorageError as e:
        return fail(f"gc: refusing to run: {e}")
    work = stale_work_dirs(args.work_root or default_work_root(), older_than, now)
    verb = "removing" if args.apply else "would remove"
    for item in survey.garbage:
        print(f"{verb} {item.kind} {item.uri}: {item.reason}" + (f" ({human_bytes(item.size)})" if item.size else ""))
    for path, size in work:
        print(f"{verb} work directory {path}: a run's scratch, untouched for longer than the age "
              f"({human_bytes(size)})")
    for line in survey.attention:
        print(f"left alone {line}", file=sys.stderr)
    total = sum(i.size for i in survey.garbage) + sum(size for _, size in work)
    count = len(survey.garbage) + len(work)
    if not args.apply:
        print(f"{count} item(s), {human_bytes(total)}; nothing removed (add --apply to remove them)")
        return ExitCode.OK
    try:
        removed = collect(registry, survey)
    except storage.StorageError as e:
        return fail(f"gc: {e}")
    for path, _ in work:
        shutil.rmtree(path, ignore_errors=True)
    print(f"removed {len(removed) + len(work)} item(s), {human_bytes(total)}")
    return ExitCode.OK
