"""Inputs for `call`, in saved_model_cli's three forms.

--inputs         key=file.npy | key=file.npz[var] | key=file.npz (one array) | key=file.pkl (pickle)
--input-exprs    key=<expression>: Python literals and a safe subset of numpy (np.ones((2, 3)), ...)
--input-examples key=[{feature: [values], ...}, ...]: serialized tf.train.Example protos

Expressions are parsed with ``ast`` and only literal syntax, arithmetic,
indexing and calls of allow-listed numpy functions are accepted; they are
evaluated without builtins. Pickle files can run code when loaded: they are
read only when named explicitly with --inputs, like saved_model_cli does.
"""
from __future__ import annotations

import ast
import os
import pickle
import re

import numpy as np


class InputError(ValueError):
    """An input given to `call` that cannot be fed (the message names the option and input key)."""


def split_specs(values: list[str]) -> list[tuple[str, str]]:
    """"a=x;b=y" (possibly repeated) -> [(a, x), (b, y)]; ';' inside brackets or quotes does not split."""
    pairs = []
    for value in values:
        for part in _split_top_level(value, ";"):
            if not part.strip():
                continue
            key, sep, rest = part.partition("=")
            if not sep or not key.strip():
                raise InputError(f"{part!r}: expected <input key>=<value>")
            pairs.append((key.strip(), rest.strip()))
    return pairs


def _split_top_level(text: str, separator: str) -> list[str]:
    parts, depth, quote, current = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == separator and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


_NPZ_VARIABLE = re.compile(r"^(?P<path>.+\.npz)\[(?P<var>[^\]]+)\]$")


def load_input_file(key: str, spec: str) -> np.ndarray:
    match = _NPZ_VARIABLE.match(spec)
    path, variable = (match["path"], match["var"]) if match else (spec, None)
    if not os.path.exists(path):
        raise InputError(f"--inputs {key}: no such file {path!r}")
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as npz:
            if variable is None:
                if len(npz.files) != 1:
                    raise InputError(f"--inputs {key}: {path} holds {sorted(npz.files)}; pick one as {path}[name]")
                variable = npz.files[0]
            if variable not in npz.files:
                raise InputError(f"--inputs {key}: {path} has no array {variable!r} (has {sorted(npz.files)})")
            return npz[variable]
    with open(path, "rb") as f:
        try:
            return np.asarray(pickle.load(f))
        except Exception as e:
            raise InputError(f"--inputs {key}: {path} is not .npy, .npz or a readable pickle: {e}") from None


# ---- expressions -------------------------------------------------------------

_NUMPY_FUNCTIONS = frozenset({
    "array", "asarray", "zeros", "ones", "full", "empty", "arange", "linspace", "eye", "identity",
    "zeros_like", "ones_like", "full_like", "stack", "concatenate", "reshape", "repeat", "tile",
    "expand_dims", "where", "clip", "abs", "exp", "log", "sqrt", "sin", "cos", "tanh", "sum", "mean",
    "max", "min", "prod", "cumsum", "transpose", "squeeze", "broadcast_to", "random",
    "rand", "randn", "randint", "uniform", "normal", "choice", "permutation", "seed",
    "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
    "uint32", "uint64", "bool_", "str_", "bytes_", "object_", "complex64", "complex128",
    "pi", "e", "inf", "nan", "newaxis",
})
_ARRAY_METHODS = frozenset({"astype", "reshape", "T", "transpose", "flatten", "ravel", "squeeze", "copy"})
_BINARY_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.MatMult)
_UNARY_OPS = (ast.UAdd, ast.USub, ast.Not, ast.Invert)
_MAX_POWER = 64
ALLOWED_EXPRESSIONS = (
    "allowed are literals (numbers, strings, bytes, lists, tuples, dicts), arithmetic, indexing, "
    f"np.<name> for {', '.join(sorted(_NUMPY_FUNCTIONS))}, and the array methods "
    f"{', '.join(sorted(_ARRAY_METHODS))}")


