"""Export job specs: the jobs file schema and its validation (sample arrays: sample_inputs.py).

A jobs file is YAML or JSON. Top level (unknown keys are rejected)::

    registry: gs://bucket/models      # optional default for every job
    jobs:                             # required, non-empty list
      - name: resnet                  # model name: 1-128 of [A-Za-z0-9._-], no '..'
        factory: my_pkg.models:build  # "package.module:function" -> tf.Module or Keras model
        # saved_model: ./trained/resnet  # or, instead of factory: a SavedModel to publish (path or URI)
        factory_kwargs: {width: 64}   # optional keyword arguments for the factory
        checkpoint: /ckpt/model-100   # optional tf.train.Checkpoint prefix restored into the model
        signatures:                   # required, signature key -> list of TensorSpecs
          serving_default:            #   (the model's __call__, or a saved_model's own signature, is traced) ...
            - {name: images, dtype: float32, shape: [null, 96, 96, 3]}
          classify:                   # ... or {method, inputs[, inputs_as]} to trace another method
            method: classify
            inputs:
              - {name: images, dtype: float32, shape: [null, 96, 96, 3]}
            inputs_as: auto           # auto (as the model takes them) | positional | list | dict
        sample_inputs:                # optional, signature key -> one of:
          serving_default: {generate: {seed: 0, batch: 2}}   # seeded random values
          classify: samples/cls.npz                          # .npz whose keys are the input names
          # or {images: inputs/x.npy} / {images: [[...]]}    # per input: .npy path or inline list
        split_threshold: 1073741824   # bytes; proto chunks stay below this (default 1 GiB, < 2 GiB)
        max_shard_size: 1073741824    # bytes per checkpoint shard (default 1 GiB)
        format: auto                  # auto | servable | image: how large constants are stored (docs/jobs.md)
        version: next                 # "next" | integer >= 1 | "timestamp"
        registry: gs://other/models   # optional; else the file's registry, else --registry
        tags: {team: vision}          # optional string labels stored in the release record
        serving_warmup: true          # optional: sample inputs as TF Serving warmup requests (default false)
        trace_timeout: 3600           # seconds the factory, tracing and golden outputs may take (default 1 h)

Relative paths (checkpoint, .npy/.npz) are resolved against the jobs file's directory.
Every error names the file, the job and the field, e.g.
``jobs.yaml: job 'resnet' field 'signatures.serving_default[0].dtype': unknown dtype 'flaot32'``.
See docs/jobs.md for the full description.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from tf_bigexport.pipeline.jobs_reader import JobsReadError, read_document
from tf_bigexport.pipeline.sample_inputs import SampleProblems, load_samples
from tf_bigexport.storage import is_uri, uri_problem
from tf_bigexport.storage.names import MODEL_NAME_RULE, VERSION_RULE, model_name_problem, parse_version
from tf_bigexport.suggestions import did_you_mean
from tf_bigexport.transforms.elements import DEFAULT_TRACE_TIMEOUT, SAVED_SIGNATURE

DEFAULT_SPLIT_THRESHOLD = 1 << 30
DEFAULT_MAX_SHARD_SIZE = 1 << 30
# Protobuf refuses messages of 2 GiB and more; a chunk must stay below that.
MAX_SPLIT_THRESHOLD = (1 << 31) - 1
DEFAULT_METHOD = "__call__"
# servable: large captured constants in the checkpoint, a plain saved_model.pb stock TensorFlow
# loads; image: constants in the program, saved_model.cpb when it must be split; auto: servable
# when large constants are the only reason to split, image otherwise.
FORMATS = ("auto", "servable", "image")
DEFAULT_FORMAT = "auto"
MAX_TRACE_TIMEOUT = 7 * 24 * 3600

DTYPES = frozenset({
    "float16", "bfloat16", "float32", "float64", "half", "float", "double",
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "bool", "string", "complex64", "complex128",
})
_DTYPE_ALIASES = {"half": "float16", "float": "float32", "double": "float64"}

# Matched whole (fullmatch) over ASCII only, like storage.names: `$` would accept a
# trailing newline and \w letters of every script.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}", re.ASCII)
_SIGNATURE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}", re.ASCII)
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_FACTORY = re.compile(rf"(?=.{{1,256}}\Z){_DOTTED}:{_DOTTED}", re.ASCII | re.DOTALL)

_TOP_FIELDS = {"jobs", "registry"}
_JOB_FIELDS = {"name", "factory", "saved_model", "factory_kwargs", "checkpoint", "signatures", "sample_inputs",
               "split_threshold", "max_shard_size", "format", "version", "registry", "tags",
               "trace_timeout", "serving_warmup"}
_SPEC_FIELDS = {"name", "dtype", "shape"}
_SIGNATURE_FIELDS = {"method", "inputs", "inputs_as"}
INPUTS_AS = ("auto", "positional", "list", "dict")
_GENERATE_FIELDS = {"seed", "batch"}


class JobsFileError(ValueError):
    """A jobs file failed validation; ``problems`` holds one line per error."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclasses.dataclass(frozen=True)
