"""A jobs file's bytes -> a plain document (dicts, lists, scalars), within limits.

A jobs file comes from a user or a release pipeline, so reading it is
bounded before the schema (jobs.py) looks at it:

- at most MAX_FILE_BYTES, UTF-8 text;
- mappings and lists nested at most MAX_DEPTH deep;
- integers within int64 (every integer field is a size, seed, count or version);
- YAML anchors/aliases (and so `<<` merge keys) are refused: a few hundred bytes
  of aliases expand to gigabytes;
- a key given twice in one mapping is refused (YAML and JSON would keep the
  last one silently).

Every violation is a JobsReadError with one line: what is wrong, and where.
"""
from __future__ import annotations

import json
from typing import Any

import yaml

MAX_FILE_BYTES = 4 << 20
MAX_DEPTH = 32
INT_RANGE = (-(2**63), 2**63 - 1)
# Longer integer text is refused before Python converts it (int() of a huge
# string is slow, and past 4300 digits an error without a line number).
_MAX_INT_TEXT = 32


class JobsReadError(ValueError):
    """The file cannot be read as a jobs document; the message is one line without the file name."""


def read_document(path: str) -> Any:
    """The parsed document of a YAML or JSON (name ends in .json) jobs file."""
    text = _read_text(path)
    if path.endswith(".json"):
        return _parse_json(text)
    return _parse_yaml(text)


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # bounded, even for /dev/zero
    except OSError as e:
        raise JobsReadError(f"cannot read jobs file: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise JobsReadError(f"larger than {MAX_FILE_BYTES >> 20} MiB; a jobs file lists jobs, "
                            "put large sample inputs in .npy/.npz files")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise JobsReadError(f"not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} "
                            f"(line {line})") from None


# ---- JSON ----------------------------------------------------------------------

def _parse_json(text: str) -> Any:
    depth = _json_depth(text)
    if depth > MAX_DEPTH:
        raise JobsReadError(f"nested {depth} levels deep; at most {MAX_DEPTH} are allowed")
    try:
        return json.loads(text, object_pairs_hook=_json_object, parse_int=_bounded_int)
    except json.JSONDecodeError as e:
        raise JobsReadError(f"not valid JSON: {e}") from None


def _json_depth(text: str) -> int:
    """How deep [ and { nest, outside strings (checked before json recurses into them)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JobsReadError(f"key {key!r} appears twice in one object")
        result[key] = value
    return result


def _bounded_int(text: str, where: str = "") -> int:
    if len(text.lstrip("+-")) > _MAX_INT_TEXT:
        raise JobsReadError(f"{where}integer {text[:12]}... has {len(text)} characters; "
                            f"integers must lie in {INT_RANGE[0]}..{INT_RANGE[1]}")
    value = _int_of(text)
    if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise JobsReadError(f"{where}integer {text} is out of range: integers must lie in "
                            f"{INT_RANGE[0]}..{INT_RANGE[1]}")
    return value


def _int_of(text: str) -> int:
    """YAML 1.1 integer text (0b.., 0x.., 0-led octal, decimal) with an optional sign."""
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-").lower()
    if body.startswith("0b"):
        return sign * int(body[2:], 2)
    if body.startswith("0x"):
        return sign * int(body[2:], 16)
    if len(body) > 1 and body.startswith("0"):
        return sign * int(body[1:].removeprefix("o"), 8)
    return sign * int(body)


# ---- YAML ----------------------------------------------------------------------

def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases or duplicate keys, and with bounded depth and integers.

    The pure-Python loader on purpose: its composer is the one place that
    recurses per nesting level, and the depth check below stops it first.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise JobsReadError(f"{_where(event.start_mark)}YAML alias *{event.anchor} is not allowed "
                                "(write the value out)")
        if getattr(event, "anchor", None) is not None:
            raise JobsReadError(f"{_where(event.start_mark)}YAML anchor &{event.anchor} is not allowed "
                                "(anchors and aliases are refused)")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise JobsReadError(f"{_where(event.start_mark)}nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except (JobsReadError, yaml.YAMLError):
            raise
        except (ValueError, TypeError, ArithmeticError, AttributeError) as e:  # e.g. `2024-13-45`, `!!float x`
            raise JobsReadError(f"{_where(node.start_mark)}cannot read this {node.tag.rsplit(':', 1)[-1]} "
                                f"value: {e}") from None

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise JobsReadError(f"{_where(key_node.start_mark)}YAML merge keys (<<) are not allowed")
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:  # an unhashable key: the base class says so
                    continue
                if first is not key_node.start_mark:
                    raise JobsReadError(f"{_where(key_node.start_mark)}key {key!r} appears twice in one "
                                        f"mapping (first on line {first.line + 1})")
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        text = str(self.construct_scalar(node)).replace("_", "")
        if ":" in text:  # YAML 1.1 base 60 ("1:30"); no jobs field means that
            raise JobsReadError(f"{_where(node.start_mark)}{text!r}: write the number in base 10 or quote it")
        return _bounded_int(text, where=_where(node.start_mark))

    def construct_as_text(self, node):
        return self.construct_scalar(node)

    def refuse_tag(self, node):
        raise JobsReadError(f"{_where(node.start_mark)}YAML tag !!{node.tag.rsplit(':', 1)[-1]} is not allowed "
                            "in a jobs file")


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)
# Dates stay text (a tag value `2026-01-31` is a label); the other YAML types have no use here.
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _StrictLoader.construct_as_text)
for _tag in ("binary", "set", "omap", "pairs"):
    _StrictLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _StrictLoader.refuse_tag)


def _parse_yaml(text: str) -> Any:
    loader = None
    try:
        loader = _StrictLoader(text)
        return loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        context = f"{e.context}: " if e.context else ""
        raise JobsReadError(f"not valid YAML: {_where(e.problem_mark)}{context}{e.problem}") from None
    except yaml.YAMLError as e:
        raise JobsReadError("not valid YAML: " + " ".join(str(e).split())) from None
    finally:
        if loader is not None:
            loader.dispose()
