"""The models one app serves, handed to the routes as a FastAPI dependency.

``create_app`` puts one ``ModelRegistry`` on ``app.state``; a route asks for it with a ``registry: Registry``
parameter, so routes are plain module functions instead of closures over the loaded models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from toxdistill.serve.errors import ApiError
from toxdistill.serve.models import ServedModel, default_model


@dataclass(frozen=True)
class ModelRegistry:
    models: dict[str, ServedModel]
    run_name: str
    default: str

    @classmethod
    def of(cls, models: dict[str, ServedModel], run_name: str) -> ModelRegistry:
        """The registry over loaded models, with the default a client gets when it names none."""
        if not models:
            raise ValueError("create_app needs at least one model")
        return cls(models, run_name, default_model(models))

    @property
    def names(self) -> list[str]:
        return list(self.models)

    @property
    def label_names(self) -> list[str]:
        """The run's classes (every model of a run has the same ones)."""
        return next(iter(self.models.values())).label_names

    def find(self, name: str | None) -> ServedModel | None:
        """The named model, or the default for no name (or ``""``, an untouched form field); None if unknown.

        Names are only ever dictionary keys: a name is never joined onto a path.
        """
        return self.models.get(name or self.default)

    def get(self, name: str | None) -> ServedModel:
        """``find`` for the JSON API: an unknown name is a 404 that lists the valid ones."""
        m = self.find(name)
        if m is None:
            names = self.names
            raise ApiError(404, f"unknown model {name!r}; valid models: {', '.join(names)}", valid_models=names)
        return m


async def get_registry(request: Request) -> ModelRegistry:
    # async: it only reads app state, so it need not take a thread-pool worker as a sync dependency would.
    registry: ModelRegistry = request.app.state.registry
    return registry


Registry = Annotated[ModelRegistry, Depends(get_registry)]
