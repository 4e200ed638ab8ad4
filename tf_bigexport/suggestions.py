"""' (did you mean 'x'?)' hints for misspelt names. A leaf module every layer may import."""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable


def did_you_mean(word: object, choices: Iterable[str], show: Callable[[str], str] = repr) -> str:
    """The hint naming the closest of `choices` to `word`, or '' (also for a `word` that is no string)."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1)
    return f" (did you mean {show(close[0])}?)" if close else ""