class TensorSpecDecl:
    name: str
    dtype: str
    shape: tuple[int | None, ...]


@dataclasses.dataclass(frozen=True)
class SignatureDecl:
    key: str
    method: str
    inputs: tuple[TensorSpecDecl, ...]
    inputs_as: str = "auto"


@dataclasses.dataclass(frozen=True)
class GenerateDecl:
    seed: int
    batch: int


@dataclasses.dataclass(frozen=True)
class SampleInputsDecl:
    """Exactly one of ``generate``, ``npz_path``, ``per_input`` is set."""
    generate: GenerateDecl | None = None
    npz_path: str | None = None
    # input name -> absolute .npy path (str) or an inline nested list
    per_input: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class JobSpec:
    name: str
    factory: str | None  # None when the job publishes a saved_model
    signatures: tuple[SignatureDecl, ...]
    # An existing SavedModel (local path or URI) loaded instead of calling a factory.
    saved_model: str | None = None
    factory_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    checkpoint: str | None = None
    sample_inputs: Mapping[str, SampleInputsDecl] = dataclasses.field(default_factory=dict)
    split_threshold: int = DEFAULT_SPLIT_THRESHOLD
    max_shard_size: int = DEFAULT_MAX_SHARD_SIZE
    format: str = DEFAULT_FORMAT
    version: str = "next"
    registry: str | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    trace_timeout: float = DEFAULT_TRACE_TIMEOUT
    # Write the sample inputs as TensorFlow Serving's warmup requests (imageformat/serving_warmup.py).
    serving_warmup: bool = False
    source: str = "<jobs>"
    # The jobs file's directory: relative paths and factory modules are looked up there.
    base_dir: str | None = None
    # The job exactly as written, for the release record's job_spec_sha256.
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # signature key -> input name -> array, loaded and checked at validation
    sample_arrays: Mapping[str, Mapping[str, np.ndarray]] = dataclasses.field(default_factory=dict)

    @property
    def spec_sha256(self) -> str:
        text = json.dumps(self.raw, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def signature(self, key: str) -> SignatureDecl:
        for sig in self.signatures:
            if sig.key == key:
                return sig
        raise KeyError(key)


class _Problems:
    """Collects errors in the "file: job 'x' field 'y': reason" form."""

    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []

    def add(self, job: str | None, field: str | None, reason: str) -> None:
        where = self.source
        if job is not None:
            where += f": job {job!r}"
        if field:
            where += f" field {field!r}" if job is not None else f": field {field!r}"
        self.lines.append(f"{where}: {reason}")

    def unknown_fields(self, job: str | None, mapping: Mapping, known, prefix: str = "") -> bool:
        """One line per key of ``mapping`` outside ``known``; True if there was any."""
        extra = sorted(set(mapping) - set(known), key=str)
        for key in extra:
            self.add(job, f"{prefix}{key}", f"unknown field{did_you_mean(key, known)}")
        return bool(extra)


def load_jobs_file(path: str | os.PathLike, default_registry: str | None = None) -> list[JobSpec]:
    """Reads and validates a YAML/JSON jobs file; raises JobsFileError listing every problem.

    Reading is bounded (jobs_reader: size, depth, integers, no aliases or
    duplicate keys), and sample inputs are loaded and checked against their
    signatures, so every problem surfaces here, before any work.
    """
    path = os.fspath(path)
    source = os.path.basename(path)
    try:
        document = read_document(path)
    except JobsReadError as e:
        raise JobsFileError([f"{source}: {e}"]) from None
    return parse_jobs(document, source=source, base_dir=os.path.dirname(os.path.abspath(path)),
                      default_registry=default_registry)


def parse_jobs(document: Any, *, source: str = "<jobs>", base_dir: str = ".",
               default_registry: str | None = None) -> list[JobSpec]:
    """Validates an already-parsed jobs document (see the module docstring)."""
    problems = _Problems(source)
    if not isinstance(document, Mapping):
        problems.add(None, None, f"top level must be a mapping with a 'jobs' list, got {_kind(document)}")
        raise JobsFileError(problems.lines)
    problems.unknown_fields(None, document, _TOP_FIELDS)
    file_registry = document.get("registry")
    if file_registry is not None and not _nonempty_str(file_registry):
        problems.add(None, "registry", "must be a non-empty string (a URI or directory)")
        file_registry = None
    raw_jobs = document.get("jobs")
    if not isinstance(raw_jobs, list) or not raw_jobs:
        problems.add(None, "jobs", f"must be a non-empty list of jobs, got {_kind(raw_jobs)}")
        raise JobsFileError(problems.lines)

    jobs: list[JobSpec] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_jobs):
        job = _parse_job(raw, index, problems, base_dir, file_registry or default_registry, source)
        if job is None:
            continue
        if job.name in seen:
            problems.add(job.name, "name", f"duplicate model name (also job #{seen[job.name]})")
        seen[job.name] = index
        jobs.append(job)
    if problems.lines:
        raise JobsFileError(problems.lines)
    return jobs


