"""CLI: argument parsing, call inputs, and inspect/call/verify on a published .cpb."""
from __future__ import annotations

import numpy as np
import pytest

from tf_bigexport.pipeline import cli
from tf_bigexport.pipeline.call_inputs import InputError, collect_inputs, evaluate_expression, split_specs
from tf_bigexport.pipeline.locations import split_version_uri


# ---- parsing ------------------------------------------------------------------

def test_run_passes_unknown_options_to_beam():
    args, beam_args = cli.parse_args(["run", "--jobs", "j.yaml", "--registry", "gs://b/m",
                                      "--runner", "DataflowRunner", "--project", "p"])
    assert (args.command, args.jobs, args.registry) == ("run", "j.yaml", "gs://b/m")
    assert beam_args == ["--runner", "DataflowRunner", "--project", "p"]


def test_other_commands_reject_unknown_options(capsys):
    with pytest.raises(SystemExit) as info:
        cli.parse_args(["inspect", "some/dir", "--runner", "DataflowRunner"])
    assert info.value.code == cli.EXIT_USAGE
    assert "unrecognized arguments: --runner DataflowRunner" in capsys.readouterr().err


def test_run_requires_jobs(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["run", "--registry", "x"])
    assert "--jobs" in capsys.readouterr().err


def test_demo_defaults_and_verbose_anywhere():
    args, _ = cli.parse_args(["demo"])
    assert args.registry == cli.DEFAULT_DEMO_REGISTRY and not args.large and not args.verbose
    args, _ = cli.parse_args(["demo", "--large", "--registry", "/tmp/r", "-v"])
    assert args.large and args.registry == "/tmp/r" and args.verbose
    args, _ = cli.parse_args(["--verbose", "inspect", "x"])
    assert args.verbose


def test_call_accepts_saved_model_cli_spellings():
    args, _ = cli.parse_args(["call", "m/1", "--signature_def", "score", "--input_exprs", "x=np.ones(2)",
                              "--inputs", "a=a.npy;b=b.npz[v]", "--input_examples", "e=[{'f': [1]}]",
                              "--outdir", "out"])
    assert args.signature == "score" and args.input_exprs == ["x=np.ones(2)"]
    assert split_specs(args.inputs) == [("a", "a.npy"), ("b", "b.npz[v]")]


def test_bad_jobs_file_exits_2_with_the_message(tmp_path, capsys):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("jobs:\n  - name: m\n    factory: a.b:c\n    signatures: {s: [{name: x, dtype: flaot32, shape: []}]}\n")
    assert cli.main(["run", "--jobs", str(jobs), "--registry", str(tmp_path / "reg")]) == cli.EXIT_USAGE
    assert "jobs.yaml: job 'm' field 'signatures.s[0].dtype': unknown dtype 'flaot32'" in capsys.readouterr().err


def test_version_uri_parts():
    assert split_version_uri("gs://bucket/models/resnet/3") == ("gs://bucket/models", "resnet", 3)
    assert split_version_uri("/tmp/registry/m/12/") == ("/tmp/registry", "m", 12)
    with pytest.raises(ValueError, match="numeric version"):
        split_version_uri("gs://bucket/models/resnet/latest")


# ---- call inputs ------------------------------------------------------------------

def test_expressions_literals_and_numpy():
    assert evaluate_expression("[[1, 2], [3, 4]]").tolist() == [[1, 2], [3, 4]]
    value = evaluate_expression("np.ones((2, 3), dtype=np.float32) * 2 - 1")
    assert value.dtype == np.float32 and value.tolist() == [[1.0] * 3] * 2
    assert evaluate_expression("np.arange(6).reshape(2, 3)[1]").tolist() == [3, 4, 5]
    assert evaluate_expression("np.array([b'a', b'b'])").tolist() == [b"a", b"b"]


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')",
    "open('/etc/passwd')",
    "np.load('x.npy', allow_pickle=True)",
    "np.ones(3).tofile('x')",
    "np.__class__",
    "(lambda: 1)()",
    "[x for x in range(3)]",
    "2 ** 10 ** 10",
    "2 ** 1000",
    "'ab' * 100",
])
def test_expressions_refuse_anything_else(text):
    with pytest.raises(InputError, match="not allowed"):
        evaluate_expression(text)


def test_input_files(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(3))
    np.savez(tmp_path / "b.npz", v=np.ones(2), w=np.zeros(1))
    feeds = collect_inputs([f"a={tmp_path}/a.npy;b={tmp_path}/b.npz[w]"], ["c=[1.5]"], [])
    assert feeds["a"].tolist() == [0, 1, 2] and feeds["b"].tolist() == [0.0] and feeds["c"].tolist() == [1.5]
    with pytest.raises(InputError, match=r"holds \['v', 'w'\]; pick one"):
        collect_inputs([f"b={tmp_path}/b.npz"], [], [])
    with pytest.raises(InputError, match="given more than once"):
        collect_inputs([f"a={tmp_path}/a.npy"], ["a=[1]"], [])
    with pytest.raises(InputError, match="no such file"):
        collect_inputs([f"a={tmp_path}/missing.npy"], [], [])


def test_input_examples_become_serialized_examples():
    import tensorflow as tf
    [serialized] = collect_inputs([], [], ["e=[{'age': [30], 'score': [0.5], 'name': ['x']}]"])["e"]
    example = tf.train.Example.FromString(serialized)
    assert example.features.feature["age"].int64_list.value == [30]
    assert example.features.feature["score"].float_list.value == [0.5]
    assert example.features.feature["name"].bytes_list.value == [b"x"]


def test_bad_run_id_is_a_usage_error(tmp_path, capsys):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("jobs:\n  - name: m\n    factory: a.b:c\n    signatures: {s: [{name: x, dtype: float32, shape: []}]}\n")
    code = cli.main(["run", "--jobs", str(jobs), "--registry", str(tmp_path / "reg"), "--run_id", "../escape"])
    assert code == cli.EXIT_USAGE
    assert "--run_id: run id '../escape' is invalid" in capsys.readouterr().err
