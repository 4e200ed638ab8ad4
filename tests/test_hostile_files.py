"""Hostile program files (issue 13.3): `inspect`, `call`, `verify` and `imageformat.load`
refuse each with a one-line error naming the file, in bounded time and memory.

The files come from hostile_testkit (each builder says what it does to an unbounded
reader). The CLI runs in a child process per command, under RLIMIT_AS and a timeout, so a
regression (SIGSEGV in TensorFlow's C++, a hang on a FIFO, a decompression bomb) fails the
test instead of taking the machine: the child runs every case in turn through
`tf_bigexport.pipeline.cli.main` and reports each outcome and its peak RSS as JSON.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

import hostile_testkit as kit
from tf_bigexport.imageformat.chunk_errors import ChunkedFormatError
from tf_bigexport.imageformat.riegeli import RiegeliError

REFUSED, READ, FINISHES = "refused", "read", "finishes"
ALL = {"inspect": REFUSED, "call": REFUSED, "verify": REFUSED}
CASES = {  # builder -> {command: expected outcome}
    "forged_chunk_index_cpb": ALL,
    "deep_field_path_cpb": ALL,
    "many_empty_messages_brotli_cpb": ALL,
    # inspect reads no constant chunk, so it never meets the bomb
    "zstd_bomb_cpb": {"inspect": READ, "call": REFUSED, "verify": REFUSED},
    "repeated_empty_messages_pb": ALL,
    # a real-shaped file that used to take 695 s: it must simply be read in linear time
    "many_records_in_one_chunk_cpb": {"inspect": READ, "call": FINISHES, "verify": FINISHES},
    "symlink_to_dev_zero": ALL,
    "fifo_program_file": ALL,
}
SPECIAL = ("symlink_to_dev_zero", "fifo_program_file")
# Address space for a CLI child: TensorFlow's import maps ~2.5 GB of it (measured VmPeak),
# the rest is what reading a hostile file may use.
ADDRESS_SPACE = 4 << 30
CHILD_TIMEOUT = 600  # all cases of one command; a hang or a quadratic read runs into it


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, dict[str, str]]:
    """case -> {"dir": model directory, "version": registry version URI publishing it}."""
    from tf_bigexport.storage import Registry, VersionPolicy
    root = tmp_path_factory.mktemp("hostile")
    registry = root / "registry"
    cases = {}
    for name in CASES:
        directory = root / name
        path = getattr(kit, name)(directory)
        # Published as a regular file, then swapped for the special one in the version directory
        # (a registry written by others): the storage checks report it, verify must not hang on it.
        staged = root / f"publish-{name}"
        staged.mkdir()
        if name in SPECIAL:
            (staged / path.name).write_bytes(b"")
        else:
            shutil.copy(path, staged / path.name)
        Registry(str(registry)).publish(str(staged), name.replace("_", "-"), VersionPolicy.next_integer(), {},
                                        f"job-{name.replace('_', '-')}")
        version_dir = registry / name.replace("_", "-") / "1"
        if name in SPECIAL:
            (version_dir / path.name).unlink()
            getattr(kit, name)(version_dir)
        cases[name] = {"dir": str(directory), "version": str(version_dir), "file": path.name}
    return cases


def _child(command: str, cases: dict[str, dict[str, str]], tmp_path: Path) -> dict:
    plan = tmp_path / f"{command}.json"
    plan.write_text(json.dumps(cases))
    run = kit.run_bounded([sys.executable, __file__, command, str(plan)], timeout=CHILD_TIMEOUT,
                          address_space=ADDRESS_SPACE)
    assert run.returncode == 0, (f"the {command} child died (exit {run.returncode}, {run.seconds:.0f} s) "
                                 f"during case {run.stdout.strip().splitlines()[-1:]}: {run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", ["inspect", "call", "verify"])
def test_cli_refuses_every_hostile_file_with_one_line(command, hostile, tmp_path):
    results = _child(command, hostile, tmp_path)["cases"]
    assert set(results) == set(CASES)
    for name, result in results.items():
        expected = CASES[name][command]
        lines = [line for line in result["stderr"].splitlines() if line.strip()]
        if expected == READ:
            assert result["exit"] == 0, (name, lines)
            continue
        if expected == FINISHES:
            continue  # got here: no hang, no crash, within the address-space cap
        assert result["exit"] == 1, (name, result)
        problem = lines[-1]
        assert hostile[name]["file"] in problem, (name, lines)
        assert len(problem) < 600, (name, problem)
        if command != "verify":  # verify lists every finding, one line each
            assert len(lines) == 1, (name, lines)
    _figures.setdefault(command, {}).update(
        {name: {"seconds": r["seconds"], "rss_growth_mib": r["rss_growth_mib"], "outcome": CASES[name][command]}
         for name, r in results.items()})
    _figures.setdefault("baseline_rss_mib", {})[command] = results[next(iter(results))]["baseline_rss_mib"]


_figures: dict = {}


def test_library_refuses_every_hostile_file(hostile):
    """The same files through the format library's readers, in this process."""
    from tf_bigexport import imageformat
    from tf_bigexport.imageformat import fingerprints, program_files
    for name, case in hostile.items():
        if name == "many_records_in_one_chunk_cpb":
            continue  # not hostile in structure: see the linear-time test below
        path = os.path.join(case["dir"], case["file"])
        for read in (lambda: imageformat.read_saved_model(case["dir"]),
                     lambda: fingerprints.check_for_tensorflow(case["dir"])):
            with pytest.raises((ChunkedFormatError, RiegeliError, program_files.SpecialFileError)) as raised:
                read()
            assert str(raised.value).startswith(f"{path}: "), (name, str(raised.value))


def test_records_of_one_big_chunk_are_decoded_once(hostile):
    """20,000 records in one 18 MB chunk: reading them one by one (as the merger does,
    in any order) decodes the chunk once, not once per record (695 s before)."""
    from tf_bigexport.imageformat import chunked
    path = os.path.join(hostile["many_records_in_one_chunk_cpb"]["dir"], "saved_model.cpb")
    with chunked.ChunkedFile(path) as chunked_file:
        for index in reversed(range(len(chunked_file))):
            chunked_file.read(index)
        decoded = chunked_file._reader.decoded_bytes
        size = chunked_file._reader.size
    assert decoded < 2 * size, (decoded, size)


@pytest.fixture(scope="module", autouse=True)
def security_figures():
    yield
    if _figures:
        kit.report("hostile_files", {"cases": len(CASES), "commands": _figures,
                                     "address_space_cap_gib": ADDRESS_SPACE >> 30})


def _run_cases(command: str, plan_path: str) -> None:
    """Child: runs `command` on every case through the CLI's main, one JSON line at the end."""
    import contextlib
    import io
    import resource
    import time

    from tf_bigexport.pipeline import cli, logs
    logs.import_tensorflow(False)
    plan = json.loads(Path(plan_path).read_text())
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {}
    for name, case in plan.items():
        print(name, flush=True)  # the last name printed is the case a crash happened in
        target = case["version"] if command == "verify" else case["dir"]
        stderr = io.StringIO()
        started = time.monotonic()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main([command, target])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out[name] = {"exit": code, "stderr": stderr.getvalue(), "seconds": round(time.monotonic() - started, 2),
                     "rss_growth_mib": round(peak - baseline), "baseline_rss_mib": round(baseline)}
    print(json.dumps({"cases": out}))


if __name__ == "__main__" and len(sys.argv) == 3:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    _run_cases(sys.argv[1], sys.argv[2])
