"""Progress messages: one name (``say``) and one type (``Say``) for every function that reports as it works.

A library function takes ``say: Say = quiet`` and calls ``say("...")`` for each step a person would want to
see; the CLI passes ``stderr_say(...)`` and tests pass a list's ``append``. Progress *bars* are another thing:
those are switched with ``progress: bool``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Say = Callable[[str], None]


def quiet(msg: str) -> None:
    """The default ``say``: a library call prints nothing unless asked."""


def stderr_say(prefix: str = "[toxdistill]") -> Say:
    """A ``say`` that writes ``prefix msg`` to stderr at once (stdout stays for results)."""

    def say(msg: str) -> None:
        print(f"{prefix} {msg}", file=sys.stderr, flush=True)

    return say
