"""`demo`: export the built-in demo models into a local registry, then say what to try next."""
from __future__ import annotations

import os
import shlex
import sys
from typing import Any

from tf_bigexport.pipeline.demo_models import demo_jobs
from tf_bigexport.pipeline.exit_codes import ExitCode
from tf_bigexport.pipeline.export import run_export
from tf_bigexport.pipeline.jobs import parse_jobs
from tf_bigexport.pipeline.summary import format_summary, plural, proto_description
from tf_bigexport.savedmodel_files import SAVED_MODEL_CPB

# Inputs that fit each demo model's serving signature, for the printed `call` commands.
_CALL_EXAMPLES = {
    "mobilenet": "images=np.random.rand(1, 96, 96, 3).astype(np.float32)",
    "vocab": 'tokens=np.array([b"token3", b"token11", b"unknown"])',
    "split": "x=np.ones((1, 256), dtype=np.float32)",
    "large": "x=np.zeros((1, 4), dtype=np.float32)",
}


def shown_path(path: str) -> str:
    """`path` relative to the current directory when it is below it (what a user would type)."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def next_steps(outcomes: list[dict[str, Any]], registry: str) -> str:
    published = sorted((o for o in outcomes if o["status"] == "published"), key=lambda o: o["model_name"])
    if not published:
        return "Nothing was published; see the errors above."
    py = shown_path(sys.executable)  # how to invoke this interpreter from here
    cli = f"{py} -m tf_bigexport"
    registry = shown_path(registry)
    lines = [f"Published to {registry}:"]
    for o in published:
        lines.append(f"  {o['model_name']}/{o['version']}  ({proto_description(o)}, {plural(o['files'], 'file')})")
    split = next((o for o in published if o["proto_file"] == SAVED_MODEL_CPB), published[0])
    split_uri = os.path.join(registry, split["model_name"], str(split["version"]))
    lines += ["", "Try next:", f"  {cli} inspect {shlex.quote(split_uri)}"]
    for o in published:
        uri = os.path.join(registry, o["model_name"], str(o["version"]))
        if o["model_name"] in _CALL_EXAMPLES:
            lines.append(f"  {cli} call {shlex.quote(uri)} --signature serving_default "
                         f"--input-exprs {shlex.quote(_CALL_EXAMPLES[o['model_name']])}")
    lines.append(f"  {cli} verify {shlex.quote(split_uri)}")
    snippet = (f'from tf_bigexport import imageformat; import tensorflow as tf; m = imageformat.load("{split_uri}"); '
               + ('print(m.signatures["serving_default"](x=tf.ones((1, 256))))' if split["model_name"] == "split"
                  else "print(list(m.signatures))"))
    lines.append(f"  {py} -c {shlex.quote(snippet)}")
    return "\n".join(lines)


def demo_command(args) -> int:
    registry = os.path.abspath(args.registry)
    os.makedirs(registry, exist_ok=True)
    jobs = parse_jobs(demo_jobs(registry, large=args.large), source="demo jobs")
    outcomes = run_export(jobs)
    print(format_summary(outcomes))
    print()
    print(next_steps(outcomes, registry))
    return ExitCode.OK if all(o["status"] == "published" for o in outcomes) else ExitCode.FAILED
