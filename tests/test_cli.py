"""CLI: argument parsing, call inputs, and inspect/call/verify on a published .cpb."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tf_bigexport.pipeline import cli
from tf_bigexport.pipeline.call_inputs import InputError, collect_inputs, evaluate_expression, split_specs
from tf_bigexport.pipeline.locations import split_version_uri


# ---- parsing ------------------------------------------------------------------

def parse(*argv):
    return cli.parse_args(list(argv))


def usage_error(capsys, *argv) -> str:
    assert cli.main(list(argv)) == cli.EXIT_USAGE
    return capsys.readouterr().err


def test_run_takes_listed_beam_options_and_the_rest_after_the_separator():
    args = parse("run", "--jobs", "j.yaml", "--registry", "gs://b/m", "--runner", "DataflowRunner",
                 "--project", "p", "--temp-location", "gs://b/t", "--experiments", "a", "--experiments", "b",
                 "--run-id", "nightly.3", "--", "--worker-zone=us-central1-b", "--no_use_public_ips")
    assert (args.command, args.jobs, args.registry) == ("run", "j.yaml", "gs://b/m")
    run = args.run_options
    assert run.run_id == "nightly.3"  # the `-` spelling, once silently dropped
    assert run.beam_args == ("--runner=DataflowRunner", "--project=p", "--temp_location=gs://b/t",
                             "--experiments=a", "--experiments=b", "--worker_zone=us-central1-b",
                             "--no_use_public_ips")


@pytest.mark.parametrize("argv, message", [
    (["--bogus-flag", "1"], "tf-bigexport run: error: unrecognized option --bogus-flag"),
    (["--mlflow_tracking_url", "http://m"], "unrecognized option --mlflow_tracking_url "
                                            "(did you mean --mlflow_tracking_uri?)"),
    (["--regist", "r"], "unrecognized option --regist (did you mean --registry?)"),  # no abbreviations
    (["--worker_zone", "z"], "unrecognized option --worker_zone: a Beam option outside the list `run --help` "
                             "shows: pass it after --"),
    (["--", "--wrker_zone=z"], "unrecognized Beam option --wrker_zone (did you mean --worker_zone?)"),
    (["--", "--disk_size_gb=many"], "Beam option: argument --disk_size_gb: invalid int value: 'many'"),
    (["stray"], "unexpected argument 'stray'"),
])
def test_run_refuses_what_it_does_not_know(tmp_path, capsys, argv, message):
    err = usage_error(capsys, "run", "--jobs", str(tmp_path / "j.yaml"), "--registry", str(tmp_path), *argv)
    assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "j.yaml").exists()


def test_other_commands_refuse_unknown_options_and_beam_options(capsys):
    assert "tf-bigexport inspect: error: unrecognized option --runner" in usage_error(
        capsys, "inspect", "some/dir", "--runner", "DataflowRunner")
    assert "unrecognized option --input_expr (did you mean --input_exprs?)" in usage_error(
        capsys, "call", "m/1", "--input_expr", "x=[1]")
    assert "only `run` takes Beam options after --" in usage_error(capsys, "verify", "r/m/1", "--", "--x=1")
    assert "unexpected argument 'b'" in usage_error(capsys, "inspect", "a", "b")


def every_option():
    """(command, option) for every long option of every command."""
    parser = cli.build_parser()
    for command in cli.COMMANDS:
        sub = cli.subparser(parser, command.name)
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    yield command.name, option, action


MINIMAL = {"run": ["--jobs", "j"], "demo": [], "inspect": ["p"], "call": ["p"], "verify": ["u"], "register": ["u"],
           "gc": ["u"], "convert": ["p", "--to", "pb"]}


@pytest.mark.parametrize("command, option, action", list(every_option()),
                         ids=[f"{c} {o}" for c, o, _ in every_option()])
def test_every_option_takes_both_spellings(command, option, action):
    for spelling in {option, option.replace("_", "-"), "--" + option[2:].replace("-", "_")}:
        argv = [command, *MINIMAL[command], spelling]
        if action.nargs != 0:
            argv.append(str(action.choices[-1]) if action.choices else "3")
        args = parse(*argv)
        value = getattr(args, action.dest, None)
        if command == "run" and action.dest.startswith("beam_"):
            assert any(a.startswith(f"--{action.dest[5:]}=") for a in args.run_options.beam_args)
        else:
            assert value not in (None, False, []), (spelling, value)


def test_every_option_has_help():
    for command, option, action in every_option():
        assert action.help and len(action.help) > 10, (command, option)


def test_no_beam_warning_about_discarded_args(caplog):
    import logging

    from tf_bigexport.pipeline.export import construct
    from tf_bigexport.pipeline.jobs import parse_jobs
    jobs = parse_jobs({"registry": "gs://b/m", "jobs": [{"name": "m", "factory": "a.b:c", "signatures": {
        "s": [{"name": "x", "dtype": "float32", "shape": [1]}]}}]})
    args = parse("run", "--jobs", "j", "--work_dir", "/tmp/unused", "--run_id", "r1", "--storage_options", "{}",
                 "--runner", "DirectRunner", "--direct_num_workers", "2", "--", "--direct_running_mode=multi_threading")
    with caplog.at_level(logging.WARNING):
        pipeline, resolved = construct(jobs, args.run_options)
        pipeline.options.get_all_options()
        pipeline.options.view_as(__import__("apache_beam").options.pipeline_options.DirectOptions)
    assert resolved.run_id == "r1" and resolved.work_dir == "/tmp/unused"
    assert pipeline.options.get_all_options()["direct_num_workers"] == 2
    assert "Discarding" not in caplog.text and "unparseable" not in caplog.text


def test_run_requires_jobs(capsys):
    assert "the following arguments are required: --jobs" in usage_error(capsys, "run", "--registry", "x")


def test_demo_defaults_and_verbose_anywhere():
    args = parse("demo")
    assert args.registry == cli.DEFAULT_DEMO_REGISTRY and not args.large and not args.verbose
    args = parse("demo", "--large", "--registry", "/tmp/r", "-v")
    assert args.large and args.registry == "/tmp/r" and args.verbose
    assert parse("--verbose", "inspect", "x").verbose


def test_call_accepts_saved_model_cli_spellings():
    args = parse("call", "m/1", "--signature_def", "score", "--input_exprs", "x=np.ones(2)",
                 "--inputs", "a=a.npy;b=b.npz[v]", "--input_examples", "e=[{'f': [1]}]", "--outdir", "out")
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


# ---- call and verify on saved models ---------------------------------------------------

@pytest.fixture(scope="module")
def gather_model(tmp_path_factory):
    """A model whose signature fails at run time for an out-of-range index (a runtime model error)."""
    import tensorflow as tf

    from tf_bigexport import imageformat

    class Gather(tf.Module):
        def __init__(self):
            super().__init__()
            self.table = tf.Variable([1.0, 2.0, 3.0])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="i")])
        def __call__(self, i):
            return {"value": tf.gather(self.table, i)}

    directory = str(tmp_path_factory.mktemp("gather") / "model")
    model = Gather()
    imageformat.save(model, directory, signatures={"serving_default": model.__call__.get_concrete_function()})
    return directory


def test_call_reports_runtime_model_errors_in_one_line(gather_model, capfd):
    assert cli.main(["call", gather_model, "--input-exprs", "i=np.array([1, 2], np.int32)"]) == cli.EXIT_OK
    assert "Result for output key value:" in capfd.readouterr().out
    assert cli.main(["call", gather_model, "--input-exprs", "i=np.array([7], np.int32)"]) == cli.EXIT_FAILED
    err = capfd.readouterr().err  # fd 2 itself: TensorFlow's C++ lines too
    assert err == f"call: {gather_model}: InvalidArgumentError: indices[0] = 7 is not in [0, 3)\n"
    assert cli.main(["call", gather_model, "-v", "--input-exprs", "i=np.array([7], np.int32)"]) == cli.EXIT_FAILED
    assert "Traceback" in capfd.readouterr().err  # with -v, the whole story


def test_input_exprs_errors_say_what_is_allowed(gather_model, capsys):
    assert cli.main(["call", gather_model, "--input-exprs", "i=open('/etc/passwd')"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "the name 'open' is not allowed in --input-exprs; allowed are literals" in err
    assert "np.<name> for " in err and "arange" in err and "astype" in err


def test_verify_a_model_uri_verifies_its_latest_version(tmp_path, capsys):
    from tf_bigexport import storage
    from tf_bigexport.imageformat import save
    from tf_bigexport.transforms.save import read_or_write_fingerprint
    import tensorflow as tf

    class Double(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
        def __call__(self, x):
            return x * 2

    export = tmp_path / "export"
    save(Double(), str(export))
    registry = storage.Registry(str(tmp_path / "reg"))
    info = {"fingerprint": read_or_write_fingerprint(str(export))}
    for run in ("a", "b"):
        registry.publish(str(export), "double", storage.VersionPolicy.next_integer(), info, f"double.{run}")
    assert cli.main(["verify", str(tmp_path / "reg" / "double")]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert f"{tmp_path}/reg/double: verifying the latest published version, 2 (of 2)" in out
    assert "verified: all files match the release record" in out
    assert cli.main(["verify", str(tmp_path / "reg" / "nothing")]) == cli.EXIT_FAILED
    assert "model 'nothing' has no published version" in capsys.readouterr().err


@pytest.fixture(scope="module")
def split_model(tmp_path_factory):
    """A .cpb: the demo's split model saved with a small chunk size."""
    from tf_bigexport import imageformat
    from tf_bigexport.pipeline.demo_models import split_constants
    import tensorflow as tf
    model = split_constants(count=4, size=64)
    function = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec([None, 64], tf.float32, name="x")])
    directory = str(tmp_path_factory.mktemp("split") / "model")
    imageformat.save(model, directory, signatures={"serving_default": function.get_concrete_function()},
                     max_chunk_size=8192)
    return directory


