"""``toxdistill serve``: a web page and a JSON API over the models of one run.

``models`` (loading, locking, micro-batching, explanations) needs no web framework; ``app`` needs the
``serve`` extra (FastAPI, uvicorn, python-multipart, Jinja2).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "load_models"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing the package (e.g. for the CLI's --help) does not pull in FastAPI.
    if name == "create_app":
        from toxdistill.serve.app import create_app

        return create_app
    if name == "load_models":
        from toxdistill.serve.models import load_models

        return load_models
    raise AttributeError(name)
