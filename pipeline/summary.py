"""Reading job outcomes back and printing the summary table."""
from __future__ import annotations

import json
from typing import Any

from tf_bigexport.byte_sizes import human_bytes
from tf_bigexport.savedmodel_files import SAVED_MODEL_CPB


def read_outcomes(outcomes_dir: str) -> list[dict[str, Any]]:
    from tf_bigexport import storage
    store = storage.open_store(outcomes_dir)
    names = [n for n in store.list_names(store.root) if n.endswith(".json") and not n.startswith(".")]
    return [json.loads(data) for _, data in sorted(store.read_many([store.join(n) for n in names]).items())]


def human_size(size: int | None) -> str:
    return "-" if size is None else human_bytes(size)


def plural(count: int | None, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def proto_description(outcome: dict[str, Any]) -> str:
    """'saved_model.pb, servable', or 'saved_model.cpb, 19 chunks, image format' for a split proto."""
    proto = outcome.get("proto_file")
    form = (outcome.get("loading") or {}).get("form")
    if proto == SAVED_MODEL_CPB:
        return f"{proto}, {plural(outcome.get('chunks'), 'chunk')}" + (f", {form} format" if form else "")
    return str(proto) + (f", {form}" if form else "")


def loader_warnings(outcomes: list[dict[str, Any]]) -> list[str]:
    """One line per published version that stock TensorFlow cannot load."""
    return [f"warning: job {o['model_name']!r} version {o['version']} needs the image-format loader "
            f"(stock TensorFlow, TF Serving and Vertex AI cannot load it): "
            f"{(o.get('loading') or {}).get('reason', o.get('proto_file'))}"
            for o in sorted(outcomes, key=lambda o: o["model_name"])
            if o["status"] == "published" and o.get("loadable_by_stock_tensorflow") is False]


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
    warnings = loader_warnings(outcomes)
    if warnings:
        out += [""] + warnings
    registered = registration_lines(outcomes)
    if registered:
        out += [""] + registered
    failures = [o for o in outcomes if o["status"] != "published"]
    if failures:
        out.append("")
        out += [f"job {o['model_name']!r} failed in stage {o['stage']!r}: {o['error']}"
                for o in sorted(failures, key=lambda o: o["model_name"])]
    return "\n".join(out)
