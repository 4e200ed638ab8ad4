"""docs/cli.md matches the CLI: each command's section holds the table of its
options and arguments, with the help text --help prints (generated from the
parser here, so a new option without docs, or docs of a removed one, fail)."""
from __future__ import annotations

import os
import re
import sys

from tf_bigexport.pipeline import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "cli.md")


def _cell(text: str) -> str:
    """Markdown table cell: one line, `|` escaped, and `<` too (else `<model>` renders as a tag)."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "\\<")


def options_table(command: str) -> str:
    """The markdown table of a command's arguments, as docs/cli.md must show it."""
    sub = cli.subparser(cli.build_parser(), command)
    rows = ["| argument | meaning |", "|---|---|"]
    for action in sub._actions:
        if action.dest in ("help", "verbose"):
            continue
        if action.option_strings:
            metavar = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
            names = ", ".join(f"`{o}{metavar}`" for o in action.option_strings)
        else:
            names = f"`{action.metavar or action.dest}`"
        rows.append(f"| {names} | {_cell(action.help)} |")
    return "\n".join(rows) + "\n"


def sections() -> dict[str, str]:
    """command -> the text of its `### tf-bigexport COMMAND` section in docs/cli.md."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    parts = re.split(r"^### `tf-bigexport (\w+)", text, flags=re.M)
    return {parts[i]: parts[i + 1].split("\n## ")[0] for i in range(1, len(parts), 2)}


def test_every_command_has_a_section_with_its_options_table():
    documented = sections()
    assert set(documented) == {c.name for c in cli.COMMANDS}
    for command in cli.COMMANDS:
        assert options_table(command.name) in documented[command.name], (
            f"docs/cli.md: the table of `{command.name}` differs from its --help; expected:\n"
            f"{options_table(command.name)}")
        first_paragraph = " ".join(documented[command.name].split("\n\n")[1].split())
        assert first_paragraph.lower().startswith(command.help.lower()), command.name  # the one-line help


if __name__ == "__main__":  # print the tables, to paste into docs/cli.md
    for name in (sys.argv[1:] or [c.name for c in cli.COMMANDS]):
        print(f"### `tf-bigexport {name}`\n\n{options_table(name)}")
