"""The optional parts of the install: which modules the ``train`` extra brings, and a one-line error where a
command needs them on an install without them (``pip install 'toxdistill[serve]'`` serves exports, no torch)."""

from __future__ import annotations

import importlib.util

from toxdistill.errors import ToxdistillError

TRAIN_INSTALL = "pip install 'toxdistill[train]'"
# The import names of the train extra's packages that our code imports (pyproject.toml, [train]).
TRAIN_MODULES = ("torch", "transformers", "peft", "accelerate", "safetensors", "sklearn", "scipy", "matplotlib")


def missing_modules(names: tuple[str, ...] = TRAIN_MODULES) -> list[str]:
    """Those of ``names`` that cannot be imported here, found without importing them (torch takes seconds)."""
    out = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except ValueError:  # set to None in sys.modules: as good as not installed
            found = False
        if not found:
            out.append(name)
    return out


def require_train(command: str) -> None:
    """Refuse ``command`` in one line, naming the extra, when the train extra is not (fully) installed."""
    missing = missing_modules()
    if missing:
        named = ", ".join(missing[:2]) + (f" and {len(missing) - 2} more" if len(missing) > 2 else "")
        raise ToxdistillError(f"{command} needs {named} of the train extra, not installed", TRAIN_INSTALL)


def train_error(err: ModuleNotFoundError) -> ToxdistillError | None:
    """The one-line error for a train-extra module found missing on import; None for any other module."""
    name = (err.name or "").split(".")[0]
    if name not in TRAIN_MODULES:
        return None
    return ToxdistillError(f"{name} is not installed", TRAIN_INSTALL)