def _check_expression(node: ast.AST, text: str) -> None:
    def refuse(what: str):
        raise InputError(f"{text!r}: {what} is not allowed in --input-exprs; {ALLOWED_EXPRESSIONS}")

    for child in ast.walk(node):
        if isinstance(child, (ast.Expression, ast.Load, ast.keyword, ast.Slice, ast.Constant, ast.List, ast.Tuple,
                              ast.Dict, ast.Subscript, ast.UnaryOp) + _BINARY_OPS + _UNARY_OPS):
            continue  # _UNARY_OPS is every unary operator Python has
        if isinstance(child, ast.BinOp) and isinstance(child.op, _BINARY_OPS):
            # Python evaluates huge powers and string repetitions eagerly: keep them bounded.
            if isinstance(child.op, ast.Pow) and not _small_number(child.right):
                refuse(f"an exponent other than a number literal up to {_MAX_POWER}")
            if isinstance(child.op, ast.Mult) and any(
                    isinstance(side, ast.Constant) and isinstance(side.value, (str, bytes))
                    for side in (child.left, child.right)):
                refuse("repeating a string")
            continue
        if isinstance(child, ast.Name):
            if child.id not in ("np", "numpy"):
                refuse(f"the name {child.id!r}")
            continue
        if isinstance(child, ast.Attribute):
            if child.attr.startswith("_"):
                refuse(f"the attribute {child.attr!r}")
            if _rooted_at_numpy(child):
                if child.attr not in _NUMPY_FUNCTIONS:
                    refuse(f"np.{child.attr}")
            elif child.attr not in _ARRAY_METHODS:
                refuse(f"the method {child.attr!r}")
            continue
        if isinstance(child, ast.Call):
            continue  # what is called is an Attribute, checked above; a bare Name call fails the Name check
        refuse(type(child).__name__)


def _small_number(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool) and abs(node.value) <= _MAX_POWER)


def _rooted_at_numpy(node: ast.AST) -> bool:
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def evaluate_expression(text: str) -> np.ndarray:
    """A numpy array from a restricted expression (see the module docstring)."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise InputError(f"{text!r}: not a valid expression: {e.msg}") from None
    _check_expression(tree, text)
    try:
        value = eval(compile(tree, "<input-exprs>", "eval"), {"__builtins__": {}}, {"np": np, "numpy": np})
    except Exception as e:
        raise InputError(f"{text!r}: evaluation failed: {type(e).__name__}: {e}") from None
    return np.asarray(value)


# ---- tf.train.Example ----------------------------------------------------------

def examples_from_literal(key: str, text: str) -> np.ndarray:
    """[{feature: [values]}, ...] -> array of serialized tf.train.Example (floats, ints, strings)."""
    import tensorflow as tf
    try:
        rows = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise InputError(f"--input-examples {key}: not a Python literal list of dicts: {e}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"--input-examples {key}: expected a list of dicts, e.g. [{{'age': [30]}}]")
    serialized = []
    for row in rows:
        features = {}
        for name, values in row.items():
            values = values if isinstance(values, (list, tuple)) else [values]
            if all(isinstance(v, bool) or isinstance(v, int) for v in values):
                features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
            elif all(isinstance(v, (int, float)) for v in values):
                features[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
            elif all(isinstance(v, (str, bytes)) for v in values):
                features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[v.encode() if isinstance(v, str) else v for v in values]))
            else:
                raise InputError(f"--input-examples {key}: feature {name!r} mixes types or has unsupported values")
        serialized.append(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    return np.array(serialized, dtype=object)


def collect_inputs(inputs: list[str], exprs: list[str], examples: list[str]) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}

    def put(key: str, value: np.ndarray, flag: str) -> None:
        if key in feeds:
            raise InputError(f"{flag} {key}: input {key!r} given more than once")
        feeds[key] = value

    for key, spec in split_specs(inputs):
        put(key, load_input_file(key, spec), "--inputs")
    for key, text in split_specs(exprs):
        put(key, evaluate_expression(text), "--input-exprs")
    for key, text in split_specs(examples):
        put(key, examples_from_literal(key, text), "--input-examples")
    return feeds
