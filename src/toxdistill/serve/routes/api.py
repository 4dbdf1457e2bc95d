"""The JSON API: the served models, and classifying comments.

Classifying is ``async``: the request waits on the event loop for its rows from the model's micro-batcher,
which runs the model on a thread of its own, so a waiting request holds no thread and the loop stays free
for /healthz and new requests. If the client hangs up first, its job is dropped. Explanations (many passes
of one text) run on Starlette's thread pool, under the model's lock (see ``models.ServedModel``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive

from toxdistill.serve.errors import ApiError, queue_timeout_error
from toxdistill.serve.metrics import CLIENT_GONE
from toxdistill.serve.models import QueueTimeout, ServedModel
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
        429: {"model": ErrorResponse, "description": "Too many requests in progress; retry after Retry-After"},
        503: {"model": ErrorResponse, "description": "Waited too long for the model, or shutting down; retry"},
    },
)
async def api_classify(req: ClassifyRequest, registry: Registry, request: Request) -> Response:
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
        body: dict | None = {"model": m.name, "results": await run_in_threadpool(m.classify, texts, True)}
    else:
        try:
            body = await classify_texts(m, texts, request.receive)
        except QueueTimeout as e:
            raise queue_timeout_error(e) from None
    if body is None:
        return Response(status_code=CLIENT_GONE)
    # The results are plain dicts of the documented shape; answering with them directly skips a second
    # validation of what the model code built (the response_model above still documents the schema).
    return JSONResponse(body)


async def classify_texts(m: ServedModel, texts: list[str], receive: Receive) -> dict | None:
    """The answer for ``texts`` (already checked against the limits), or None if the client hung up while they
    waited for the model (``receive`` is the request's ASGI receive, its body already read)."""
    results = await m.classify_async(texts, gone=_disconnected(receive))
    return None if results is None else {"model": m.name, "results": results}


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has hung up. The body has been read by then, so the next ASGI message for this
    request is ``http.disconnect``, or nothing until the answer is sent."""
    while (await receive())["type"] != "http.disconnect":
        pass
