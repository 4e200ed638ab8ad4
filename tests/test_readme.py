"""The README as a new user meets it: its two commands are the first thing in
it, and every code block marked `<!-- test -->` runs as written, from the
repository root after `make demo` (run here as the Makefile's own recipe in a
scratch copy of the checkout: `make demo`/`make test` themselves would
rebuild .venv). The demo's "Try next" commands must be ones the README runs."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = "<!-- test -->"
# Not linked into the scratch copy: outputs of earlier runs and caches.
SKIP = {".git", ".hypothesis", ".bench", "registry", "demo-registry", "mlflow.db", "build", "dist",
        "republish.yaml", "republished"}


def readme() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def code_blocks(text: str) -> list[tuple[bool, str, str]]:
    """(marked runnable, language, body) of every fenced block, in order."""
    blocks = []
    for match in re.finditer(r"(?:(<!-- test -->)\n)?```(\w*)\n(.*?)```", text, re.S):
        blocks.append((match.group(1) is not None, match.group(2), match.group(3)))
    return blocks


def makefile_recipe(target: str) -> str:
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as f:
        text = f.read()
    recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.M).group(1)
    [line] = [l.strip() for l in recipe.splitlines()]
    return line.replace("$(PY)", ".venv/bin/python")


def test_the_two_commands_come_first():
    marked, language, body = code_blocks(readme())[0]
    lines = [l.split("#")[0].strip() for l in body.strip().splitlines()]
    assert (language, lines, marked) == ("bash", ["make demo", "make test"], False)
    assert readme().index("make demo") < readme().index("## ")


def test_marked_blocks_are_bash_and_unmarked_commands_are_not_forgotten():
    blocks = code_blocks(readme())
    assert sum(marked for marked, _, _ in blocks) >= 6
    assert all(language == "bash" for marked, language, _ in blocks if marked)
    # Any other block that runs the CLI from the checkout must be marked, so it is tested.
    for marked, language, body in blocks:
        if not marked and ".venv/bin/python" in body:
            pytest.fail(f"unmarked block runs the CLI: {body[:80]!r}")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A scratch 'fresh clone': the repository's files linked in, no registry yet. Its
    .venv is the environment running the suite (the repository's own under `make test`,
    another TensorFlow's under `tools/compat.py --full-suite`)."""
    scratch = tmp_path_factory.mktemp("readme")
    for name in os.listdir(ROOT):
        if name not in SKIP and name != ".venv" and not name.endswith(".egg-info"):
            os.symlink(os.path.join(ROOT, name), scratch / name)
    os.symlink(sys.prefix, scratch / ".venv")
    return scratch


def run(command: str, cwd) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "MLFLOW"))}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    return result.stdout


def test_demo_then_every_marked_block_runs_as_written(checkout):
    """Blocks may use what `make demo` published, nothing another block made."""
    demo = run(makefile_recipe("demo"), checkout)
    assert makefile_recipe("demo") == ".venv/bin/python -m tf_bigexport demo --registry ./registry"
    # The demo's next steps: exact commands, each one run below as part of the README.
    next_steps = demo.split("Try next:\n", 1)[1].strip().splitlines()
    marked = [body for is_marked, _, body in code_blocks(readme()) if is_marked]
    readme_lines = {line.strip() for body in marked for line in body.splitlines()}
    assert len(next_steps) >= 5
    for step in next_steps:
        assert step.strip() in readme_lines, f"demo suggests a command the README does not run: {step}"
        shlex.split(step)  # quoting is valid shell
    assert "1 chunks" not in demo and "1 files" not in demo

    # The blocks after the demo do not depend on each other: run them side by side.
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=3) as pool:
        outputs = list(pool.map(lambda body: run(body, checkout), marked))
    joined = "\n".join(outputs)
    assert "Chunk layout:" in outputs[0]  # inspect of the split model
    assert "verified: all files match the release record" in joined
    top5 = re.findall(r"top-5 (?:before saving|after loading): (\[.*\])", joined)
    assert len(top5) == 2 and top5[0] == top5[1]
    custom = re.search(r"3\.0\n6\.0\nuntraced input: (.*)\ntrainable: True gradient: 36\.0", joined)
    assert custom, joined
    assert "registered as models:/split/1" in joined and "already-registered as models:/split/1" in joined
    assert os.path.isfile(checkout / "registry" / "custom" / "1" / "saved_model.cpb")
    # The servable form: the image-format split/1 converted to split/2, which stock TensorFlow loads.
    assert "loadable by stock TensorFlow: no (program proto" in joined
    assert "loadable by stock TensorFlow: yes (plain saved_model.pb" in joined
    assert os.path.isfile(checkout / "registry" / "split" / "2" / "saved_model.pb")
    # An existing SavedModel republished (saved_model:, written by inspect --job): the .cpb as a plain .pb.
    assert os.path.isfile(checkout / "republished" / "split" / "1" / "saved_model.pb")