def _parse_job(raw: Any, index: int, problems: _Problems, base_dir: str,
               default_registry: str | None, source: str) -> JobSpec | None:
    label = f"#{index}"
    if not isinstance(raw, Mapping):
        problems.add(label, None, f"a job must be a mapping, got {_kind(raw)}")
        return None
    before = len(problems.lines)
    name = raw.get("name")
    if not _nonempty_str(name):
        problems.add(label, "name", "required: the model name (a non-empty string)")
    elif model_name_problem(name):
        problems.add(name, "name", f"use {MODEL_NAME_RULE} (it becomes a directory name)")
    else:
        label = name
    problems.unknown_fields(label, raw, _JOB_FIELDS)

    factory, saved_model = _parse_source(raw, label, problems, base_dir)

    factory_kwargs = raw.get("factory_kwargs", {}) or {}
    if not isinstance(factory_kwargs, Mapping) or not all(isinstance(k, str) for k in factory_kwargs):
        problems.add(label, "factory_kwargs", "must be a mapping of keyword argument names to values")
        factory_kwargs = {}

    checkpoint = raw.get("checkpoint")
    if checkpoint is not None:
        if not _nonempty_str(checkpoint):
            problems.add(label, "checkpoint", "must be a checkpoint path prefix (string)")
            checkpoint = None
        else:
            checkpoint = _resolve(checkpoint, base_dir)

    signatures = _parse_signatures(raw.get("signatures"), label, problems,
                                   SAVED_SIGNATURE if saved_model else DEFAULT_METHOD)
    sample_inputs = _parse_sample_inputs(raw.get("sample_inputs"), signatures, label, problems, base_dir)
    split_threshold = _parse_size(raw, "split_threshold", DEFAULT_SPLIT_THRESHOLD, label, problems,
                                  maximum=MAX_SPLIT_THRESHOLD)
    max_shard_size = _parse_size(raw, "max_shard_size", DEFAULT_MAX_SHARD_SIZE, label, problems)
    version = _parse_version(raw.get("version", "next"), label, problems)
    saved_format = raw.get("format", DEFAULT_FORMAT)
    if saved_format not in FORMATS:
        problems.add(label, "format", f"must be one of {', '.join(FORMATS)}, got {saved_format!r}"
                                      f"{did_you_mean(saved_format, FORMATS)}")
    trace_timeout = raw.get("trace_timeout", DEFAULT_TRACE_TIMEOUT)
    if not isinstance(trace_timeout, (int, float)) or isinstance(trace_timeout, bool) \
            or not 0 < trace_timeout <= MAX_TRACE_TIMEOUT:
        problems.add(label, "trace_timeout", f"must be a number of seconds in (0, {MAX_TRACE_TIMEOUT}], "
                                             f"got {trace_timeout!r}")
        trace_timeout = DEFAULT_TRACE_TIMEOUT

    serving_warmup = raw.get("serving_warmup", False)
    if not isinstance(serving_warmup, bool):
        problems.add(label, "serving_warmup", f"must be true or false, got {serving_warmup!r}")
        serving_warmup = False
    elif serving_warmup and not sample_inputs and signatures:
        problems.add(label, "serving_warmup", "needs sample_inputs: the warmup requests are made from them")

    registry = raw.get("registry", default_registry)
    if registry is None:
        problems.add(label, "registry", "no registry: set it on the job, at the top of the file, or pass --registry")
    elif not _nonempty_str(registry):
        problems.add(label, "registry", "must be a non-empty string (a URI or directory)")
    elif unusable := uri_problem(registry):  # the storage layer's own rule, checked before any job runs
        problems.add(label, "registry", unusable)

    tags = raw.get("tags", {}) or {}
    if not isinstance(tags, Mapping):
        problems.add(label, "tags", f"must be a mapping of strings, got {_kind(tags)}")
        tags = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
            problems.add(label, f"tags.{key}", "tag keys must be strings and values scalars")
    tags = {str(k): str(v) for k, v in tags.items()}

    if len(problems.lines) > before:
        return None
    job = JobSpec(name=name, factory=factory, saved_model=saved_model, factory_kwargs=dict(factory_kwargs),
                  checkpoint=checkpoint,
                  signatures=signatures, sample_inputs=sample_inputs, split_threshold=split_threshold,
                  max_shard_size=max_shard_size, format=saved_format, version=version, registry=registry, tags=tags,
                  trace_timeout=float(trace_timeout), serving_warmup=serving_warmup, source=source,
                  base_dir=base_dir, raw=dict(raw))
    arrays = {}
    for key in sample_inputs:
        try:
            arrays[key] = _load_samples_of(job, key)
        except JobsFileError as e:
            problems.lines += e.problems
    if len(problems.lines) > before:
        return None
    return dataclasses.replace(job, sample_arrays=arrays)


