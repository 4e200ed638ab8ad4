"""`inspect`: what `saved_model_cli show --all` shows, for .pb and .cpb, local
or in object storage, plus fingerprint and chunk layout. It parses files only
and never runs model code."""
from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from tf_bigexport.imageformat.fingerprints import HASH_FIELDS, fingerprint_dict
from tf_bigexport.pipeline.exit_codes import ExitCode, fail
from tf_bigexport import storage
from tf_bigexport.pipeline.locations import list_files, open_file
from tf_bigexport.savedmodel_files import FINGERPRINT_PB as FINGERPRINT_FILE
from tf_bigexport.savedmodel_files import PROGRAM_FILES

_MAX_FINGERPRINT_BYTES = 1 << 16


class InspectError(ValueError):
    """What was asked for is not in the SavedModel (a tag-set, a signature key)."""


def describe_model(location: str, *, tag_set: str | None = None, signature_def: str | None = None,
                   list_ops: bool = False) -> dict[str, Any]:
    """Everything `inspect` prints, as a JSON-able dict; ``tag_set``/``signature_def`` narrow it to
    one MetaGraph / one signature, ``list_ops`` adds the ops each MetaGraph uses."""
    root = storage.local_path(location)
    if root is not None:
        from tf_bigexport.imageformat import program_files
        program_files.check_tree(root)  # no FIFO, device or link out is ever opened
    files = list_files(location)
    names = {path for path, _ in files}
    proto_file = next((p for p in PROGRAM_FILES if p in names), None)
    if proto_file is None:
        raise FileNotFoundError(f"{location}: neither saved_model.cpb nor saved_model.pb is there")
    saved_model, layout = _read_program(location, proto_file)
    fingerprint = _read_fingerprint(location) if FINGERPRINT_FILE in names else None
    program_bytes = (sum(c["size"] for c in layout["chunks"]) if layout is not None
                     else dict(files)[proto_file])
    from tf_bigexport.imageformat import loadability
    loading = loadability.of_program(proto_file, program_bytes, saved_model).to_dict()
    meta_graphs = _selected(saved_model.meta_graphs, tag_set, location)
    summaries = [_meta_graph_summary(mg, list_ops) for mg in meta_graphs]
    if signature_def is not None:
        for summary in summaries:
            if signature_def not in summary["signatures"]:
                raise InspectError(f"{location}: the MetaGraph with tag-set '{','.join(summary['tags'])}' has no "
                                   f"signature {signature_def!r}; it has {sorted(summary['signatures'])}")
            summary["signatures"] = {signature_def: summary["signatures"][signature_def]}
    return {
        "location": location,
        "proto_file": proto_file,
        **loading,
        "files": [{"path": p, "size": s} for p, s in files],
        "fingerprint": fingerprint,
        "meta_graphs": summaries,
        "chunk_layout": layout,
    }


def _selected(meta_graphs, tag_set: str | None, location: str) -> list:
    if tag_set is None:
        return list(meta_graphs)
    wanted = {t.strip() for t in tag_set.split(",") if t.strip()}
    chosen = [mg for mg in meta_graphs if set(mg.meta_info_def.tags) == wanted]
    if not chosen:
        have = ", ".join("'" + ",".join(sorted(mg.meta_info_def.tags)) + "'" for mg in meta_graphs)
        raise InspectError(f"{location}: no MetaGraph with tag-set '{','.join(sorted(wanted))}'; it has {have}")
    return chosen


