"""The 3 x 800 MB captured-constants model (2.5 GB of constants, a .cpb with
the image format) in the servable form, end to end (slow: ~12 GB of RAM,
run alone: `flock /tmp/heavy.lock .venv/bin/python -m pytest -m slow
tests/test_large_servable.py`).

* `run` publishes it with the jobs' default `format: auto` as a plain
  saved_model.pb under 64 MiB, and stock TensorFlow loads it: Python in a
  process that never imports this project, TensorFlow's C++ LoadSavedModel
  from the pip wheel, and saved_model_cli run, each with the original model's
  outputs, bitwise.
* `convert` of its image-format save: to a plain .pb is refused (the merged
  program is past 2 GiB, exit 5, nothing written), to the servable form works.

The default suite runs the same code paths at 3 x 1 MiB (tests/test_servable.py,
tests/test_servable_pipeline.py, tests/test_convert.py).
"""
from __future__ import annotations

import gc
import os
import pathlib

import pytest

from tf_bigexport import imageformat
from tf_bigexport.imageformat import loadability
from tf_bigexport.pipeline import cli, demo_models
from tf_bigexport.pipeline.exit_codes import ExitCode
from tf_bigexport.pipeline.export import run_export
from tf_bigexport.pipeline.graph import to_task
from tf_bigexport.pipeline.jobs import parse_jobs
from tf_bigexport.transforms import trace as trace_stage
import servable_proof

PROGRAM_LIMIT = 64 << 20


def _large_job(registry: pathlib.Path) -> dict:
    job = demo_models.demo_jobs(str(registry), large=True)["jobs"][-1]
    assert job["name"] == "large" and "format" not in job  # the default: auto
    return job


def _original_outputs(job, tmp_path: pathlib.Path) -> tuple[dict, dict]:
    traced = trace_stage.trace_model(to_task(job, work_root=str(tmp_path / "trace"), run_id="original"))
    outputs = servable_proof.original_outputs(traced.model, traced.functions)
    del traced
    gc.collect()
    return outputs


@pytest.mark.slow
def test_run_publishes_the_large_model_as_a_plain_pb_that_stock_tensorflow_serves(tmp_path, cc_build):
    registry = tmp_path / "registry"
    (job,) = parse_jobs({"registry": str(registry), "jobs": [_large_job(registry)]})
    [outcome] = run_export([job], ["--work_dir", str(tmp_path / "work")])
    assert outcome["status"] == "published", outcome
    assert outcome["proto_file"] == "saved_model.pb" and outcome["loadable_by_stock_tensorflow"] is True
    assert outcome["loading"]["constants_in_checkpoint"] == 3
    assert outcome["loading"]["constant_bytes_in_checkpoint"] == 3 * 800 * (1 << 20)
    version_dir = registry / "large" / "1"
    assert os.path.getsize(version_dir / "saved_model.pb") < PROGRAM_LIMIT
    assert not (version_dir / "saved_model.cpb").exists()

    inputs, expected = _original_outputs(job, tmp_path)
    [actual] = servable_proof.run_stock_python([(version_dir, inputs)], tmp_path)
    servable_proof.assert_bitwise_equal(actual, expected, "large model (tf.saved_model.load)")
    actual = servable_proof.run_cc_stock_loader(cc_build, version_dir, inputs, tmp_path)
    servable_proof.assert_bitwise_equal(actual, expected, "large model (C++ tensorflow::LoadSavedModel)")
    actual = servable_proof.run_saved_model_cli(version_dir, inputs, tmp_path)
    servable_proof.assert_bitwise_equal(actual, expected, "large model (saved_model_cli run)")


@pytest.mark.slow
def test_convert_of_the_large_cpb(tmp_path, capsys):
    image_dir = tmp_path / "image"
    (job,) = parse_jobs({"registry": str(tmp_path / "registry"), "jobs": [_large_job(tmp_path / "registry")]})
    traced = trace_stage.trace_model(to_task(job, work_root=str(tmp_path / "trace"), run_id="image"))
    imageformat.save(traced.model, image_dir, signatures=traced.functions)  # the image format: constants inside
    del traced
    described = loadability.describe(image_dir)
    assert described.form == loadability.IMAGE and described.program_bytes > 2**31
    gc.collect()

    assert cli.main(["convert", str(image_dir), "--to", "pb", "--output", str(tmp_path / "pb")]) \
        == ExitCode.NOT_CONVERTIBLE
    err = capsys.readouterr().err
    assert err.startswith(f"convert: {image_dir / 'saved_model.cpb'}: the merged program proto is 2.3 GiB, "
                          "past the 2 GiB a plain saved_model.pb can hold"), err
    assert not (tmp_path / "pb").exists()

    assert cli.main(["convert", str(image_dir), "--to", "servable", "--output", str(tmp_path / "servable")]) \
        == ExitCode.OK
    servable = loadability.describe(tmp_path / "servable")
    assert servable.stock_tensorflow and servable.program_bytes < PROGRAM_LIMIT
    assert servable.constants_in_checkpoint == 3