def _parse_source(raw: Mapping, label: str, problems: _Problems, base_dir: str) -> tuple[str | None, str | None]:
    """(factory, saved_model): where the model comes from, exactly one of the two."""
    factory, saved_model = raw.get("factory"), raw.get("saved_model")
    if saved_model is not None:
        if factory is not None:
            problems.add(label, "saved_model", "give either factory or saved_model, not both")
        elif not _nonempty_str(saved_model):
            problems.add(label, "saved_model", "must be a SavedModel directory (a path or URI)")
        for field, why in (("factory_kwargs", "there is no factory to pass them to"),
                           ("checkpoint", "a SavedModel carries its own variables")):
            if field in raw:
                problems.add(label, field, f"does not go with saved_model: {why}")
        return None, _resolve(saved_model, base_dir) if _nonempty_str(saved_model) else None
    if not _nonempty_str(factory):
        problems.add(label, "factory", "required: 'package.module:function' (or saved_model: a SavedModel to publish)")
    elif not _FACTORY.fullmatch(factory):
        problems.add(label, "factory", f"{factory!r} is not of the form 'package.module:function'")
    return factory, None


def _parse_signatures(raw: Any, label: str, problems: _Problems, default_method: str) -> tuple[SignatureDecl, ...]:
    if not isinstance(raw, Mapping) or not raw:
        problems.add(label, "signatures", "required: a mapping of signature key -> list of TensorSpecs")
        return ()
    out = []
    for key, body in raw.items():
        field = f"signatures.{key}"
        if not isinstance(key, str) or not _SIGNATURE_KEY.fullmatch(key):
            problems.add(label, field, "signature keys must be 1-128 of [A-Za-z0-9_.-], starting with a letter or _")
            continue
        method = default_method
        inputs_as = "auto"
        specs_field = field
        if isinstance(body, Mapping):
            problems.unknown_fields(label, body, _SIGNATURE_FIELDS, f"{field}.")
            method = body.get("method", default_method)
            if not isinstance(method, str) or not (method == DEFAULT_METHOD or _IDENTIFIER.fullmatch(method)):
                problems.add(label, f"{field}.method", f"must be a method name, got {method!r}")
                method = default_method
            inputs_as = body.get("inputs_as", "auto")
            if inputs_as not in INPUTS_AS:
                problems.add(label, f"{field}.inputs_as", f"must be one of {', '.join(INPUTS_AS)}, got "
                                                          f"{inputs_as!r}{did_you_mean(inputs_as, INPUTS_AS)}")
                inputs_as = "auto"
            elif method == SAVED_SIGNATURE and inputs_as != "auto":
                problems.add(label, f"{field}.inputs_as", "a saved signature takes its inputs by name: leave it out")
            specs_field = f"{field}.inputs"
            body = body.get("inputs")
        if not isinstance(body, list):
            problems.add(label, specs_field, f"must be a list of TensorSpecs {{name, dtype, shape}}, got {_kind(body)}")
            continue
        specs = [_parse_spec(s, f"{specs_field}[{i}]", label, problems) for i, s in enumerate(body)]
        names = [s.name for s in specs if s is not None]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.add(label, specs_field, f"input name {dup!r} appears more than once")
        if all(s is not None for s in specs):
            out.append(SignatureDecl(key=key, method=method, inputs=tuple(specs), inputs_as=inputs_as))
    return tuple(out)