def _read_program(location: str, proto_file: str):
    """(SavedModel, chunk layout or None), read under the format library's limits."""
    from tensorflow.core.protobuf import saved_model_pb2

    from tf_bigexport.imageformat import merger, program_files
    from tf_bigexport.imageformat.chunked import ChunkedFile
    from tf_bigexport.imageformat.limits import MAX_PB_BYTES
    name = f"{location}/{proto_file}"
    with open_file(location, proto_file) as f:
        if not proto_file.endswith(".cpb"):
            return program_files.parse_pb(f.read(MAX_PB_BYTES + 1), name), None
        with ChunkedFile(f, name=name) as chunked_file:
            # Signatures and structure only: large constant chunks are left unread.
            saved_model = merger.merge(chunked_file, chunked_file.metadata, saved_model_pb2.SavedModel,
                                       skip_large_constants=True)
            return saved_model, _chunk_layout(chunked_file.metadata)


def _read_fingerprint(location: str) -> dict[str, str]:
    with open_file(location, FINGERPRINT_FILE) as f:
        data = f.read(_MAX_FINGERPRINT_BYTES + 1)
    if len(data) > _MAX_FINGERPRINT_BYTES:  # a FingerprintDef is a few dozen bytes
        raise ValueError(f"{location}/{FINGERPRINT_FILE}: larger than {_MAX_FINGERPRINT_BYTES} bytes; "
                         "not a FingerprintDef")
    fields = fingerprint_dict(data, name=f"{location}/{FINGERPRINT_FILE}")
    return {field: fields[field] for field in HASH_FIELDS}


def _chunk_layout(metadata) -> dict[str, Any]:
    from tensorflow.core.protobuf import saved_model_pb2

    from tf_bigexport.imageformat import fieldpath
    from tf_bigexport.imageformat.proto import chunk_pb2

    chunks = [{"index": i, "type": chunk_pb2.ChunkInfo.Type.Name(c.type), "size": c.size, "offset": c.offset}
              for i, c in enumerate(metadata.chunks)]
    fields: list[dict[str, Any]] = []

    def walk(message, descriptor, prefix: str) -> None:
        for chunked in message.chunked_fields:
            path = fieldpath.describe(descriptor, chunked.field_tag)
            target = None
            with contextlib.suppress(fieldpath.PathError):
                steps = fieldpath.resolve(descriptor, chunked.field_tag)
                target = steps[-1].target_type if steps else descriptor
            full = f"{prefix}.{path}" if prefix else path
            if chunked.message.HasField("chunk_index"):
                fields.append({"field": full, "chunk": chunked.message.chunk_index})
            if target is not None:
                walk(chunked.message, target, full)

    walk(metadata.message, saved_model_pb2.SavedModel.DESCRIPTOR, "")
    return {"version": metadata.version.splitter_version if metadata.HasField("version") else None,
            "root_chunk": metadata.message.chunk_index if metadata.message.HasField("chunk_index") else None,
            "chunks": chunks, "chunked_fields": fields}


def tensor_spec(info) -> dict[str, Any]:
    """A TensorInfo's dtype and shape as the release record writes them: "float32", null for an
    unknown dimension (`convert` records them so too)."""
    import tensorflow as tf
    shape = None if info.tensor_shape.unknown_rank else [None if d.size < 0 else d.size
                                                         for d in info.tensor_shape.dim]
    try:
        dtype = tf.dtypes.as_dtype(info.dtype).name
    except TypeError:  # an enum value TensorFlow does not know
        dtype = f"unknown ({info.dtype})"
    return {"dtype": dtype, "shape": shape}


def _tensor_info(info) -> dict[str, Any]:
    kind = info.WhichOneof("encoding")
    return {**tensor_spec(info), "name": info.name if kind == "name" else f"<{kind}>"}


def _meta_graph_summary(meta_graph, list_ops: bool = False) -> dict[str, Any]:
    signatures = {}
    for key in sorted(meta_graph.signature_def):
        sig = meta_graph.signature_def[key]
        signatures[key] = {"inputs": {k: _tensor_info(v) for k, v in sorted(sig.inputs.items())},
                           "outputs": {k: _tensor_info(v) for k, v in sorted(sig.outputs.items())},
                           "method_name": sig.method_name}
    summary = {"tags": sorted(meta_graph.meta_info_def.tags), "signatures": signatures,
               "tensorflow_version": meta_graph.meta_info_def.tensorflow_version,
               "graph_nodes": len(meta_graph.graph_def.node),
               "functions": len(meta_graph.graph_def.library.function)}
    if list_ops:
        graph = meta_graph.graph_def
        summary["ops"] = sorted({n.op for n in graph.node}
                                | {n.op for f in graph.library.function for n in f.node_def})
    return summary


