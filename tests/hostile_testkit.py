"""Helpers for the hostile-input, fault and load tests: child-process environment,
registry invariants, and the figures SECURITY.md is generated from."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
# Set by tools/security_figures.py: each test writes its figures there as <name>.json.
REPORT_DIR_ENV = "SECURITY_REPORT_DIR"


def child_env(**extra: str) -> dict:
    """Environment for `python -m tf_bigexport ...` children: the checkout and tests/ importable."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]),
               GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false", TF_CPP_MIN_LOG_LEVEL="2")
    env.update(extra)
    return env


def pipeline_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tf_bigexport", *args]


def tiny_job(name: str, seed: int = 0, **fields) -> dict:
    """A jobs-file entry for hostile_models.tiny_dense (builds, saves and reloads in about a second)."""
    job = {"name": name, "factory": "hostile_models:tiny_dense", "factory_kwargs": {"seed": seed},
           "signatures": {"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 4]}]},
           "sample_inputs": {"serving_default": {"generate": {"seed": seed, "batch": 2}}}}
    job.update(fields)
    return job


def write_jobs(path: Path, jobs: list[dict], registry: str | None = None) -> Path:
    document = {"jobs": jobs}
    if registry:
        document["registry"] = registry
    path.write_text(json.dumps(document, indent=1))
    return path


def report(name: str, figures: dict) -> None:
    """Print the figures (visible with -s) and write them for tools/security_figures.py."""
    print(f"\nsecurity figures {name}: {json.dumps(figures, sort_keys=True)}")
    directory = os.environ.get(REPORT_DIR_ENV)
    if directory:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2, sort_keys=True)


def numeric_dirs(fs, model_dir: str) -> list[int]:
    fs.invalidate_cache()
    try:
        names = fs.ls(model_dir, detail=False)
    except FileNotFoundError:
        return []
    return sorted(int(n.rstrip("/").rsplit("/", 1)[-1]) for n in names
                  if n.rstrip("/").rsplit("/", 1)[-1].isdigit())


def check_visible_versions(registry, fs, root: str, model: str) -> dict[str, int]:
    """Every numeric dir that carries saved_model.pb|cpb matches its release record, byte for byte.

    Returns counts: complete versions, marker-less numeric dirs (a commit cut
    short between payload and marker; TensorFlow sees no model there), and
    complete ones still waiting for their record (cut short after the marker).
    """
    counts = {"complete": 0, "without_marker": 0, "unrecorded": 0}
    recorded = set(registry.list_versions(model))
    for version in numeric_dirs(fs, f"{root}/{model}"):
        names = {p.rsplit("/", 1)[-1] for p in fs.find(f"{root}/{model}/{version}")}
        if not names & {"saved_model.pb", "saved_model.cpb"}:
            counts["without_marker"] += 1
            continue
        counts["complete"] += 1
        if version in recorded:
            assert registry.verify_version(model, version) == [], f"{model}/{version} differs from its record"
        else:  # the commit died between marker and record; the rerun writes the record
            counts["unrecorded"] += 1
    return counts
