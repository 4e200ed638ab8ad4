"""Fitting the user's environment: TensorFlow as the user's choice, the supported
matrix stated once and everywhere the same, and what the CLI says when the
environment does not fit."""
from __future__ import annotations

import os
import pathlib
import re
import runpy
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

from tf_bigexport.imageformat import tf_version

REPO = pathlib.Path(__file__).resolve().parents[1]
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def project() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def compat_matrix() -> tuple:
    return runpy.run_path(str(REPO / "tools" / "compat.py"))["MATRIX"]


def readme_matrix() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    table = text.split("<!-- compat-matrix:start -->")[1].split("<!-- compat-matrix:end -->")[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table.strip().splitlines()]
    return rows[2:]  # past the header and the rule


def test_no_tensorflow_distribution_is_a_plain_dependency() -> None:
    names = {Requirement(r).name for r in project()["dependencies"]}
    assert not {n for n in names if n.startswith(("tensorflow", "tf-nightly", "intel-tensorflow"))}, names


def test_extras_offer_the_cpu_and_gpu_builds_over_the_supported_range() -> None:
    extras = project()["optional-dependencies"]
    cpu, gpu = (Requirement(r) for r in (extras["cpu"][0], extras["gpu"][0]))
    assert (cpu.name, gpu.name, gpu.extras) == ("tensorflow-cpu", "tensorflow", {"and-cuda"})
    first, last = tf_version.SUPPORTED_MINORS[0], tf_version.SUPPORTED_MINORS[-1]
    upper = f"{last.split('.')[0]}.{int(last.split('.')[1]) + 1}"
    for requirement in (cpu, gpu):
        assert str(requirement.specifier) in (f">={first},<{upper}", f"<{upper},>={first}")
        for minor in tf_version.SUPPORTED_MINORS:
            assert f"{minor}.0" in requirement.specifier
        assert f"{upper}.0" not in requirement.specifier


def test_readme_compat_tool_and_tf_support_list_the_same_minors() -> None:
    rows = readme_matrix()
    assert [row[0] for row in rows] == list(tf_version.SUPPORTED_MINORS)
    matrix = compat_matrix()
    assert [row.tensorflow for row in matrix] == list(tf_version.SUPPORTED_MINORS)
    for row, readme in zip(matrix, rows):
        assert readme[3] == row.python, (row, readme)
        assert readme[2].startswith((f"{row.distribution} ", "not run yet")) and f" {row.tensorflow}." in readme[2], (
            row, readme)
        low, _, high = readme[1].partition(" to ")
        assert low <= row.python <= high, (row, readme[1])
    pythons = {row.python for row in matrix}
    assert pythons == {"3.10", "3.11", "3.12", "3.13"}  # every supported Python is tested somewhere


def test_ci_runs_the_oldest_and_newest_rows() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    matrix = compat_matrix()
    oldest, newest = matrix[0], matrix[-1]
    assert re.search(rf"compat\.py[^\n]*--tf {oldest.tensorflow}\b[^\n]*--tf {newest.tensorflow}\b", ci), ci
    assert (oldest.python, newest.python) == ("3.10", "3.13")  # also the oldest and newest Python
    # and the whole suite, not only the compat tests, on the oldest row
    assert re.search(rf"compat\.py --full-suite --tf {oldest.tensorflow}\b", ci), ci
    assert re.search(rf"^test-oldest:\n\t.*compat\.py --full-suite --tf {oldest.tensorflow}$",
                     (REPO / "Makefile").read_text(), re.M)


def test_generated_protos_load_on_the_oldest_supported_protobuf() -> None:
    """protoc 26 and later add a runtime version check that protobuf 4.25 (TensorFlow 2.16/2.17) fails."""
    floor = next(Requirement(r) for r in project()["dependencies"] if r.startswith("protobuf"))
    assert "4.25.8" in floor.specifier and "4.25.7" not in floor.specifier
    for module in sorted((REPO / "imageformat" / "proto").glob("*_pb2.py")):
        text = module.read_text()
        assert "runtime_version" not in text, module.name
        assert re.search(r"# Protobuf Python Version: 4\.25\.\d+", text), module.name


def fake_tensorflow(root: pathlib.Path, body: str) -> dict:
    package = root / "tensorflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(body)
    return {"PYTHONPATH": str(root)}


@pytest.mark.parametrize("body, says", [
    ("__version__ = '2.14.1'\n", "tf-bigexport supports TensorFlow 2.15 to 2.21; the installed TensorFlow is 2.14.1"),
    ("raise ModuleNotFoundError(\"No module named 'tensorflow'\", name='tensorflow')\n",
     "tf-bigexport needs TensorFlow 2.15 to 2.21 and none is installed: pip install 'tf-bigexport[cpu]'"),
])
def test_cli_names_the_supported_range_and_exits_4(tmp_path: pathlib.Path, body: str, says: str) -> None:
    env = dict(os.environ, **fake_tensorflow(tmp_path / "site", body))
    result = subprocess.run([sys.executable, "-m", "tf_bigexport", "inspect", str(tmp_path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tf-bigexport: {says}"), result.stderr
    assert result.stdout == ""
