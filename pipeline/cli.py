"""tf-bigexport command line: run, demo, inspect, call, verify, register, convert, gc.

Parsing happens here without importing TensorFlow or Beam; each command's
module is imported only when that command runs.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from tf_bigexport.pipeline.exit_codes import ExitCode

# Kept for callers of the CLI module; commands use ExitCode.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_REGISTERED = (
    ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE, ExitCode.NOT_REGISTERED)

# Command -> "module:function" that runs it, imported only when that command runs.
HANDLERS = {
    "run": "tf_bigexport.pipeline.export:run_command",
    "demo": "tf_bigexport.pipeline.demo:demo_command",
    "inspect": "tf_bigexport.pipeline.inspect_model:inspect_command",
    "call": "tf_bigexport.pipeline.call_model:call_command",
    "verify": "tf_bigexport.pipeline.verify_release:verify_command",
    "register": "tf_bigexport.pipeline.register_release:register_command",
    "gc": "tf_bigexport.pipeline.clean_registry:gc_command",
    "convert": "tf_bigexport.pipeline.convert:convert_command",
}

DEFAULT_DEMO_REGISTRY = "./registry"


def build_parser() -> argparse.ArgumentParser:
    # --verbose works before or after the command; SUPPRESS keeps a subcommand
    # from resetting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show TensorFlow/Beam logs and tracebacks")

    parser = argparse.ArgumentParser(
        prog="tf-bigexport",
        description="Export TensorFlow models (past 2 GiB too) as image-format SavedModels and publish them.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow/Beam logs and tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", parents=[common], help="run the export pipeline on a jobs file",
        description="Runs the export pipeline. Unrecognized --options are passed to Beam, e.g. "
                    "--runner DataflowRunner --project P --region R --temp_location gs://B/tmp. Our own: "
                    "--work_dir, --run_id, --outcomes_dir, --storage_options JSON, --mlflow_tracking_uri URI "
                    "(also register published versions in MLflow), --mlflow_registry_uri URI.")
    run.add_argument("--jobs", required=True, metavar="FILE", help="jobs file (YAML or JSON)")
    run.add_argument("--registry", metavar="URI", help="default registry for jobs that do not name one")

    demo = commands.add_parser("demo", parents=[common], help="export the built-in demo models")
    demo.add_argument("--registry", default=DEFAULT_DEMO_REGISTRY, metavar="DIR",
                      help=f"local registry directory (default {DEFAULT_DEMO_REGISTRY})")
    demo.add_argument("--large", action="store_true", help="also export a model whose proto is past 2 GiB")

    inspect = commands.add_parser("inspect", parents=[common],
                                  help="show tag-sets, signatures, fingerprint and chunk layout")
    inspect.add_argument("path", metavar="PATH_OR_URI", help="SavedModel directory or registry version URI")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")

    call = commands.add_parser("call", parents=[common], help="run a signature on given inputs")
    call.add_argument("path", metavar="PATH_OR_URI")
    call.add_argument("--signature", "--signature_def", dest="signature", default="serving_default",
                      metavar="KEY", help="signature key (default serving_default)")
    call.add_argument("--tag_set", default=None, help="comma-separated tags of the MetaGraph (default: serve)")
    call.add_argument("--inputs", action="append", default=[], metavar="SPEC",
                      help="key=file.npy | key=file.npz[var] | key=file.pkl; several joined by ';' or repeated")
    call.add_argument("--input-exprs", "--input_exprs", dest="input_exprs", action="append", default=[],
                      metavar="SPEC", help="key=<Python literal or np. expression>; several joined by ';'")
    call.add_argument("--input-examples", "--input_examples", dest="input_examples", action="append",
                      default=[], metavar="SPEC",
                      help="key=[{feature: [values]}, ...] -> serialized tf.train.Examples")
    call.add_argument("--outdir", metavar="DIR", help="write each output to DIR/<name>.npy")
    call.add_argument("--overwrite", action="store_true", help="allow replacing files in --outdir")

    verify = commands.add_parser("verify", parents=[common],
                                 help="re-check a published version against its release record")
    verify.add_argument("uri", metavar="URI", help="<registry>/<model>/<version>")

    register = commands.add_parser("register", parents=[common],
                                   help="register a published version in model registries (idempotent)")
    register.add_argument("uri", metavar="URI", help="<registry>/<model>/<version>")
    register.add_argument("--mlflow_tracking_uri", "--mlflow-tracking-uri", dest="mlflow_tracking_uri",
                          metavar="URI", help="MLflow tracking URI, e.g. sqlite:///mlflow.db")
    register.add_argument("--mlflow_registry_uri", "--mlflow-registry-uri", dest="mlflow_registry_uri",
                          metavar="URI", help="MLflow model registry URI (default: the tracking URI)")
    from tf_bigexport.pipeline import clean_registry
    clean_registry.add_arguments(commands.add_parser(
        "gc", parents=[common], help="list (--apply: remove) what killed runs left in a registry"))

    convert = commands.add_parser(
        "convert", parents=[common], help="convert a SavedModel or published version to .pb, .cpb or the servable form",
        description="Converts a SavedModel directory or a published version (local, gs://, s3://) to a plain "
                    "saved_model.pb (pb), the image format (cpb) or the servable form (large constants in the "
                    "checkpoint, loadable by stock TensorFlow). The result must give the source's outputs, "
                    "bitwise, before it is written or published. Exit status 5: the source cannot take that "
                    "form (nothing written or published).")
    convert.add_argument("source", metavar="PATH_OR_URI", help="SavedModel directory or <registry>/<model>/<version>")
    convert.add_argument("--to", required=True, choices=("pb", "cpb", "servable"), help="the form to convert to")
    convert.add_argument("--output", metavar="DIR", help="write the result to this new directory")
    convert.add_argument("--registry", metavar="URI", help="publish the result as a new version in this registry")
    convert.add_argument("--model", metavar="NAME", help="model name to publish under (default: the source's)")
    convert.add_argument("--version", default="next", metavar="POLICY",
                         help="version to publish: next (default), an integer, or timestamp")
    convert.add_argument("--split-threshold", "--split_threshold", dest="split_threshold", type=int,
                         metavar="BYTES", help="cpb: largest chunk (default: half the program); servable: "
                                               "constants of at least a quarter of it move (default 1 MiB)")
    convert.add_argument("--max-shard-size", "--max_shard_size", dest="max_shard_size", type=int,
                         metavar="BYTES", help="servable: checkpoint shard size (default 1 GiB)")
    return parser


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Returns (args, beam_args); only `run` accepts extra (Beam) options."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.beam_args = extra
    return args, extra


def main(argv: list[str] | None = None) -> int:
    args, _ = parse_args(sys.argv[1:] if argv is None else argv)
    from tf_bigexport.pipeline import logs
    logs.configure(args.verbose)
    from tf_bigexport.imageformat.tf_version import UnsupportedTensorFlowError
    try:
        logs.import_tensorflow(args.verbose)  # once, quietly, before any command touches it
    except UnsupportedTensorFlowError as error:
        print(f"tf-bigexport: {error}", file=sys.stderr)
        return ExitCode.ENVIRONMENT
    try:
        return _dispatch(args)
    except BrokenPipeError:  # e.g. `tf-bigexport inspect ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.FAILED


def _dispatch(args: argparse.Namespace) -> int:
    module_name, _, function_name = HANDLERS[args.command].partition(":")
    handler = getattr(importlib.import_module(module_name), function_name)
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
