"""Regenerate the figures table in SECURITY.md from the test suite's own output.

    .venv/bin/python tools/security_figures.py            # the CI-sized runs
    .venv/bin/python tools/security_figures.py --slow     # also the 50-job load run
    FUZZ_EXAMPLES=2000 FAULT_SEEDS=30 .venv/bin/python tools/security_figures.py   # longer, by hand

Runs the hostile-input, fault, load, trust and fuzz tests with SECURITY_REPORT_DIR
and FUZZ_REPORT set; each test writes its figures as JSON; the table between the
markers in SECURITY.md is rewritten from those files. Nothing is written unless
every test passed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECURITY_MD = REPO / "SECURITY.md"
START, END = "<!-- security-figures:start -->", "<!-- security-figures:end -->"
TESTS = ["tests/test_fuzz_format.py", "tests/test_hostile_files.py", "tests/test_bad_input.py",
         "tests/test_faults.py", "tests/test_load.py", "tests/test_trust.py", "tests/test_damaged_registry.py",
         "tests/test_gc.py"]
# tests/test_hostile_files.py: the special files among its cases; the others are bombs and forgeries.
SPECIAL_FILES = {"symlink_to_dev_zero": "saved_model.pb -> /dev/zero", "fifo_program_file": "FIFO as saved_model.pb"}


def run_tests(report_dir: str, slow: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, SECURITY_REPORT_DIR=report_dir, FUZZ_REPORT=os.path.join(report_dir, "fuzz.json"))
    marker = ["-m", "slow or not slow"] if slow else []
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=25", *marker, *TESTS]
    print("running:", " ".join(command), flush=True)
    return subprocess.run(command, cwd=REPO, env=env, text=True, capture_output=True)


def _load(report_dir: str) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(report_dir).glob("*.json"))}


def _kinds(counts: dict) -> str:
    return ", ".join(f"{n} x {k}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def rows(figures: dict[str, dict]) -> list[tuple[str, str, str]]:
    out = []
    if "fuzz" in figures:
        f = figures["fuzz"]
        per_test = "; ".join(f"{name.replace('test_', '')}: {t['inputs']}" for name, t in f["tests"].items())
        out.append(("Hostile .cpb / Riegeli files (fuzzed)",
                    f"{f['inputs']} mutated inputs in {f['seconds']} s ({per_test})",
                    "no crash, hang or memory blow-up; every input accepted or refused with an error naming the file"))
    if "hostile_files" in figures:
        out += _hostile_file_rows(figures["hostile_files"])
    if "bad_jobs" in figures:
        f = figures["bad_jobs"]
        out.append(("Bad jobs files and jobs",
                    f"{f['schema_cases']} malformed jobs files; {f['jobs_rejected']} jobs failing at run time "
                    "(dtype/shape mismatch, factory raises/returns nothing/does not import, sample shape, "
                    "unreachable and read-only registry)",
                    f"each named by job and field; {f['published_by_rejected_jobs']} objects published by them"))
    for kind in ("gcs", "s3"):
        f = figures.get(f"faults_http_{kind}")
        if f:
            out.append((f"Transient HTTP faults ({kind.upper()} emulator)",
                        f"{sum(f['faults'].values())} faults in {f['requests']} requests: {_kinds(f['faults'])}",
                        f"{f['publishes_completed']}/{f['publishes']} publishes completed byte-exact, "
                        f"{f['files_lost']} files lost"))
    if "faults_permanent" in figures:
        f = figures["faults_permanent"]
        out.append(("Permanent error (403 on the version directory)",
                    f"{f['forbidden_requests']} forbidden writes",
                    f"publish failed, {f['partial_versions']} partial versions; rerun converged"))
    if "faults_kill" in figures:
        f = figures["faults_kill"]
        out.append(("Pipeline process SIGKILLed",
                    f"{f['kills']} kills at seeded points ({_kinds(f['kill_points'])})",
                    f"{f['visible_versions_differing_from_record']} visible versions differing from their record, "
                    f"{f['earlier_versions_changed']} earlier versions changed; rerun converged: {f['converged']}"))
    for how in ("tmpfs", "rlimit_fsize"):
        f = figures.get(f"faults_disk_full_{how}")
        if f:
            label = "1 MiB tmpfs" if how == "tmpfs" else "RLIMIT_FSIZE 512 KiB"
            out.append((f"Disk full during save ({label})", f"{f['jobs']} job saving a 2 MiB model",
                        f"clear error; {f['partial_saves_left']} partial saves left, nothing published"))
    load_runs = [k for k in figures if k.startswith("load_") and k.endswith("_jobs")]
    for name in sorted(load_runs, key=lambda k: figures[k]["jobs"]):
        f = figures[name]
        rss = ", ".join(f"{kind} {v['peak_rss_mib']} MiB (x{v['processes']})"
                        for kind, v in sorted(f["peak_rss_mib_by_process_kind"].items()))
        out.append((f"Load: {f['jobs']} jobs, {f['workers']} worker processes (GCS emulator)",
                    f"{f['seconds']} s; peak RSS per process: {rss}; whole tree {f['peak_rss_mib_whole_tree']} MiB",
                    f"{f['published']} published, {f['verified']} verified, {f['lost']} lost"))
    if "load_concurrent_next" in figures:
        f = figures["load_concurrent_next"]
        out.append(("Concurrent pipelines, one model, version 'next'",
                    f"{f['publishers']} pipeline processes at once",
                    f"versions {f['versions']}: {f['duplicates']} duplicates, {f['gaps']} gaps"))
    if "secrets" in figures:
        f = figures["secrets"]
        out.append(("Credentials (fake token in env and --storage_options)",
                    f"{f['secrets_planted']} secrets, each searched as {', '.join(f['forms_searched'])}, in "
                    f"{f['bytes_searched']} bytes of {', '.join(f['places_searched'])} (verbose run with a "
                    "storage failure)",
                    f"{f['leaks']} leaks"))
    uri_runs = [figures[k] for k in sorted(figures) if k.startswith("uri_credentials_")]
    if uri_runs:
        out.append(("URI credentials (registry URIs carrying a secret)",
                    f"{len(uri_runs)} runs and inspects: {', '.join(f['uri'] for f in uri_runs)}; every output "
                    f"searched for {uri_runs[0]['forms_searched']} forms of the secret",
                    f"refused before any work with how to pass credentials (exit "
                    f"{', '.join(str(f['exit_code']) for f in uri_runs)}); {sum(f['leaks'] for f in uri_runs)} leaks"))
    damaged = [figures[k] for k in sorted(figures) if k.startswith("damaged_")]
    if damaged:
        kinds = sorted({f["kind"] for f in damaged})
        backends = sorted({f["backend"] for f in damaged})
        out.append(("Damaged registries",
                    f"{len(damaged)} registries ({', '.join(backends)}) with: {'; '.join(kinds)}; "
                    f"{sum(f['publishes'] for f in damaged)} publishes, each retried with the same job",
                    f"{sum(f['published'] for f in damaged)} published and reported published, "
                    f"{sum(f['duplicates'] for f in damaged)} duplicates; each damaged object named in a warning"))
    gc_runs = [figures[k] for k in sorted(figures) if k.startswith("gc_kills_")]
    if gc_runs:
        per_backend = ", ".join(f"{f['backend']}: {f['items']} leftovers" for f in gc_runs)
        out.append(("`gc` on registries littered by killed publishes",
                    f"{sum(f['kills'] for f in gc_runs)} SIGKILLs of `gc --apply`, one after every removal "
                    f"({per_backend})",
                    f"converged; {sum(f['published_changed'] for f in gc_runs)} published or unrecorded versions "
                    f"changed, {sum(f['left_after_rerun'] for f in gc_runs)} leftovers"))
    if "trust" in figures:
        f = figures["trust"]
        out.append(("Model code during inspect/verify",
                    f"{', '.join(f['commands_checked'])} on a model whose graph writes a file",
                    f"{f['model_code_run']} graph runs, {f['factory_imports']} factory imports "
                    f"(control: `call` ran it: {f['control_call_ran_model']})"))
    return out


def _hostile_file_rows(f: dict) -> list[tuple[str, str, str]]:
    commands = {name: runs for name, runs in f["commands"].items() if name != "baseline_rss_mib"}
    baseline = max(f["commands"]["baseline_rss_mib"].values())
    rows = []
    for title, wanted in (("Special files in a model directory", lambda case: case in SPECIAL_FILES),
                          ("Decompression and message bombs, forged .cpb structure",
                           lambda case: case not in SPECIAL_FILES)):
        runs = [(command, case, run) for command, cases in sorted(commands.items())
                for case, run in sorted(cases.items()) if wanted(case)]
        cases = sorted({case for _, case, _ in runs})
        refused = sum(1 for _, _, run in runs if run["outcome"] == "refused")
        growth = max(run["rss_growth_mib"] for _, _, run in runs)
        slowest = max(run["seconds"] for _, _, run in runs)
        labels = ", ".join(SPECIAL_FILES.get(case, case.replace("_", " ")) for case in cases)
        rows.append((title,
                     f"{len(cases)} files ({labels}) through {', '.join(sorted(commands))}: {len(runs)} runs, "
                     f"each child under RLIMIT_AS {f['address_space_cap_gib']} GiB",
                     f"{refused} refused with one line naming the file, {len(runs) - refused} read in linear time; "
                     f"0 crashes or hangs; slowest {slowest:.1f} s, peak RSS growth {growth} MiB over TensorFlow's "
                     f"import ({baseline} MiB)"))
    return rows


def table(figures: dict[str, dict], summary: str, slow: bool) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    settings = "".join(f"{name}={os.environ[name]} " for name in ("FUZZ_EXAMPLES", "FAULT_SEEDS")
                       if os.environ.get(name))
    lines = [START,
             f"Generated {stamp} by `{settings}tools/security_figures.py{' --slow' if slow else ''}` "
             f"(pytest: {summary}).", "",
             "| Area | Injected / exercised | Outcome |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows(figures)]
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", action="store_true", help="include the slow (50-job) load test")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="security-figures-") as report_dir:
        done = run_tests(report_dir, args.slow)
        summary = (done.stdout.strip().splitlines() or ["no output"])[-1].strip("= ")
        if done.returncode != 0:
            print(done.stdout[-6000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
            print(f"tests failed ({summary}); SECURITY.md left as it was", file=sys.stderr)
            return 1
        figures = _load(report_dir)
    print(done.stdout[-4000:])
    text = SECURITY_MD.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"{SECURITY_MD}: markers {START} ... {END} not found", file=sys.stderr)
        return 1
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    SECURITY_MD.write_text(before + table(figures, summary, args.slow) + after, encoding="utf-8")
    print(f"updated {SECURITY_MD} ({len(rows(figures))} rows, pytest: {summary})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