def _dtype_text(dtype: str) -> str:
    """saved_model_cli's spelling: DT_FLOAT for float32."""
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2
    try:
        return types_pb2.DataType.Name(tf.dtypes.as_dtype(dtype).as_datatype_enum)
    except (TypeError, ValueError):
        return dtype


def _shape_text(shape) -> str:
    if shape is None:
        return "unknown_rank"
    dims = [-1 if d is None else d for d in shape]
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def _signature_lines(key: str, sig: dict[str, Any]) -> list[str]:
    out = [f"signature_def['{key}']:"]
    for kind in ("inputs", "outputs"):
        out.append(f"  The given SavedModel SignatureDef contains the following {kind[:-1]}(s):")
        for name, info in sig[kind].items():
            out += [f"    {kind}['{name}'] tensor_info:",
                    f"        dtype: {_dtype_text(info['dtype'])}",
                    f"        shape: {_shape_text(info['shape'])}",
                    f"        name: {info['name']}"]
    out.append(f"  Method name is: {sig['method_name']}")
    return out


def _chunk_lines(layout: dict[str, Any], every_chunk: bool) -> list[str]:
    from tf_bigexport.byte_sizes import human_bytes
    chunks = layout["chunks"]
    kinds = sorted({c["type"] for c in chunks})
    counts = ", ".join(f"{sum(c['type'] == kind for c in chunks)} {kind}" for kind in kinds)
    total = sum(c["size"] for c in chunks)
    largest = max((c["size"] for c in chunks), default=0)
    out = [f"Chunk layout: {len(chunks)} chunks ({counts}), {human_bytes(total)} in all, largest "
           f"{human_bytes(largest)}; root message in chunk {layout['root_chunk']}; "
           f"{len(layout['chunked_fields'])} split-off fields"]
    if not every_chunk:
        out.append("  (--chunks lists every chunk and split-off field)")
        return out
    # A chunk's offset is its Riegeli record position: the byte offset of the Riegeli chunk that
    # holds it, plus the record's index inside that chunk.
    for c in chunks:
        out.append(f"  chunk {c['index']:>4}: {c['type']:<7} {c['size']:>12} bytes at offset {c['offset']}")
    if layout["chunked_fields"]:
        out.append("  split-off fields:")
        out += [f"    {f['field']} -> chunk {f['chunk']}" for f in layout["chunked_fields"]]
    return out


def format_description(desc: dict[str, Any], *, narrowed: bool = False, chunks: bool = False) -> str:
    """The text `inspect` prints: like `saved_model_cli show --all`, then what that leaves out.

    ``narrowed`` (a --tag_set or --signature_def was given): only the selected MetaGraph's
    signatures, as `saved_model_cli show --tag_set ... [--signature_def ...]` prints them.
    """
    out: list[str] = []
    if not narrowed:
        out += [f"SavedModel at {desc['location']}", f"program: {desc['proto_file']}",
                f"loadable by stock TensorFlow: {'yes' if desc['loadable_by_stock_tensorflow'] else 'no'} "
                f"({desc['loading']['reason']})"]
        total = sum(f["size"] for f in desc["files"])
        out.append(f"files: {len(desc['files'])}, {total} bytes")
        for f in desc["files"]:
            out.append(f"  {f['size']:>12}  {f['path']}")
        if desc["fingerprint"]:
            out.append("fingerprint:")
            out += [f"  {k}: {v}" for k, v in desc["fingerprint"].items()]
        else:
            out.append("fingerprint: none (no fingerprint.pb)")
        tag_sets = ", ".join("'" + ",".join(mg["tags"]) + "'" for mg in desc["meta_graphs"])
        out.append(f"The given SavedModel contains the following tag-sets: {tag_sets}")
    for mg in desc["meta_graphs"]:
        tags = ",".join(mg["tags"])
        if "ops" in mg:
            out += ["", f"The MetaGraph with tag set {mg['tags']} contains the following ops: "
                        + ("{" + ", ".join(repr(op) for op in mg["ops"]) + "}" if mg["ops"] else "set()")]
            continue
        out += ["", f"MetaGraphDef with tag-set: '{tags}' contains the following SignatureDefs:"]
        for key, sig in mg["signatures"].items():
            out += [""] + _signature_lines(key, sig)
    layout = desc["chunk_layout"]
    if layout is not None and not narrowed:
        out += [""] + _chunk_lines(layout, chunks)
    return "\n".join(out).lstrip("\n")


