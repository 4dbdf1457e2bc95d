"""What the HTML pages show: the templates, the class colours, and the context each page is rendered with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from toxdistill.evaluation.tables import fmt
from toxdistill.serve.auth import bearer, challenge, page_key_ok
from toxdistill.serve.batch import MAX_ROWS, MAX_UPLOAD_BYTES
from toxdistill.serve.models import ServedModel, explained_class
from toxdistill.serve.registry import ModelRegistry

HERE = Path(__file__).parent

# Colours (and the CSS classes of static/style.css) by what a class means, not by its position: the class of
# interest is red; of the others, an "offensive" one is orange and the rest green.
COLOURS = {"hate": (220, 53, 69), "offensive": (253, 126, 20), "neither": (25, 135, 84)}
NEGATIVE = (13, 110, 253)


def label_css(name: str, focus_class: str) -> str:
    """The colour class of label ``name`` for a model whose class of interest is ``focus_class``."""
    if name == focus_class:
        return "hate"
    return "offensive" if "offens" in name.lower() else "neither"


def label_colour(name: str, focus_class: str) -> tuple[int, int, int]:
    return COLOURS[label_css(name, focus_class)]


templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(fmt=fmt, label_css=label_css)


def model_options(registry: ModelRegistry) -> list[dict[str, Any]]:
    """The model pickers' entries: each model with its macro F1 and speed, so the choice is an informed one."""
    return [
        {
            "name": n,
            "label": f"{m.title} — macro F1 {fmt(m.f1_macro)} · {fmt(m.throughput, ',.0f')} texts/s",
            "info": m.info(),
        }
        for n, m in registry.models.items()
    ]


def render_index(request: Request, registry: ModelRegistry, status: int = 200, **ctx: Any) -> HTMLResponse:
    """The main page; ``ctx`` adds what a form post produced (a result, a comparison or an error)."""
    base = {
        "run_name": registry.run_name,
        "options": model_options(registry),
        "default": registry.default,
        "selected": registry.default,
        "text": "",
        "compare": False,
        "max_upload_mb": MAX_UPLOAD_BYTES // (1024 * 1024),
        "max_rows": MAX_ROWS,
        "labels": registry.label_names,
        "auth": request.app.state.api_keys is not None,
    }
    return templates.TemplateResponse(request, "index.html", {**base, **ctx}, status_code=status)


def form_model(
    request: Request, registry: ModelRegistry, model: str, form_key: str, field: str, **ctx: Any
) -> ServedModel | HTMLResponse:
    """The model a page form names, or the page to answer with instead, its message in the form's ``field``
    (``error`` or ``batch_error``): 401 without a valid key (``auth.page_key_ok``), 404 for an unknown model."""
    keys = request.app.state.api_keys
    authorization = request.headers.get("authorization")
    if not page_key_ok(keys, authorization, form_key):
        given = form_key.strip() or bearer(authorization)
        detail = (
            "type the API key for this server first"
            if given is None
            else "that API key is not valid: check it and try again"
        )
        page = render_index(request, registry, 401, key_rejected=given is not None, **{field: detail}, **ctx)
        page.headers["WWW-Authenticate"] = challenge(given)[1]
        return page
    m = registry.find(model)
    if m is None:
        error = f"unknown model {model!r}; pick one of: {', '.join(registry.names)}"
        return render_index(request, registry, 404, **{field: error}, **ctx)
    return m


def result_view(m: ServedModel, text: str) -> dict:
    """One model's answer for the page: the result, a bar per class, and each word shaded by its score."""
    res, scores = m.explain(text)
    explained = m.label_names[explained_class(res, m.label_names)]
    # The floor keeps near-zero scores pale: when no word moves the probability by five points,
    # no word should look decisive just because it is the largest of the small ones.
    peak = max(max((abs(s["score"]) for s in scores), default=0.0), 0.05)
    colour = label_colour(explained, m.focus_class)
    words = []
    for s in scores:
        rgb = colour if s["score"] >= 0 else NEGATIVE
        alpha = min(1.0, abs(s["score"]) / peak) * 0.85
        words.append({**s, "style": f"background-color: rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {alpha:.2f})"})
    probs = [{"name": n, "p": p, "css": label_css(n, m.focus_class)} for n, p in res["probabilities"].items()]
    return {
        **res,
        "model": m.name,
        "css": label_css(explained, m.focus_class),
        "explained": explained,
        "pills": decided_pills(res, m),
        "probs": probs,
        "words": words,
    }


def decided_pills(res: dict, m: ServedModel) -> list[dict]:
    """What a result decided, as the page shows it: each decided label (one for a single-label model; any number,
    possibly none, for a multi-label one) with its probability and colour."""
    names = res["labels"] if "labels" in res else [res["label"]]
    return [{"name": n, "p": res["probabilities"][n], "css": label_css(n, m.focus_class)} for n in names]


def compare_rows(registry: ModelRegistry, text: str) -> list[dict]:
    """Every model's answer for one text, with its macro F1 and speed, for the compare-all table."""
    rows = []
    for m in registry.models.values():
        r = m.classify([text])[0]
        rows.append(
            {
                **r,
                "model": m.name,
                "css": label_css(m.label_names[explained_class(r, m.label_names)], m.focus_class),
                "pills": decided_pills(r, m),
                "f1_macro": m.f1_macro,
                "speed": m.throughput,
            }
        )
    return rows
