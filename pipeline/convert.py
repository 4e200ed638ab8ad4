"""`convert`: a SavedModel or published version in another form.

    tf-bigexport convert SOURCE --to pb|cpb|servable (--output DIR | --registry URI [--model NAME])

SOURCE is a local SavedModel directory or a version URI (local, gs://,
s3://; object stores are read with $TF_BIGEXPORT_STORAGE_OPTIONS). The
converted model must give the same outputs as the source, bitwise, for every
signature on generated inputs before it is written to --output or published
as a new version (staging, verification and commit like `run`), whose release
record names the version it was converted from.

Exit status: 0 converted; 5 the source cannot take that form (not a
SavedModel, corrupt, merged program past 2 GiB for pb, servable form not
applicable): nothing written or published; 2 bad arguments; 1 other failures.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Iterator

import numpy as np

from tf_bigexport.pipeline.exit_codes import ExitCode, fail
from tf_bigexport.pipeline.locations import local_model_dir, open_registry, split_version_uri
from tf_bigexport.storage.uris import is_remote
from tf_bigexport.pipeline.options import new_run_id

GENERATED_BATCH = 2


def convert_command(args) -> int:
    from tf_bigexport.imageformat.conversion import NotConvertibleError
    from tf_bigexport.storage import StorageError
    if bool(args.output) == bool(args.registry):
        return fail("convert: give exactly one of --output DIR and --registry URI", ExitCode.USAGE)
    if args.output and os.path.lexists(args.output) and (not os.path.isdir(args.output) or os.listdir(args.output)):
        return fail(f"convert: {args.output}: already exists and is not an empty directory", ExitCode.USAGE)
    try:
        lines = convert_and_write(args.source, args.to, output=args.output, registry=args.registry,
                                  model=args.model, version=args.version, split_threshold=args.split_threshold,
                                  max_shard_size=args.max_shard_size)
    except (NotConvertibleError, FileNotFoundError) as error:  # no such source: nothing to convert
        return fail(f"convert: {error}", ExitCode.NOT_CONVERTIBLE)
    except (OSError, ValueError, StorageError, OutputsDiffer) as error:
        return fail(f"convert: {error}")
    print("\n".join(lines))
    return ExitCode.OK


class OutputsDiffer(RuntimeError):
    """The converted model does not reproduce the source's outputs (nothing was published)."""


def convert_and_write(source: str, to: str, *, output: str | None = None, registry: str | None = None,
                      model: str | None = None, version: str = "next", split_threshold: int | None = None,
                      max_shard_size: int | None = None) -> list[str]:
    """Converts ``source``; writes it to ``output`` or publishes it to ``registry``; returns report lines."""
    from tf_bigexport.imageformat import conversion, loadability
    origin = _origin(source)
    if registry is not None:
        model = model or origin.get("model_name")
        if not model:
            raise ValueError(f"{source}: not a <registry>/<model>/<version> URI; name the model with --model")
    with local_model_dir(source) as source_dir, _scratch(output) as target:
        after = conversion.convert(source_dir, target, to, split_threshold=split_threshold,
                                   max_shard_size=max_shard_size)  # also refuses a bad source
        before = loadability.describe(source_dir)
        inputs, expected = signature_outputs(source_dir, None)
        _, actual = signature_outputs(target, inputs)
        differing = sorted(key for key in expected if not _bitwise_equal(actual.get(key), expected[key]))
        if differing or sorted(actual) != sorted(expected):
            raise OutputsDiffer(f"{source}: the {to} conversion does not reproduce the source's outputs "
                                f"({', '.join(differing) or 'other output names'}); nothing was written")
        lines = [f"converted {source} ({before.program_file}, {before.form}) to {to}: {after.reason}",
                 f"outputs of every signature ({len(expected)} tensors) equal the source's, bitwise"]
        if registry is None:
            os.replace(target, output)
            return lines + [f"written to {output}"]
        record = _publish(target, registry, model, version, after, origin)
        return lines + [f"published {record.uri} (converted from {origin['uri']})"]


@contextlib.contextmanager
def _scratch(output: str | None) -> Iterator[str]:
    """Where the conversion is built and checked: next to ``output`` (then renamed
    into place), or in a temp dir to publish from."""
    parent = os.path.dirname(os.path.abspath(output)) if output is not None else None
    if parent is not None:
        os.makedirs(parent, exist_ok=True)
        if os.path.isdir(output):
            os.rmdir(output)  # empty (checked by the command): replaced by the result
    with tempfile.TemporaryDirectory(prefix=".tf-bigexport-convert-", dir=parent) as scratch:
        yield os.path.join(scratch, "converted")


