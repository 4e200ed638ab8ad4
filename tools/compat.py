"""`make test-compat`: the project installed from its wheel, once per supported TensorFlow.

    python3 tools/compat.py                      # every row of MATRIX
    python3 tools/compat.py --tf 2.15 --tf 2.21  # some rows (CI: the oldest and the newest)
    python3 tools/compat.py --list               # the rows, as the README shows them
    python3 tools/compat.py --full-suite --tf 2.15  # the whole suite on a row (`make test-oldest`)

First the source distribution is built and checked (C source and .proto files
inside, a wheel builds from it). Then for each row: a fresh venv under
.compat/ with that row's Python, TensorFlow installed first (the `tensorflow`
row proves our wheel adds no second TensorFlow next to it), then the wheel
built by `pip wheel .` with the [test] extra. Inside it, from a scratch
directory holding a user's own `storage/`, `transforms/` and `pipeline/`
packages, run the tests marked `compat` (format and conformance: save,
load, enable(), TensorFlow's C++ reading our .cpb, merge equal to
TensorFlow's own save) and those marked `installed` (the wheel's contents,
the demo and a smoke test through the installed CLI).

With --full-suite, a row instead gets the whole test suite, as `make test`
runs it on the newest TensorFlow: the repository installed editable with
the [suite] extra into .compat/full-tfX-pyY (Beam's GCP extra left out: it
needs TensorFlow 2.20 on), TensorFlow named in the same install. CI runs it
on the oldest row, where Python- and Keras-2-only failures would hide.

Builds must print no setuptools deprecation warning. Venvs are kept for a
rerun (`--fresh` rebuilds them, `--remove` deletes each after its run).
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import re
import runpy
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".compat"


@dataclasses.dataclass(frozen=True)
class Row:
    tensorflow: str  # minor version, e.g. "2.16"
    python: str  # minor version the row runs on
    distribution: str  # which TensorFlow build to install first


# One row per supported TensorFlow minor (imageformat/tf_support.py's table).
# Pythons are spread so that each of 3.10..3.13 is tested; TensorFlow 2.15 to
# 2.19 have no wheels for 3.13. The newest row installs `tensorflow` (the
# build with GPU support) rather than tensorflow-cpu.
MATRIX = (
    Row("2.15", "3.10", "tensorflow-cpu"),
    Row("2.16", "3.10", "tensorflow-cpu"),
    Row("2.17", "3.11", "tensorflow-cpu"),
    Row("2.18", "3.12", "tensorflow-cpu"),
    Row("2.19", "3.12", "tensorflow-cpu"),
    Row("2.20", "3.11", "tensorflow-cpu"),
    Row("2.21", "3.13", "tensorflow"),
)

# Packages the user's scratch directory holds: the generic names our
# repository folders have, which must never shadow or mix with ours.
USER_PACKAGES = ("storage", "transforms", "pipeline", "imageformat", "registries")
DEPRECATION = re.compile(r"(SetuptoolsDeprecationWarning|setuptools\.\S*Deprecat|DeprecationWarning:)")


def log(text: str) -> None:
    print(f"[compat] {text}", flush=True)


def run(command: list[str], *, cwd: Path = REPO, env: dict | None = None, capture: Path | None = None) -> str:
    """Runs a command, streaming its output (and saving it to ``capture``); raises on failure."""
    log("$ " + " ".join(str(c) for c in command))
    process = subprocess.Popen([str(c) for c in command], cwd=cwd, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        sys.stdout.write(line)
    sys.stdout.flush()
    output = "".join(lines)
    if capture is not None:
        capture.write_text(output)
    if process.wait() != 0:
        raise SystemExit(f"[compat] failed ({process.returncode}): {' '.join(str(c) for c in command)}")
    return output


def find_python(minor: str) -> Path:
    """An interpreter for Python ``minor``: python3.X on PATH, else pyenv's."""
    on_path = shutil.which(f"python{minor}")
    candidates = [on_path] if on_path else []
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(glob.glob(str(pyenv / f"{minor}.*" / "bin" / "python")), reverse=True)
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", "import venv"], capture_output=True).returncode == 0:
            return Path(candidate)
    raise SystemExit(f"[compat] no Python {minor} found (python{minor} on PATH or {pyenv}/{minor}.*)")


