"""User-facing errors: one line, names the problem and the fix, no traceback."""

from __future__ import annotations


class ToxdistillError(Exception):
    """An error caused by the user's input. The CLI prints ``str(err)`` on one line and exits 2."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem} — {fix}")