def _parse_spec(raw: Any, field: str, label: str, problems: _Problems) -> TensorSpecDecl | None:
    if not isinstance(raw, Mapping):
        problems.add(label, field, f"must be a mapping {{name, dtype, shape}}, got {_kind(raw)}")
        return None
    ok = not problems.unknown_fields(label, raw, _SPEC_FIELDS, f"{field}.")
    name = raw.get("name")
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        problems.add(label, f"{field}.name", f"must be an identifier, got {name!r}")
        ok = False
    dtype = raw.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        problems.add(label, f"{field}.dtype", f"unknown dtype {dtype!r}{did_you_mean(dtype, DTYPES)}")
        ok = False
    shape = raw.get("shape")
    if not isinstance(shape, list) or not all(
            d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in shape):
        problems.add(label, f"{field}.shape", f"must be a list of sizes >= 0 or null, got {shape!r}")
        ok = False
    if not ok:
        return None
    return TensorSpecDecl(name=name, dtype=_DTYPE_ALIASES.get(dtype, dtype), shape=tuple(shape))


def _parse_sample_inputs(raw: Any, signatures: tuple[SignatureDecl, ...], label: str,
                         problems: _Problems, base_dir: str) -> dict[str, SampleInputsDecl]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.add(label, "sample_inputs", f"must map signature keys to sample inputs, got {_kind(raw)}")
        return {}
    declared = {s.key: s for s in signatures}
    out = {}
    for key, body in raw.items():
        field = f"sample_inputs.{key}"
        signature = declared.get(key)
        if signature is None:
            problems.add(label, field, f"no such signature{did_you_mean(key, declared)}")
            continue
        if isinstance(body, str):
            if not body.endswith(".npz"):
                problems.add(label, field, f"a path here must be an .npz file, got {body!r}")
                continue
            out[key] = SampleInputsDecl(npz_path=_resolve(body, base_dir))
        elif isinstance(body, Mapping) and "generate" in body:
            if len(body) != 1:
                problems.add(label, field, "'generate' cannot be combined with other keys")
                continue
            gen = body["generate"] or {}
            if not isinstance(gen, Mapping):
                problems.add(label, f"{field}.generate", "must be a mapping {seed, batch}")
                continue
            problems.unknown_fields(label, gen, _GENERATE_FIELDS, f"{field}.generate.")
            seed, batch = gen.get("seed", 0), gen.get("batch", 1)
            if not _is_int(seed) or seed < 0:
                problems.add(label, f"{field}.generate.seed", f"must be an integer >= 0, got {seed!r}")
            elif not _is_int(batch) or batch < 1:
                problems.add(label, f"{field}.generate.batch", f"must be an integer >= 1, got {batch!r}")
            else:
                out[key] = SampleInputsDecl(generate=GenerateDecl(seed=seed, batch=batch))
        elif isinstance(body, Mapping):
            names = {s.name for s in signature.inputs}
            per_input: dict[str, Any] = {}
            for name in sorted(set(body) - names, key=str):
                problems.add(label, f"{field}.{name}", f"not an input of signature {key!r}{did_you_mean(name, names)}")
            for name in sorted(names - set(body)):
                problems.add(label, f"{field}.{name}", "missing: every input needs a sample value")
            for name, value in body.items():
                if isinstance(value, str):
                    if not value.endswith(".npy"):
                        problems.add(label, f"{field}.{name}", f"a path here must be a .npy file, got {value!r}")
                    per_input[name] = _resolve(value, base_dir)
                elif isinstance(value, (list, int, float, bool)):
                    per_input[name] = value
                else:
                    problems.add(label, f"{field}.{name}", f"must be an inline list or a .npy path, got {_kind(value)}")
            out[key] = SampleInputsDecl(per_input=per_input)
        else:
            problems.add(label, field, "must be {generate: {seed, batch}}, an .npz path, or input name -> value")
    return out