def check_build_output(output: str, what: str) -> None:
    warnings = sorted({line.strip() for line in output.splitlines() if DEPRECATION.search(line)})
    if warnings:
        raise SystemExit(f"[compat] {what} printed deprecation warnings:\n  " + "\n  ".join(warnings))


def build_sdist(python: Path, out: Path) -> Path:
    """Builds the sdist, checks it carries the C source and the .proto files, returns its path."""
    tools = WORK / "build-tools"
    if not (tools / "bin" / "python").exists():
        run([python, "-m", "venv", tools])
        run([tools / "bin" / "python", "-m", "pip", "install", "build>=1.2,<2"])
    shutil.rmtree(out, ignore_errors=True)
    output = run([tools / "bin" / "python", "-m", "build", "--sdist", "--outdir", out, REPO],
                 capture=WORK / "sdist-build.log")
    check_build_output(output, "the sdist build")
    [sdist] = out.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    required = {"imageformat/_highwayhash.c", "imageformat/proto/chunk.proto", "imageformat/proto/versions.proto",
                "imageformat/proto/serving_warmup.proto", "setup.py", "pyproject.toml"}
    missing = sorted(required - names)
    if missing:
        raise SystemExit(f"[compat] {sdist.name} lacks {', '.join(missing)}")
    log(f"{sdist.name}: C source and .proto files present ({len(names)} files)")
    return sdist


def build_wheel(venv: Path, source: Path | str, out: Path) -> Path:
    """`pip wheel` of ``source`` (the repository or the sdist) with the venv's Python."""
    shutil.rmtree(out, ignore_errors=True)
    output = run([venv / "bin" / "python", "-m", "pip", "wheel", "--no-deps", "-v", "-w", out, source],
                 capture=out.parent / f"{out.name}-build.log")
    check_build_output(output, f"pip wheel {source}")
    [wheel] = out.glob("tf_bigexport-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    if not any(re.fullmatch(r"tf_bigexport/imageformat/_highwayhash\..*\.so", n) for n in names):
        raise SystemExit(f"[compat] {wheel.name} has no compiled tf_bigexport/imageformat/_highwayhash extension")
    top = {name.split("/", 1)[0] for name in names}
    if top - {"tf_bigexport"} - {n for n in top if n.endswith(".dist-info")}:
        raise SystemExit(f"[compat] {wheel.name} installs top-level names besides tf_bigexport: {sorted(top)}")
    return wheel


def make_user_directory(path: Path) -> None:
    """A user's project next to which our installed CLI must still work."""
    shutil.rmtree(path, ignore_errors=True)
    for name in USER_PACKAGES:
        package = path / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f'"""The user\'s own {name} package."""\nUSER_PACKAGE = True\n')


def row_venv(venv: Path, row: Row, args: argparse.Namespace) -> Path:
    """The row's venv at ``venv`` (made with the row's Python, kept for a rerun unless --fresh); its python."""
    if args.fresh:
        shutil.rmtree(venv, ignore_errors=True)
    py = venv / "bin" / "python"
    if not py.exists():
        run([find_python(row.python), "-m", "venv", venv])
        run([py, "-m", "pip", "install", "--upgrade", "pip"])
    return py


