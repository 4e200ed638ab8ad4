"""The receipt a completed save leaves next to it in the job's work dir.

A rerun with the same run id (the same job key) may reuse a save instead of
building, tracing and saving again, but only after checking it: the receipt
must name this job and spec, and every file of the saved directory must
still have the size and checksums recorded (the Fingerprint stage records
them; the Verify stage marks the receipt once the reload check passed).
Reuse matters beyond speed: TensorFlow's saves are not byte-reproducible,
so a commit cut short can only be finished with the same bytes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from tf_bigexport.local_files import write_file

SCHEMA = "tf-bigexport.save-receipt/1"
RECEIPT = "saved_model.receipt.json"
SAVED_MODEL_DIRNAME = "saved_model"
GOLDEN = "saved_model.golden.npz"


@dataclasses.dataclass(frozen=True)
class SaveReceipt:
    job_key: str
    job_spec_sha256: str
    proto_file: str
    chunks: int
    shards: int
    saved_bytes: int
    signatures: dict[str, Any]
    fingerprint: dict[str, Any]
    tensorflow_version: str
    golden_sha256: str
    loading: dict[str, Any] = dataclasses.field(default_factory=dict)  # imageformat.loadability of the save
    manifest: list[dict] | None = None  # storage.Manifest.to_list(), recorded by the Fingerprint stage
    verified: bool = False  # the reload check passed on exactly these files


def saved_dir(work_dir: str) -> str:
    return os.path.join(work_dir, SAVED_MODEL_DIRNAME)


def write(work_dir: str, receipt: SaveReceipt) -> None:
    """Atomically: a receipt is either the old one or the new one, never half."""
    text = json.dumps({"schema": SCHEMA, **dataclasses.asdict(receipt)}, indent=1, sort_keys=True)
    write_file(os.path.join(work_dir, RECEIPT), text.encode("utf-8"))


def read(work_dir: str) -> SaveReceipt | None:
    try:
        with open(os.path.join(work_dir, RECEIPT), encoding="utf-8") as f:
            data = json.load(f)
        if data.pop("schema", None) != SCHEMA:
            return None
        return SaveReceipt(**data)
    except (OSError, ValueError, TypeError):
        return None


def remove(work_dir: str) -> None:
    try:
        os.remove(os.path.join(work_dir, RECEIPT))
    except FileNotFoundError:
        pass


def update(work_dir: str, **changes: Any) -> None:
    receipt = read(work_dir)
    if receipt is not None:
        write(work_dir, dataclasses.replace(receipt, **changes))


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def reusable(work_dir: str, job_key: str, job_spec_sha256: str) -> tuple[SaveReceipt, Any, bytes] | None:
    """(receipt, storage.Manifest, golden npz bytes) of a save this job may reuse, else None.

    Everything is re-checked: the receipt names this job and spec, and the
    saved files hash to what the receipt recorded.
    """
    from tf_bigexport import storage
    receipt = read(work_dir)
    if receipt is None or receipt.manifest is None:
        return None
    if (receipt.job_key, receipt.job_spec_sha256) != (job_key, job_spec_sha256):
        return None
    golden_path = os.path.join(work_dir, GOLDEN)
    directory = saved_dir(work_dir)
    try:
        if sha256_of(golden_path) != receipt.golden_sha256 or not os.path.isdir(directory):
            return None
        manifest = storage.build_manifest(directory)
        with open(golden_path, "rb") as f:
            golden = f.read()
    except (OSError, ValueError, storage.StorageError):
        return None
    if manifest.by_path() != storage.Manifest.from_list(receipt.manifest).by_path():
        return None
    return receipt, manifest, golden