# Signature keys TensorFlow keeps for itself (the init op); a jobs file never lists them.
_RESERVED_PREFIX = "__"


def jobs_file_for(desc: dict[str, Any]) -> str:
    """A jobs file (YAML) whose one job publishes the described SavedModel with the signatures of its
    serving MetaGraph (the one tagged serve, else the first), inputs declared as the signatures take them."""
    from tf_bigexport.storage.names import model_name_problem
    graphs = desc["meta_graphs"]
    meta_graph = next((mg for mg in graphs if mg["tags"] == ["serve"]), graphs[0])
    local = storage.local_path(desc["location"])
    # Absolute: a jobs file resolves relative paths against its own directory, wherever it is written.
    source = desc["location"] if local is None else os.path.abspath(local)
    parts = [p for p in source.rstrip("/").split("/") if p]
    name = parts[-2] if len(parts) > 1 and parts[-1].isdigit() else (parts[-1] if parts else "")
    lines = ["# tf-bigexport run --jobs THIS_FILE --registry URI", "jobs:",
             f"  - name: {json.dumps(name if name and not model_name_problem(name) else 'model')}",
             f"    saved_model: {json.dumps(source)}", "    signatures:"]
    for key, signature in meta_graph["signatures"].items():
        if key.startswith(_RESERVED_PREFIX):
            continue
        lines.append(f"      {json.dumps(key)}:")
        for input_name, info in signature["inputs"].items():
            if info["shape"] is None:
                raise InspectError(f"{desc['location']}: signature {key!r} input {input_name!r} has an unknown "
                                   "rank, which a jobs file cannot declare")
            lines.append(f"        - {{name: {json.dumps(input_name)}, dtype: {info['dtype']}, "
                         f"shape: {json.dumps(info['shape'])}}}")
    return "\n".join(lines)


def inspect_command(args) -> int:
    narrowed = bool(args.tag_set or args.signature_def)
    try:
        desc = describe_model(args.path, tag_set=args.tag_set, signature_def=args.signature_def,
                              list_ops=args.list_ops)
    except InspectError as e:
        return fail(f"inspect: {e}", ExitCode.USAGE)
    except (OSError, ValueError) as e:
        return fail(f"inspect: {e}")
    if args.job:
        try:
            print(jobs_file_for(desc))
        except InspectError as e:
            return fail(f"inspect: {e}", ExitCode.USAGE)
    elif args.json:
        if desc["chunk_layout"] is not None and not args.chunks:
            layout = desc["chunk_layout"]
            layout["chunk_count"], layout["chunked_field_count"] = len(layout["chunks"]), len(layout["chunked_fields"])
            del layout["chunks"], layout["chunked_fields"]  # listed with --chunks
        print(json.dumps(desc, indent=2))
    else:
        print(format_description(desc, narrowed=narrowed, chunks=args.chunks))
    return ExitCode.OK
