"""The JSON API: the served models, and classifying comments.

Endpoints that run a model are plain ``def`` so Starlette runs them in its thread pool and the event
loop stays free for /healthz and other requests; each model's lock (see ``models.ServedModel``) keeps
two threads off the same model at once.
"""

from __future__ import annotations

from fastapi import APIRouter

from toxdistill.serve.errors import ApiError
from toxdistill.serve.registry import Registry
from toxdistill.serve.schemas import MAX_TEXTS, ClassifyRequest, ClassifyResponse, ErrorResponse, ModelsResponse

# Occluded variants one request may ask for: 256 tweets of ~16 words each.
MAX_EXPLAIN_VARIANTS = 4096

router = APIRouter(tags=["api"])


@router.get("/api/models", response_model=ModelsResponse, summary="The served models and their test metrics")
def api_models(registry: Registry) -> dict:
    return {"default": registry.default, "models": [m.info() for m in registry.models.values()]}


@router.post(
    "/api/classify",
    response_model=ClassifyResponse,
    response_model_exclude_none=True,
    summary="Classify one or more comments",
    responses={
        404: {"model": ErrorResponse, "description": "Unknown model"},
        413: {"model": ErrorResponse, "description": "Too many texts or body too large"},
    },
)
def api_classify(req: ClassifyRequest, registry: Registry) -> dict:
    """Labels use the model's tuned decision offsets; probabilities are calibrated
    (temperature and class bias fitted on validation).
    With ``explain``, each word gets the drop in the predicted class's probability when it is removed."""
    texts = req.text_list()
    if len(texts) > MAX_TEXTS:
        raise ApiError(413, f"{len(texts)} texts in one request; the limit is {MAX_TEXTS}")
    m = registry.get(req.model)
    if req.explain:
        cost = sum(m.explain_budget(t) for t in texts)
        if cost > MAX_EXPLAIN_VARIANTS:
            raise ApiError(
                413,
                f"explaining these texts needs {cost} model passes; the limit is {MAX_EXPLAIN_VARIANTS}: send fewer texts",
            )
    return {"model": m.name, "results": m.classify(texts, explain=req.explain)}