def _origin(source: str) -> dict[str, Any]:
    """What the release record says the new version was converted from."""
    from tf_bigexport import storage
    origin: dict[str, Any] = {"uri": source}
    try:
        registry_uri, model, version = split_version_uri(source)
    except ValueError:
        return origin
    if not is_remote(source) and not os.path.isdir(registry_uri):
        return origin
    try:
        record = open_registry(registry_uri).read_release_record(model, version)
    except storage.StorageError:
        return origin  # a directory laid out like a version, without a release record
    origin.update(uri=record.uri, model_name=model, version=version,
                  fingerprint=(record.fingerprint or {}).get("singleprint"),
                  loadable_by_stock_tensorflow=record.loadable_by_stock_tensorflow)
    return origin


def _publish(local_dir: str, registry_uri: str, model: str, version: str, after: Any, origin: dict[str, Any]) -> Any:
    import tensorflow as tf

    from tf_bigexport import storage
    from tf_bigexport.transforms.fingerprint import read_or_write_fingerprint
    registry = open_registry(registry_uri)
    release_info = {
        "fingerprint": read_or_write_fingerprint(local_dir),
        "signatures": signature_summary(local_dir),
        "tensorflow_version": tf.__version__,
        **after.to_dict(),
        "converted_from": origin,
    }
    return registry.publish(local_dir, model, storage.VersionPolicy.parse(version), release_info,
                            job_key=f"{model}.convert-{new_run_id()}")


def _signature_defs(model_dir: str) -> dict[str, Any]:
    from tf_bigexport.imageformat import chunked
    saved_model = chunked.read_saved_model(model_dir, skip_large_constants=True)
    meta_graph = next((mg for mg in saved_model.meta_graphs if "serve" in mg.meta_info_def.tags),
                      saved_model.meta_graphs[0])
    return {key: meta_graph.signature_def[key] for key in sorted(meta_graph.signature_def)
            if not key.startswith("__")}


def signature_summary(model_dir: str) -> dict[str, Any]:
    """Signature key -> inputs/outputs (name -> dtype, shape), as `run` records them."""
    from tf_bigexport.pipeline.inspect_model import tensor_spec
    return {key: {"inputs": {n: tensor_spec(i) for n, i in sorted(sig.inputs.items())},
                  "outputs": {n: tensor_spec(i) for n, i in sorted(sig.outputs.items())}}
            for key, sig in _signature_defs(model_dir).items()}


def signature_outputs(model_dir: str, inputs: dict[str, np.ndarray] | None
                      ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(inputs, outputs) "<signature>/<name>" of every signature; inputs generated if None."""
    import tensorflow as tf

    from tf_bigexport import imageformat
    from tf_bigexport.imageformat.conversion import NotConvertibleError
    from tf_bigexport.pipeline.jobs import TensorSpecDecl
    from tf_bigexport.pipeline.sample_inputs import generate
    signatures = signature_summary(model_dir)
    if inputs is None:
        rng = np.random.default_rng(0)
        inputs = {f"{key}/{name}": generate(rng, TensorSpecDecl(name, spec["dtype"], tuple(spec["shape"] or ())),
                                            GENERATED_BATCH)
                  for key, sig in signatures.items() for name, spec in sig["inputs"].items()}
    if not signatures:
        return inputs, {}
    try:
        loaded = imageformat.load(model_dir)
    except (OSError, ValueError) as error:
        raise NotConvertibleError(f"{model_dir}: cannot be loaded: {str(error).splitlines()[0]}") from None
    outputs = {}
    for key in signatures:
        feeds = {name.split("/", 1)[1]: tf.constant(value) for name, value in inputs.items()
                 if name.split("/", 1)[0] == key}
        for name, value in loaded.signatures[key](**feeds).items():
            outputs[f"{key}/{name}"] = value.numpy()
    return inputs, outputs


def _bitwise_equal(actual: np.ndarray | None, expected: np.ndarray) -> bool:
    if actual is None or actual.dtype != expected.dtype or actual.shape != expected.shape:
        return False
    if expected.dtype.kind in "OSU":
        return actual.tolist() == expected.tolist()
    return actual.tobytes() == expected.tobytes()