def test_row(row: Row, args: argparse.Namespace, sdist: Path) -> dict:
    started = time.monotonic()
    venv = WORK / f"tf{row.tensorflow}-py{row.python}"
    py = row_venv(venv, row, args)
    # The user's TensorFlow first, on its own: what our wheel then adds must not replace it.
    run([py, "-m", "pip", "install", f"{row.distribution}=={row.tensorflow}.*"])
    wheel = build_wheel(venv, REPO, WORK / "wheels" / f"py{row.python}")
    if row == rows(args)[0]:
        build_wheel(venv, sdist, WORK / "wheels" / f"py{row.python}-from-sdist")
    run([py, "-m", "pip", "install", "--force-reinstall", "--no-deps", wheel])
    # Naming the installed TensorFlow again is what the README tells users to do:
    # pip then keeps its requirements (protobuf < 5 for 2.15 to 2.17) while resolving ours.
    run([py, "-m", "pip", "install", f"{wheel}[test]", f"{row.distribution}=={row.tensorflow}.*"])
    run([py, "-m", "pip", "check"])
    versions = installed_versions(py, row)
    scratch = WORK / f"user-project-py{row.python}"
    make_user_directory(scratch)
    env = dict(os.environ, TF_BIGEXPORT_WHEEL_TEST=str(wheel), TF_BIGEXPORT_TENSORFLOW_DIST=row.distribution,
               TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    # From the user's directory: its packages are first on sys.path, the repository is not on it.
    suite = runpy.run_path(str(REPO / "tests" / "compat_suite.py"))
    files = sorted(REPO / "tests" / name for name in suite["COMPAT_FILES"] | suite["INSTALLED_FILES"])
    run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", REPO, "-c", REPO / "pyproject.toml",
         "-m", "(compat or installed) and not slow", "-n", str(args.workers), *files], cwd=scratch, env=env)
    if args.remove:
        shutil.rmtree(venv, ignore_errors=True)
    return {"row": row, "versions": versions, "seconds": time.monotonic() - started}


def full_suite_row(row: Row, args: argparse.Namespace) -> dict:
    """The whole suite from the repository, on the row's TensorFlow and Python (-rs: why each skip)."""
    started = time.monotonic()
    venv = WORK / f"full-tf{row.tensorflow}-py{row.python}"
    py = row_venv(venv, row, args)
    run([py, "-m", "pip", "install", "-e", f"{REPO}[suite]", f"{row.distribution}=={row.tensorflow}.*"])
    run([py, "-m", "pip", "check"])
    versions = installed_versions(py, row)
    run([py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-n", str(args.workers)])
    if args.remove:
        shutil.rmtree(venv, ignore_errors=True)
    return {"row": row, "versions": versions, "seconds": time.monotonic() - started}


def installed_versions(py: Path, row: Row) -> list[str]:
    return run([py, "-c", "import importlib.metadata as m, sys; print(' '.join(f'{d}=={m.version(d)}' for d in "
                "sys.argv[1:]))", row.distribution, "protobuf", "numpy", "keras"]).split()


def rows(args: argparse.Namespace) -> list[Row]:
    if not args.tf:
        return list(MATRIX)
    by_minor = {row.tensorflow: row for row in MATRIX}
    unknown = [v for v in args.tf if v not in by_minor]
    if unknown:
        raise SystemExit(f"[compat] not in the matrix: {', '.join(unknown)} (supported: {', '.join(by_minor)})")
    return [by_minor[v] for v in args.tf]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tf", action="append", help="TensorFlow minor to test (repeatable; default: all)")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers per run")
    parser.add_argument("--fresh", action="store_true", help="recreate the venvs")
    parser.add_argument("--remove", action="store_true", help="delete each venv after its run")
    parser.add_argument("--list", action="store_true", help="print the matrix and exit")
    parser.add_argument("--full-suite", action="store_true",
                        help="run the whole test suite (editable install, [suite] extra) instead of the compat tests")
    args = parser.parse_args()
    if args.list:
        for row in MATRIX:
            print(f"TensorFlow {row.tensorflow}  Python {row.python}  {row.distribution}")
        return
    WORK.mkdir(exist_ok=True)
    selected = rows(args)
    if args.full_suite:
        for row in selected:
            log(f"=== the full suite on TensorFlow {row.tensorflow} ({row.distribution}), Python {row.python}")
            result = full_suite_row(row, args)
            log(f"passed: {' '.join(result['versions'])} ({result['seconds'] / 60:.1f} min)")
        return
    sdist = build_sdist(find_python(selected[0].python), WORK / "sdist")
    results = []
    for row in selected:
        log(f"=== TensorFlow {row.tensorflow} ({row.distribution}) on Python {row.python}")
        results.append(test_row(row, args, sdist))
    log("passed; the README's rows (TensorFlow | Pythons with wheels | installed | on Python):")
    for result in results:
        row = result["row"]
        installed = ", ".join(v.replace("==", " ") for v in result["versions"])
        log(f"  | {row.tensorflow} | ... | {installed} | {row.python} |  ({result['seconds'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