def _parse_size(raw: Mapping, field: str, default: int, label: str, problems: _Problems,
                maximum: int | None = None) -> int:
    value = raw.get(field, default)
    if not _is_int(value) or value < 1:
        problems.add(label, field, f"must be a positive integer number of bytes, got {value!r}")
        return default
    if maximum is not None and value > maximum:
        problems.add(label, field, f"{value} is too large: protobuf messages must stay below 2 GiB ({maximum})")
        return default
    return value


def _parse_version(value: Any, label: str, problems: _Problems) -> str:
    if value in ("next", "timestamp"):
        return value
    number = parse_version(value)
    if number is not None:
        return str(number)
    problems.add(label, "version", f"must be 'next', 'timestamp' or {VERSION_RULE}, got {value!r}")
    return "next"


# ---- sample inputs as arrays -------------------------------------------------

def resolve_sample_inputs(job: JobSpec, key: str) -> dict[str, np.ndarray]:
    """The sample inputs of one signature as arrays checked against its specs (loaded at validation)."""
    if key in job.sample_arrays:
        return dict(job.sample_arrays[key])
    return _load_samples_of(job, key)


def _load_samples_of(job: JobSpec, key: str) -> dict[str, np.ndarray]:
    """Raises JobsFileError naming the job and field on files that cannot be read
    or values whose dtype/shape do not fit the declared TensorSpec."""
    field = f"sample_inputs.{key}"
    try:
        return load_samples(job.sample_inputs[key], job.signature(key).inputs)
    except SampleProblems as e:
        problems = _Problems(job.source)
        for below, reason in e.problems:
            problems.add(job.name, f"{field}.{below}" if below else field, reason)
        raise JobsFileError(problems.lines) from None


# ---- helpers ------------------------------------------------------------------

def _resolve(path: str, base_dir: str) -> str:
    if is_uri(path):
        return path
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(path)))


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
