"""The layering, checked on the source (AST), imports inside functions included.

    pipeline -> transforms -> imageformat        transforms -> storage, registries
    inference -> imageformat, storage
    registries -> storage                        everything -> tf_bigexport/ leaf modules

- no import cycle among our modules;
- imageformat and storage import nothing above them: storage never imports
  TensorFlow or imageformat, imageformat never imports Beam, storage,
  transforms or pipeline;
- nothing outside storage imports fsspec, gcsfs or s3fs: storage is the facade.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"imageformat": "imageformat", "storage": "storage", "transforms": "transforms",
            "pipeline": "pipeline", "registries": "registries", "inference": "inference", "tf_bigexport": ""}
LEAF = "tf_bigexport"  # the package's own folder holds leaf modules only...
ENTRY = "tf_bigexport.__main__"  # ...and `python -m tf_bigexport`, which may import anything


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[0] != "tf_bigexport":
        parts.insert(0, "tf_bigexport")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    out = {}
    for folder in PACKAGES:
        for path in sorted((REPO / folder).rglob("*.py")):
            if "proto" in path.relative_to(REPO).parts and path.name.endswith("_pb2.py"):
                continue  # generated
            out[_module_name(path)] = path
    return out


SOURCES = _sources()


def _runtime_nodes(tree: ast.AST):
    """Every node, except what sits under `if TYPE_CHECKING:` (never imported at run time)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(module: str, path: Path) -> set[str]:
    """Every module `module` imports at run time, anywhere in the file, as absolute dotted names."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            # `from pkg import mod` imports the module pkg.mod when there is one
            found.update(f"{target}.{alias.name}" for alias in node.names
                         if f"{target}.{alias.name}" in SOURCES)
    return found


IMPORTS = {module: _imports(module, path) for module, path in SOURCES.items()}


def _ours(imported: set[str]) -> set[str]:
    """Our modules among `imported` (a name inside a module counts as the module)."""
    out = set()
    for name in imported:
        while name and name not in SOURCES:
            name = name.rpartition(".")[0]
        if name and name != "tf_bigexport":
            out.add(name)
    return out


def _layer(module: str) -> str:
    if module == ENTRY:
        return "entry"
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in PACKAGES) else LEAF


def _top(name: str) -> str:
    return name.split(".")[0]


def test_sources_were_found():
    assert {"tf_bigexport.storage.objects", "tf_bigexport.imageformat.chunked", "tf_bigexport.pipeline.cli",
            "tf_bigexport.savedmodel_files"} <= set(SOURCES)
    assert "tf_bigexport.storage.objects" in _ours(IMPORTS["tf_bigexport.storage.registry"])


def test_no_import_cycles():
    graph = {m: _ours(IMPORTS[m]) - {m} for m in SOURCES}
    # a package imports its own modules in __init__; that edge alone is no cycle
    graph = {m: {d for d in deps if not (d.startswith(m + ".") and SOURCES[m].name == "__init__.py")}
             for m, deps in graph.items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


ALLOWED_LAYERS = {
    "entry": {"pipeline"},
    LEAF: set(),
    "imageformat": {LEAF, "imageformat"},
    "storage": {LEAF, "storage"},
    "registries": {LEAF, "registries", "storage"},
    "transforms": {LEAF, "transforms", "imageformat", "storage", "registries"},
    "pipeline": {LEAF, "pipeline", "transforms", "imageformat", "storage", "registries"},
    "inference": {LEAF, "inference", "imageformat", "storage"},
}
FORBIDDEN_THIRD_PARTY = {
    "entry": set(),
    LEAF: {"tensorflow", "apache_beam", "fsspec", "gcsfs", "s3fs"},
    "imageformat": {"apache_beam", "fsspec", "gcsfs", "s3fs"},
    "storage": {"tensorflow", "apache_beam"},
    "registries": {"tensorflow", "apache_beam", "fsspec", "gcsfs", "s3fs"},
    "transforms": {"fsspec", "gcsfs", "s3fs"},
    "pipeline": {"fsspec", "gcsfs", "s3fs"},
    "inference": {"fsspec", "gcsfs", "s3fs"},
}


@pytest.mark.parametrize("layer", sorted(ALLOWED_LAYERS))
def test_each_layer_imports_only_what_is_below_it(layer):
    wrong = []
    for module in sorted(m for m in SOURCES if _layer(m) == layer):
        for dep in sorted(_ours(IMPORTS[module])):
            if _layer(dep) not in ALLOWED_LAYERS[layer]:
                wrong.append(f"{module} imports {dep}")
        for name in sorted(IMPORTS[module]):
            if _top(name) in FORBIDDEN_THIRD_PARTY[layer]:
                wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_checks_would_catch_a_violation(tmp_path):
    """The import scanner sees lazy and relative imports (what the checks above rely on)."""
    path = tmp_path / "probe.py"
    path.write_text("from typing import TYPE_CHECKING\nfrom . import objects\nif TYPE_CHECKING:\n"
                    "    import apache_beam\ndef f():\n    import fsspec\n    from ..imageformat import chunked\n")
    found = _imports("tf_bigexport.storage.probe", path)
    assert {"tf_bigexport.storage.objects", "fsspec", "tf_bigexport.imageformat.chunked"} <= found
    assert "apache_beam" not in found
