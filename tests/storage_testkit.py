"""Helpers shared by the storage tests: fake SavedModel-shaped exports and layout checks."""

from __future__ import annotations

import os
import random
from pathlib import Path

from tf_bigexport.savedmodel_files import PROGRAM_FILES


def make_export(root: Path, *, seed: int = 0, big: int = 300_000, marker: str = "saved_model.pb") -> Path:
    """A directory shaped like a SavedModel export, with random contents."""
    rnd = random.Random(seed)
    files = {
        marker: rnd.randbytes(2_000),
        "fingerprint.pb": rnd.randbytes(40),
        "variables/variables.index": rnd.randbytes(1_000),
        "variables/variables.data-00000-of-00002": rnd.randbytes(big),
        "variables/variables.data-00001-of-00002": rnd.randbytes(big // 3),
        "assets/vocab.txt": b"\n".join(b"tok%d" % i for i in range(200)),
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(fs, directory: str) -> dict[str, bytes]:
    """Every file under `directory` (fresh listing), relative path -> bytes."""
    fs.invalidate_cache()
    if not fs.exists(directory):
        return {}
    prefix = fs._strip_protocol(directory).rstrip("/") + "/"
    out = {}
    for name in fs.find(directory):
        name = fs._strip_protocol(name)
        out[name[len(prefix):]] = fs.cat_file(name)
    return out


def version_dirs(fs, model_dir: str) -> list[int]:
    fs.invalidate_cache()
    try:
        names = fs.ls(model_dir, detail=False)
    except FileNotFoundError:
        return []
    bases = [n.rstrip("/").rsplit("/", 1)[-1] for n in names]
    return sorted(int(b) for b in bases if b.isdigit())


def export_files(export: Path) -> dict[str, bytes]:
    return {p.relative_to(export).as_posix(): p.read_bytes() for p in export.rglob("*") if p.is_file()}


def assert_no_incomplete_visible(fs, model_dir: str, exports: dict[int, Path], default: Path) -> None:
    """Every version dir that looks complete (marker present) holds its whole export, exactly."""
    for version in version_dirs(fs, model_dir):
        tree = read_tree(fs, f"{model_dir}/{version}")
        if any(m in tree for m in PROGRAM_FILES):
            expected = export_files(exports.get(version, default))
            assert tree == expected, f"version {version} is visible but incomplete or wrong"


def flip_byte(fs, path: str, offset: int = 7) -> None:
    data = bytearray(fs.cat_file(path))
    data[offset % len(data)] ^= 0xFF
    fs.pipe_file(path, bytes(data))
    fs.invalidate_cache()


def env_without_cloud_credentials() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_"))}
