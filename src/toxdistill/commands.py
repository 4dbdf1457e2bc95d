"""Sub-commands beyond ``run``. Each lives in its own ``cli_<name>.py`` module with a
``register(subparsers)`` function and imports its heavy dependencies only when it runs."""

from __future__ import annotations

import importlib

_MODULES = ("cli_evaluate", "cli_export", "cli_predict", "cli_bench", "cli_serve")


def _registrars():
    out = []
    for m in _MODULES:
        try:
            mod = importlib.import_module(f".{m}", __package__)
        except ModuleNotFoundError as e:
            if e.name and e.name.endswith(m):
                continue  # not built yet
            raise
        out.append(mod.register)
    return out


REGISTRY = _registrars()
