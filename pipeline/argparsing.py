"""Strict argument parsing for the CLI: no abbreviations, no unknown options
(each refused with a "did you mean"), and `-` or `_` in any option name."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Iterable, Sequence

from tf_bigexport.suggestions import did_you_mean


class UsageError(ValueError):
    """A command line that cannot be obeyed; ``prog`` names the (sub)command."""

    def __init__(self, message: str, prog: str | None = None):
        super().__init__(message)
        self.prog = prog


@dataclasses.dataclass(frozen=True)
class Option:
    """A long option, declared once: its help goes to --help and the docs."""
    name: str  # with underscores, e.g. "work_dir"
    help: str
    metavar: str | None = None
    kind: str = "value"  # "value" | "append" | "flag"

    def add_to(self, parser, dest: str | None = None) -> None:
        kwargs: dict = {"help": self.help, "dest": dest or self.name}
        if self.kind == "flag":
            kwargs["action"] = "store_true"
        else:
            kwargs["metavar"] = self.metavar
            if self.kind == "append":
                kwargs["action"] = "append"
        parser.add_argument(f"--{self.name}", **kwargs)


def canonical(token: str) -> str:
    """`--tag-set=x` -> `--tag_set=x`: options are declared with `_`, and either spelling is accepted."""
    if not token.startswith("--") or token == "--":
        return token
    name, eq, value = token.partition("=")
    return "--" + name[2:].replace("-", "_") + eq + value


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean --x?)' for the closest choice, or ''."""
    return did_you_mean(canonical(word), choices, show=str)


class StrictParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are UsageErrors and that refuses what it does not know."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # `--reg` must not quietly mean --registry
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(message, prog=self.prog)

    @staticmethod
    def split_tail(argv: list[str]) -> tuple[list[str], list[str]]:
        """(arguments before the first `--`, arguments after it)."""
        if "--" in argv:
            at = argv.index("--")
            return argv[:at], argv[at + 1:]
        return argv, []

    def option_strings(self) -> set[str]:
        return {s for action in self._actions for s in action.option_strings if s.startswith("--")}

    def parse_strictly(self, argv: Sequence[str]) -> argparse.Namespace:
        namespace, extras = self.parse_known_args([canonical(a) for a in argv])
        refuse_extras(extras, self.option_strings(), self.prog)
        return namespace


def refuse_extras(extras: Sequence[str], known: Iterable[str], prog: str | None,
                  hint: dict[str, str] | None = None, typed: dict[str, str] | None = None) -> None:
    """Raises a UsageError for the first argument nobody took (none: returns).

    ``hint``: an explanation for some option names; ``typed``: canonical name ->
    the spelling the user typed, which is what the message shows.
    """
    if not extras:
        return
    options = [e for e in extras if e.startswith("-")]
    if not options:
        raise UsageError(f"unexpected argument {extras[0]!r}", prog=prog)
    name = options[0].partition("=")[0]
    shown = (typed or {}).get(name, name)
    extra = (hint or {}).get(name)
    if extra:
        raise UsageError(f"unrecognized option {shown}: {extra}", prog=prog)
    raise UsageError(f"unrecognized option {shown}{suggest(name, known)}", prog=prog)


def typed_spellings(argv: Sequence[str]) -> dict[str, str]:
    """canonical option name -> as typed, for messages."""
    return {canonical(a).partition("=")[0]: a.partition("=")[0] for a in argv if a.startswith("--")}
