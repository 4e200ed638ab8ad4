"""Building and running the C++ loader (cc/) from tests.

`build()` runs `make -f cc/Makefile` with this interpreter's TensorFlow (once
per pytest worker through the session fixture `cc_build` in conftest.py; make
keeps objects under build/cc/ between runs, and a file lock keeps two workers
from building at once). Without g++ the tests that need it are skipped; with
g++ a build failure fails them.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 1800
MISSING_HEADERS_EXIT = 3  # cc/tf_flags.py --check: this TensorFlow's wheel lacks the Merger's headers  # a cold build is a few minutes on 2 busy cores


@dataclasses.dataclass(frozen=True)
class CcBuild:
    outdir: Path

    @property
    def library(self) -> Path:
        return self.outdir / "libtf_bigexport_loader.so"

    @property
    def runner(self) -> Path:
        return self.outdir / "tf_bigexport_run"

    @property
    def reader(self) -> Path:
        return self.outdir / "tf_bigexport_read"

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Runs tf_bigexport_run with TensorFlow's INFO logging off."""
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        return subprocess.run([str(self.runner), *args], capture_output=True, text=True, timeout=timeout, env=env)

    def show(self, export_dir: str | os.PathLike, *extra: str) -> dict:
        done = self.run("--export_dir", str(export_dir), "--show", *extra)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["signatures"]

    def call(self, export_dir: str | os.PathLike, signature: str, inputs: dict[str, np.ndarray],
             workdir: Path, *extra: str) -> dict[str, np.ndarray]:
        """Runs one signature on `inputs`; returns its outputs read back from .npy."""
        workdir.mkdir(parents=True, exist_ok=True)
        args = ["--export_dir", str(export_dir), "--signature", signature, "--outdir", str(workdir / "out")]
        for name, value in inputs.items():
            np.save(workdir / f"{name}.npy", value)
            args += ["--input", f"{name}={workdir / f'{name}.npy'}"]
        done = self.run(*args, *extra)
        assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}"
        return {path.stem: np.load(path) for path in (workdir / "out").glob("*.npy")}


def build() -> CcBuild:
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        pytest.skip(f"no C++ compiler ({compiler}): the C++ loader (cc/) is not built here")
    checked = subprocess.run([sys.executable, "cc/tf_flags.py", "--check"], cwd=REPO, capture_output=True, text=True)
    # A TensorFlow whose wheel lacks the Merger's headers: the loader does not support it (README).
    if checked.returncode == runpy.run_path(str(REPO / "cc" / "tf_flags.py"))["MISSING_EXIT"]:
        pytest.skip(checked.stderr.strip())
    assert checked.returncode == 0, checked.stderr
    lock_path = REPO / "build" / "cc" / ".lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(["make", "--no-print-directory", "-j2", "-f", "cc/Makefile", f"PYTHON={sys.executable}"],
                              cwd=REPO, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if done.returncode != 0:
        pytest.fail(f"make -f cc/Makefile failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    outdir = subprocess.run([sys.executable, "cc/tf_flags.py", "--outdir"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.strip()
    result = CcBuild(REPO / outdir)
    assert result.library.exists() and result.runner.exists() and result.reader.exists(), done.stdout
    return result
