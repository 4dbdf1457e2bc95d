"""Request and response bodies of the JSON API; FastAPI turns them into the OpenAPI schema."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from toxdistill.data.readers import safe_text

MAX_TEXTS = 256


class ClassifyRequest(BaseModel):
    # Unknown keys are refused so a typo such as "text" or "modle" is an error, not silently ignored.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"texts": ["you are a wonderful person"], "model": "even", "explain": False}]},
    )

    texts: list[str] | str = Field(
        description=f"One comment, or a list of up to {MAX_TEXTS}. Text longer than the model's window is truncated."
    )
    model: str | None = Field(default=None, description="Model name from GET /api/models; default: best test macro F1.")
    explain: bool = Field(default=False, description="Add per-word occlusion scores (slower: one pass per word).")

    @field_validator("texts")
    @classmethod
    def _not_blank(cls, v: list[str] | str) -> list[str] | str:
        items = [v] if isinstance(v, str) else v
        if not items:
            raise ValueError("texts is empty: send at least one comment")
        blank = [i for i, t in enumerate(items) if not t.strip()]
        if blank:
            if isinstance(v, str):
                raise ValueError("the text is empty or only whitespace")
            more = f" (and {len(blank) - 1} more)" if len(blank) > 1 else ""
            raise ValueError(f"item {blank[0]}{more} is empty or only whitespace")
        # Valid JSON can carry lone surrogates ("\ud800"); no tokenizer or UTF-8 response accepts them.
        return safe_text(v) if isinstance(v, str) else [safe_text(t) for t in v]

    def text_list(self) -> list[str]:
        return [self.texts] if isinstance(self.texts, str) else list(self.texts)


class WordScore(BaseModel):
    word: str
    score: float = Field(
        description="Drop in the predicted class's probability when this word is removed (multi-label: of the "
        "most probable decided label, or the most probable label when none is decided)."
    )


class ClassifyResult(BaseModel):
    label: str | None = Field(default=None, description="The decided class (single-label models).")
    label_id: int | None = None
    labels: list[str] | None = Field(
        default=None,
        description="Multi-label models, in place of label and label_id: every label whose calibrated probability "
        "reaches its threshold, in the model's label order; empty when none does.",
    )
    probabilities: dict[str, float] = Field(
        description="Calibrated probability of each class (multi-label: of each label, independently)."
    )
    truncated: bool = Field(description="The text was longer than the model's window; only its start was read.")
    word_scores: list[WordScore] | None = Field(default=None, description="Only when explain is true.")


class ClassifyResponse(BaseModel):
    model: str
    results: list[ClassifyResult]


class ModelMetrics(BaseModel):
    accuracy: float | None = None
    f1_weighted: float | None = None
    f1_macro: float | None = None
    f1_per_class: dict[str, float] = Field(default_factory=dict)


class ModelInfo(BaseModel):
    name: str
    kind: str | None = None
    layers: list[int] | None = None
    label_names: list[str]
    task: str = Field(
        default="single_label",
        description="single_label: one label per text (label, label_id); multi_label: any number (labels).",
    )
    max_length: int | None = None
    params: int | None = None
    trainable_params: int | None = None
    size_mb: float | None = None
    throughput_sps: float | None = Field(
        default=None, description="Test-set samples per second measured after training."
    )
    metrics: ModelMetrics


class ModelsResponse(BaseModel):
    default: str
    models: list[ModelInfo]


class Health(BaseModel):
    status: str = "ok"


class ErrorResponse(BaseModel):
    detail: str
    valid_models: list[str] | None = None