def test_inspect_summarizes_chunks_unless_asked_and_labels_offsets(split_model, capsys):
    assert cli.main(["inspect", split_model]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "Chunk layout: " in out and "(--chunks lists every chunk and split-off field)" in out
    assert "chunk    1:" not in out
    assert "MetaGraphDef with tag-set: 'serve' contains the following SignatureDefs:" in out
    assert "dtype: DT_FLOAT" in out and "shape: (-1, 64)" in out  # saved_model_cli's spelling in text
    assert cli.main(["inspect", split_model, "--chunks"]) == cli.EXIT_OK
    listed = capsys.readouterr().out
    assert re.search(r"chunk +1: (MESSAGE|BYTES) +\d+ bytes at offset \d+", listed)
    assert "at record" not in listed and "split-off fields:" in listed
    assert cli.main(["inspect", split_model, "--json"]) == cli.EXIT_OK
    layout = json.loads(capsys.readouterr().out)["chunk_layout"]
    assert "chunks" not in layout and layout["chunk_count"] > 2


def test_inspect_narrows_like_saved_model_cli_show(split_model, gather_model, capsys):
    assert cli.main(["inspect", gather_model, "--tag-set", "serve", "--signature_def", "serving_default"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("MetaGraphDef with tag-set: 'serve' contains the following SignatureDefs:")
    assert "signature_def['serving_default']:" in out and "inputs['i'] tensor_info:" in out
    assert "dtype: DT_INT32" in out and "files:" not in out and "fingerprint" not in out
    assert cli.main(["inspect", gather_model, "--tag_set", "serve", "--list_ops"]) == 0
    ops = capsys.readouterr().out
    assert "The MetaGraph with tag set ['serve'] contains the following ops: {" in ops
    assert "'ResourceGather'" in ops or "'GatherV2'" in ops
    assert cli.main(["inspect", gather_model, "--tag_set", "train"]) == cli.EXIT_USAGE
    assert "no MetaGraph with tag-set 'train'; it has 'serve'" in capsys.readouterr().err
    assert cli.main(["inspect", split_model, "--signature_def", "nope"]) == cli.EXIT_USAGE
    assert "has no signature 'nope'; it has ['__saved_model_init_op', 'serving_default']" in capsys.readouterr().err
    assert cli.main(["inspect", split_model, "--json", "--list_ops", "--tag_set", "serve"]) == 0
    [meta_graph] = json.loads(capsys.readouterr().out)["meta_graphs"]
    assert "MatMul" in meta_graph["ops"] and meta_graph["ops"] == sorted(meta_graph["ops"])
