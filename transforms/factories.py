"""Finding a job's factory: "package.module:function", looked up in the jobs
file's directory, then each --python_path directory, then the installed
packages, and the directory the run started in last.

The user's directories go first so a jobs file next to its model code needs
no installation; the current directory goes last so a stray folder there
(a `storage/` or `transforms/` of the user's) never shadows anything.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from typing import Any, Callable, Sequence


def search_path(first: Sequence[str], last: str | None) -> list[str]:
    """sys.path for importing factories: ``first`` dirs, the interpreter's own path, then ``last``."""
    here = {"", os.getcwd()}
    base = [p for p in sys.path if p not in here and p not in first and p != last]
    return [*first, *base, *([last] if last else [])]


def use_search_path(first: Sequence[str], last: str | None) -> None:
    """Make ``sys.path`` the factory search path (in the process that imports the factory)."""
    sys.path[:] = search_path(first, last)
    importlib.invalidate_caches()


def where_looked(first: Sequence[str], last: str | None) -> str:
    places = [*first, "the installed packages", *([last] if last else [])]
    return ", ".join(places)


def locate(reference: str, first: Sequence[str], last: str | None) -> str | None:
    """Why the factory's top-level package cannot be found, or None; imports nothing."""
    top = reference.partition(":")[0].split(".")[0]
    dirs = [*first, *([last] if last else [])]
    if importlib.machinery.PathFinder.find_spec(top, dirs) is not None:
        return None
    if top in sys.builtin_module_names or importlib.util.find_spec(top) is not None:
        return None
    return (f"factory {reference!r}: no module named {top!r} "
            f"(looked in {where_looked(first, last)})")


def import_factory(reference: str, first: Sequence[str] = (), last: str | None = None) -> Callable[..., Any]:
    """Resolves "package.module:function" (the function may be a dotted attribute path)."""
    module_name, _, attr_path = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as e:
        where = f" (looked in {where_looked(first, last)})" if (first or last) else ""
        raise ImportError(f"factory {reference!r}: cannot import module {module_name!r}: {e}{where}") from e
    for part in attr_path.split("."):
        if not hasattr(target, part):
            owner = target.__name__ if hasattr(target, "__name__") else repr(target)
            raise AttributeError(f"factory {reference!r}: {owner} has no attribute {part!r}")
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"factory {reference!r} is not callable")
    return target
