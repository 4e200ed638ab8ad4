"""Reading job outcomes back and printing the summary table."""
from __future__ import annotations

import json
import os
from typing import Any


def read_outcomes(outcomes_dir: str) -> list[dict[str, Any]]:
    if "://" in outcomes_dir:
        import fsspec
        fs, root = fsspec.core.url_to_fs(outcomes_dir)
        paths = sorted(p for p in fs.ls(root, detail=False) if p.endswith(".json"))
        return [json.loads(fs.cat_file(p)) for p in paths]
    if not os.path.isdir(outcomes_dir):
        return []
    outcomes = []
    for name in sorted(os.listdir(outcomes_dir)):
        if name.endswith(".json") and not name.startswith("."):
            with open(os.path.join(outcomes_dir, name), encoding="utf-8") as f:
                outcomes.append(json.load(f))
    return outcomes


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def plural(count: int | None, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def proto_description(outcome: dict[str, Any]) -> str:
    """'saved_model.pb', or 'saved_model.cpb, 19 chunks' for a split proto."""
    proto = outcome.get("proto_file")
    if proto == "saved_model.cpb":
        return f"{proto}, {plural(outcome.get('chunks'), 'chunk')}"
    return str(proto)


def registration_failures(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Published jobs that some model registry did not take (the version stays published)."""
    return [o for o in outcomes if o["status"] == "published"
            and any(r.get("status") == "failed" for r in o.get("registrations") or [])]


def registration_lines(outcomes: list[dict[str, Any]]) -> list[str]:
    from tf_bigexport.registries import RegistrationConfig, RegistrationResult
    lines = []
    for o in sorted(outcomes, key=lambda o: o["model_name"]):
        results = [RegistrationResult.from_dict(r) for r in o.get("registrations") or []]
        # The JSON index alone is the normal case, written by every commit: worth a line only if it failed.
        if o["status"] != "published" or all(r.ok and r.registry == "index" for r in results):
            continue
        lines.append(f"job {o['model_name']!r} registered: " + "; ".join(r.describe() for r in results))
        if not all(r.ok for r in results):
            retry = RegistrationConfig(**(o.get("registration") or {})).retry_command(o["uri"])
            lines.append(f"  the version stays published; retry registering with: {retry}")
    return lines


def summary_rows(outcomes: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for o in sorted(outcomes, key=lambda o: o["model_name"]):
        if o["status"] == "published":
            rows.append([o["model_name"], str(o["version"]), o.get("uri") or "-", human_size(o.get("size")),
                         (o.get("fingerprint") or {}).get("saved_model_checksum", "-"),
                         f"published ({proto_description(o)})"])
        else:
            rows.append([o["model_name"], "-", "-", "-", "-", f"FAILED in {o['stage']}"])
    return rows


def format_summary(outcomes: list[dict[str, Any]]) -> str:
    """The table (job, version, URI, size, fingerprint, status), then each failure's error."""
    header = ["job", "version", "uri", "size", "fingerprint", "status"]
    rows = summary_rows(outcomes)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    registered = registration_lines(outcomes)
    if registered:
        out += [""] + registered
    failures = [o for o in outcomes if o["status"] != "published"]
    if failures:
        out.append("")
        out += [f"job {o['model_name']!r} failed in stage {o['stage']!r}: {o['error']}"
                for o in sorted(failures, key=lambda o: o["model_name"])]
    return "\n".join(out)
