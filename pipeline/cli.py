"""tf-bigexport command line: run, demo, inspect, call, verify, register, convert, gc.

Parsing happens here without importing TensorFlow or Beam; each command's
module is imported only when that command runs. Parsing is strict: an
option nobody knows is an error with a "did you mean", never ignored, and
every option may be written with `-` or `_`.

A new command is one more entry in COMMANDS: its name, help, the function
adding its arguments, and the "module:function" that runs it.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
from typing import Callable

from tf_bigexport.pipeline.argparsing import StrictParser, UsageError, canonical, refuse_extras, typed_spellings
from tf_bigexport.pipeline.exit_codes import ExitCode, fail

# Kept for callers of the CLI module; commands use ExitCode.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_REGISTERED = (
    ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE, ExitCode.NOT_REGISTERED)

DEFAULT_DEMO_REGISTRY = "./registry"
PROG = "tf-bigexport"


@dataclasses.dataclass(frozen=True)
class Command:
    name: str
    help: str
    handler: str  # "module:function(args) -> int", imported when the command runs
    add_arguments: Callable[[argparse.ArgumentParser], None]
    description: str | None = None
    # Import TensorFlow quietly before the handler runs (its C++ start-up lines otherwise reach stderr).
    uses_tensorflow: bool = True


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    from tf_bigexport.pipeline.options import add_run_options
    parser.add_argument("--jobs", required=True, metavar="FILE", help="jobs file (YAML or JSON, see docs/jobs.md)")
    parser.add_argument("--registry", metavar="URI", help="default registry for jobs that do not name one")
    add_run_options(parser)


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", default=DEFAULT_DEMO_REGISTRY, metavar="DIR",
                        help=f"local registry directory (default {DEFAULT_DEMO_REGISTRY})")
    parser.add_argument("--large", action="store_true",
                        help="also export a model whose proto is past 2 GiB (about 3 minutes and 12 GiB of RAM)")


def _inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH_OR_URI", help="SavedModel directory or registry version URI")
    parser.add_argument("--tag_set", metavar="TAGS",
                        help="only the MetaGraph with these comma-separated tags, e.g. serve")
    parser.add_argument("--signature_def", metavar="KEY", help="only this signature (of each MetaGraph shown)")
    parser.add_argument("--list_ops", action="store_true", help="list the ops each MetaGraph uses")
    parser.add_argument("--chunks", action="store_true",
                        help="list every chunk of a .cpb and the fields split off into them (else a summary)")
    parser.add_argument("--json", action="store_true",
                        help="machine-readable output (dtypes and shapes as in the release record)")
    parser.add_argument("--job", action="store_true",
                        help="print a jobs file that publishes this SavedModel with its signatures (saved_model:)")


def _call_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH_OR_URI", help="SavedModel directory or registry version URI")
    parser.add_argument("--signature", "--signature_def", dest="signature", default="serving_default",
                        metavar="KEY", help="signature key (default serving_default)")
    parser.add_argument("--tag_set", default=None, metavar="TAGS",
                        help="comma-separated tags of the MetaGraph (default: serve)")
    parser.add_argument("--inputs", action="append", default=[], metavar="SPEC",
                        help="key=file.npy | key=file.npz[var] | key=file.pkl; several joined by ';' or repeated")
    parser.add_argument("--input_exprs", action="append", default=[], metavar="SPEC",
                        help="key=<Python literal or np. expression>; several joined by ';'")
    parser.add_argument("--input_examples", action="append", default=[], metavar="SPEC",
                        help="key=[{feature: [values]}, ...] -> serialized tf.train.Examples")
    parser.add_argument("--outdir", metavar="DIR", help="write each output to DIR/<name>.npy")
    parser.add_argument("--overwrite", action="store_true", help="allow replacing files in --outdir")


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("uri", metavar="URI",
                        help="<registry>/<model>/<version>, or <registry>/<model> for its latest version")


def _register_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("uri", metavar="URI", help="<registry>/<model>/<version>")
    parser.add_argument("--mlflow_tracking_uri", metavar="URI",
                        help="MLflow tracking URI, e.g. sqlite:///mlflow.db")
    parser.add_argument("--mlflow_registry_uri", metavar="URI",
                        help="MLflow model registry URI (default: the tracking URI)")


def _gc_arguments(parser: argparse.ArgumentParser) -> None:
    from tf_bigexport.pipeline import clean_registry
    clean_registry.add_arguments(parser)


def _convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="PATH_OR_URI", help="SavedModel directory or <registry>/<model>/<version>")
    parser.add_argument("--to", required=True, choices=("pb", "cpb", "servable"), metavar="FORM",
                        help="the form to convert to: pb, cpb or servable")
    parser.add_argument("--output", metavar="DIR", help="write the result to this new directory")
    parser.add_argument("--registry", metavar="URI", help="publish the result as a new version in this registry")
    parser.add_argument("--model", metavar="NAME", help="model name to publish under (default: the source's)")
    parser.add_argument("--version", default="next", metavar="POLICY",
                        help="version to publish: next (default), an integer, or timestamp")
    parser.add_argument("--split_threshold", type=int, metavar="BYTES",
                        help="cpb: largest chunk (default: half the program); servable: constants of at least "
                             "a quarter of it move (default 1 MiB)")
    parser.add_argument("--max_shard_size", type=int, metavar="BYTES",
                        help="servable: checkpoint shard size (default 1 GiB)")


COMMANDS: tuple[Command, ...] = (
    Command("run", "run the export pipeline on a jobs file", "tf_bigexport.pipeline.export:run_command",
            _run_arguments, uses_tensorflow=False,
            description="Runs the export pipeline on a jobs file. Options not listed here are refused; Beam "
                        "options outside the list go after --."),
    Command("demo", "export the built-in demo models", "tf_bigexport.pipeline.demo:demo_command",
            _demo_arguments, uses_tensorflow=False),
    Command("inspect", "show tag-sets, signatures, fingerprint and chunk layout",
            "tf_bigexport.pipeline.inspect_model:inspect_command", _inspect_arguments),
    Command("call", "run a signature on given inputs", "tf_bigexport.pipeline.call_model:call_command",
            _call_arguments),
    Command("verify", "re-check a published version against its release record",
            "tf_bigexport.pipeline.verify_release:verify_command", _verify_arguments),
    Command("register", "register a published version in model registries (idempotent)",
            "tf_bigexport.pipeline.register_release:register_command", _register_arguments,
            uses_tensorflow=False),
    Command("gc", "list (--apply: remove) what killed runs left in a registry",
            "tf_bigexport.pipeline.clean_registry:gc_command", _gc_arguments, uses_tensorflow=False),
    Command("convert", "convert a SavedModel or published version to .pb, .cpb or the servable form",
            "tf_bigexport.pipeline.convert:convert_command", _convert_arguments,
            description="Converts a SavedModel directory or a published version (local, gs://, s3://) to a plain "
                        "saved_model.pb (pb), the image format (cpb) or the servable form (large constants in the "
                        "checkpoint, loadable by stock TensorFlow). The result must give the source's outputs, "
                        "bitwise, before it is written or published. Exit status 5: the source cannot take that "
                        "form (nothing written or published)."),
)
_BY_NAME = {c.name: c for c in COMMANDS}


def build_parser() -> StrictParser:
    # --verbose works before or after the command; SUPPRESS keeps a subcommand
    # from resetting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show TensorFlow/Beam logs and tracebacks")
    parser = StrictParser(
        prog=PROG,
        description="Export TensorFlow models (past 2 GiB too) as image-format SavedModels and publish them. "
                    "Options may be written with - or _ (--tag-set or --tag_set).")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow/Beam logs and tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, parents=[common], help=command.help,
                                  description=command.description or command.help[:1].upper() + command.help[1:])
        command.add_arguments(sub)
    return parser


def subparser(parser: argparse.ArgumentParser, name: str) -> StrictParser:
    return parser._subparsers._group_actions[0].choices[name]  # noqa: SLF001


def parse_args(argv: list[str], *, beam_options_anywhere: bool = False) -> argparse.Namespace:
    """Parsed arguments; for `run` also ``args.run_options`` (pipeline.options.RunOptions).

    Raises UsageError for anything it cannot take. ``beam_options_anywhere``
    (the Flex Template entry point, called by Dataflow's launcher) accepts any
    option Beam knows before `--` as well; ones Beam does not know are dropped
    with a warning there, since the launcher, not a user, chose them.
    """
    head, tail = StrictParser.split_tail(list(argv))
    parser = build_parser()
    args, extras = parser.parse_known_args([canonical(a) for a in head])
    sub = subparser(parser, args.command)
    typed = typed_spellings(head)
    if args.command != "run":
        if tail:
            raise UsageError("only `run` takes Beam options after --", prog=sub.prog)
        refuse_extras(extras, sub.option_strings(), sub.prog, typed=typed)
        return args
    from tf_bigexport.pipeline.options import check_beam_args, run_options_from
    if beam_options_anywhere:
        tail = check_beam_args(extras, unknown="warn") + tail
        extras = []
    refuse_extras(extras, sub.option_strings(), sub.prog, hint=_beam_hints(extras), typed=typed)
    args.run_options = run_options_from(args, tail)
    return args


def _beam_hints(extras: list[str]) -> dict[str, str]:
    """For options Beam knows but `run` does not list: say where they go."""
    names = [e.partition("=")[0] for e in extras if e.startswith("--")]
    if not names:
        return {}
    from tf_bigexport.pipeline.options import beam_parser
    beam_known = {s for a in beam_parser()._actions for s in a.option_strings}  # noqa: SLF001
    return {n: f"a Beam option outside the list `run --help` shows: pass it after --, e.g. "
               f"`{PROG} run --jobs FILE -- {n}=VALUE`" for n in names if n in beam_known}


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        prog = e.prog or PROG
        return fail(f"{prog}: error: {e}\n(see `{prog} --help`)", ExitCode.USAGE)
    from tf_bigexport.pipeline import logs
    logs.configure(args.verbose)
    command = _BY_NAME[args.command]
    from tf_bigexport.imageformat import tf_version
    try:
        if command.uses_tensorflow:
            logs.import_tensorflow(args.verbose)  # once, quietly, before the command touches it
        else:  # TensorFlow runs in the command's child processes: check the installed one without importing it
            tf_version.check_installed()
    except tf_version.UnsupportedTensorFlowError as error:
        return fail(f"tf-bigexport: {error}", ExitCode.ENVIRONMENT)
    try:
        module_name, _, function_name = command.handler.partition(":")
        return getattr(importlib.import_module(module_name), function_name)(args)
    except BrokenPipeError:  # e.g. `tf-bigexport inspect ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.FAILED


if __name__ == "__main__":
    sys.exit(main())
