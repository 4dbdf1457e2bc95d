"""``toxdistill serve``: a web page and a JSON API over the models of one run.

``models`` (loading, locking, micro-batching, explanations) and ``auth`` (the API keys) need no web framework;
``app`` needs the ``serve`` extra (FastAPI, uvicorn, python-multipart, Jinja2, prometheus-client).
"""

from __future__ import annotations

from typing import Any

from toxdistill.serve.models import load_models

__all__ = ["create_app", "load_models"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        # heavy optional: FastAPI (the serve extra); importing the package, e.g. for the CLI's --help,
        # must work without it.
        from toxdistill.serve.app import create_app

        return create_app
    raise AttributeError(name)
