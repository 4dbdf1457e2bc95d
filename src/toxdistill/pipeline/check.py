"""``toxdistill check RUN``: every model of a run on its test split, clean and under each perturbation.

For each model and perturbation kind: macro F1, the focus class's F1 and recall, their drop from clean text,
the flip rate and, for every model but the teacher, fidelity to the teacher (top-1 agreement and mean
total-variation distance, the teacher scored on the same perturbed texts). Results go to
``RUN/robustness.json`` and a heatmap ``RUN/robustness.png``; ``toxdistill run`` calls this before its report.

Each model's drop is also summed up apart on the kinds its weights were trained on (its folder's recorded
stage: ``train.perturb`` or ``distill.augment`` and their kinds) and on the kinds held out from it: a model
graded only on the generator it trained with grades its own homework. The held-out family of
``data/perturb.py``, which no default stage trains on, is the yardstick common to every model.

A perturbed text reaches each model through the front-end its ``data.clean`` switches on (``frontend_text``), as
a user's text would. Only the rows a perturbation changed are scored again: a row with the clean text, or for a transformer the
clean text after the tokenizer's normalizer, has the clean logits. Each model's perturbed logits are cached in
``RUN/robustness/<model>.npz`` under a key of everything they depend on, so adding a stage to a run scores only
the new model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from toxdistill.config import RobustnessConfig
from toxdistill.console import Say, quiet
from toxdistill.data.dataset import frontend_on, frontend_text
from toxdistill.data.perturb import CHAR_KINDS, HELDOUT_KINDS, KINDS, check_kinds, perturb_texts
from toxdistill.data.readers import safe_text
from toxdistill.data.split import load_run_split
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.plots import plot_robustness
from toxdistill.evaluation.robustness import (
    class_scores,
    heatmap_view,
    held_out_summary,
    robustness_row,
    total_variation,
)
from toxdistill.files import (
    BASELINE,
    CHAR_PERTURBATIONS,
    CONFIG_FILE,
    META_FILE,
    SEEDS_DIR,
    TEST_LOGITS,
    VAL_LOGITS,
)
from toxdistill.inference.predict import load_scorer
from toxdistill.io import atomic_write_json
from toxdistill.models.baseline import TfidfLR
from toxdistill.runs import find_models, is_baseline_folder, load_run_config, read_meta, select_models

CACHE_DIR = "robustness"
# The saved clean logits of each split (written by the pipeline's one evaluation path).
_SAVED_LOGITS = {"test": TEST_LOGITS, "val": VAL_LOGITS}


def output_names(split: str) -> tuple[str, str]:
    """The result and heatmap files: ``robustness.json``/``.png`` for the test split, ``robustness-val.*`` else."""
    suffix = "" if split == "test" else f"-{split}"
    return f"robustness{suffix}.json", f"robustness{suffix}.png"


def seed_repeats(run_dir: Path, names: list[str]) -> dict[str, Path]:
    """``{"<stage>@seed<N>": folder}`` for the finished seed repeats of the named stages (``seeds/seed<N>/``)."""
    out = {}
    for d in sorted((run_dir / SEEDS_DIR).glob("seed*/*")):
        if d.name in names and (d / META_FILE).is_file():
            out[f"{d.name}@{d.parent.name}"] = d
    return out


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _texts_key(texts: list[str]) -> str:
    return hashlib.sha256("\x1e".join(texts).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _model_logits(
    name: str,
    folder: Path,
    split: str,
    clean_texts: list[str],
    perturbed: dict[str, list[str]],
    cache: Path,
    threads: int | None,
    batch_size: int,
    say: Say,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Clean and perturbed logits of one model, from its cache when every input is the same."""
    meta = read_meta(folder)
    key = _key(
        meta.get("fingerprint"),
        meta.get("export"),
        _texts_key(clean_texts),
        {k: _texts_key(v) for k, v in perturbed.items()},
    )
    f = cache / (f"{name}.npz" if split == "test" else f"{name}-{split}.npz")
    if f.is_file():
        with np.load(f, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return z["clean"], {k: z[f"k_{k}"] for k in perturbed}
    scorer = load_scorer(folder, threads)
    saved = folder / _SAVED_LOGITS[split]
    clean = np.load(saved) if saved.is_file() else None
    if clean is None or len(clean) != len(clean_texts):
        clean = scorer.logits(clean_texts, batch_size)[0]
    out = {}
    normalize = _normalizer(scorer)  # None for the TF-IDF floor: its texts are compared as they are
    clean_norm = [normalize(t) for t in clean_texts] if normalize is not None else None
    for kind, raw in perturbed.items():
        # As a user's text would reach the model: through its front-end (data.clean), which may undo the disguise.
        texts = [frontend_text(t, scorer.clean_config) for t in raw] if frontend_on(scorer.clean_config) else raw
        changed = _changed_rows(clean_texts, texts, normalize, clean_norm)
        logits = clean.copy()
        if changed.any():
            logits[changed] = scorer.logits([t for t, c in zip(texts, changed) if c], batch_size)[0]
        out[kind] = logits
    say(f"check: {name} scored on {len(perturbed)} perturbations")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f".{f.name}.tmp.npz")
    arrays: dict[str, np.ndarray] = {"key": np.asarray(key), "clean": clean, **{f"k_{k}": v for k, v in out.items()}}
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(f)
    return clean, out


def _normalizer(scorer: object) -> Callable[[str], str] | None:
    """Text → the tokenizer's normalized text (lower-cased, accents stripped for an uncased one), or None where
    the scorer has no such tokenizer."""
    backend = getattr(getattr(scorer, "tokenizer", None), "backend_tokenizer", None)
    normalizer = getattr(backend, "normalizer", None)
    if normalizer is None:
        return None
    return lambda text: normalizer.normalize_str(safe_text(text))  # as Predictor.encode, no lone surrogates


def _changed_rows(
    clean_texts: list[str],
    texts: list[str],
    normalize: Callable[[str], str] | None = None,
    clean_norm: list[str] | None = None,
) -> np.ndarray:
    """The rows whose model input a perturbation changed. With ``normalize`` (and ``clean_norm``, the clean texts
    through it) a row counts as changed only where its normalized text differs: an uncased tokenizer folds
    ``case`` and ``accent`` away entirely (every row of the default run's test split keeps the clean row's token
    ids), so those rows keep the clean logits instead of being scored again. Normalizing is about 5× cheaper
    than tokenizing."""
    changed = np.fromiter((a != b for a, b in zip(texts, clean_texts)), dtype=bool, count=len(texts))
    if normalize is not None and clean_norm is not None and changed.any():
        rows = np.flatnonzero(changed)
        changed[rows] = [normalize(texts[i]) != clean_norm[i] for i in rows]
    return changed


def baseline_word_weights(models: dict[str, Path]):
    """The TF-IDF floor's words per class, which the perturbations aim at; None without a floor."""
    if BASELINE in models and is_baseline_folder(models[BASELINE]):
        return TfidfLR.load(models[BASELINE]).class_word_weights()
    return None


def _kind_record(kind: str, perturbed: list[str], clean: list[str]) -> dict:
    changed = float(np.mean([a != b for a, b in zip(perturbed, clean)]))
    k = KINDS[kind]
    family = "held-out" if k.held_out else "training"
    return {"level": k.level, "family": family, "example": k.example, "changed": changed}


def _weights_from(meta: dict, teacher: str | None) -> str | None:
    """The model whose trained weights this one starts from: a distill-lora stage's base, the teacher for a
    student cut from its layers or a LoRA stage on it; None for a model that starts from a pretrained one."""
    stage = meta.get("stage") or {}
    if stage.get("kind") == "distill-lora":
        return stage.get("base")
    if stage.get("kind") == "lora":
        return teacher if stage.get("base") == "teacher" else None
    if meta.get("kind") == "student" and stage.get("layers") is not None and not meta.get("student_model"):
        return teacher
    return None


def trained_kinds(folder: Path, found: dict[str, Path], teacher: str | None, depth: int = 0) -> list[str]:
    """The perturbation kinds a model's weights were trained on, in ``KINDS`` order: its stage's (recorded in
    its toxdistill.json) where ``train.perturb`` or ``distill.augment`` is on, from ``train.perturb_kinds`` or
    the trainer's default, and those of the model its weights start from. A folder without a recorded stage
    (the TF-IDF floor, a given teacher) was trained on none."""
    meta = read_meta(folder)
    stage = meta.get("stage") or {}
    train, distill = stage.get("train") or {}, stage.get("distill") or {}
    kinds: set[str] = set()
    if (train.get("perturb") or 0) > 0 or (distill.get("augment") or 0) > 0:
        kinds.update(train.get("perturb_kinds") or CHAR_PERTURBATIONS)  # the trainer's default when null
    parent = _weights_from(meta, teacher)
    if parent in found and found[parent] != folder and depth < 8:  # 8: deeper than any chain of stages
        kinds.update(trained_kinds(found[parent], found, teacher, depth + 1))
    return [k for k in KINDS if k in kinds] + sorted(kinds - set(KINDS))


def check_run(
    run_dir: str | Path,
    settings: RobustnessConfig | None = None,
    models: str | list[str] | None = None,
    data: str | None = None,
    threads: int | None = None,
    batch_size: int = 64,
    plot: bool = True,
    split: str = "test",
    seeds: bool = False,
    say: Say = quiet,
    kinds: list[str] | None = None,
) -> dict:
    """Score every (or every named) model of a finished run under the perturbations of ``settings`` (the
    config's ``robustness`` block: kinds, seed, words per text) on its ``split`` ("test", or "val" to decide
    on), write ``robustness.json`` (``robustness-val.json``) and the heatmap, and return the result. With
    ``seeds`` the seed repeats of ``run --seeds N`` are scored too, as ``<stage>@seed<N>``: how much of a
    difference is seed-to-seed noise. ``kinds`` (kind or group names, ``check_kinds``) stands in for the
    settings' kinds."""
    settings = settings or RobustnessConfig()
    seed, n_words = settings.seed, settings.n_words
    run_dir = Path(run_dir)
    kinds = check_kinds(kinds or settings.kinds or list(KINDS))
    if not (run_dir / CONFIG_FILE).is_file():
        raise ToxdistillError(f"{run_dir} is not a run folder (no {CONFIG_FILE})", "give runs/<name>")
    cfg = load_run_config(run_dir)
    if cfg.data.multi_label:
        raise ToxdistillError(
            f"{run_dir} is a multi-label run: toxdistill check measures single-label models (one class per text)",
            "its models' per-label scores are in report.md; a multi-label run skips the check",
        )
    chosen = select_models(find_models(run_dir), models)
    if split not in _SAVED_LOGITS:
        raise ToxdistillError(f"unknown split {split!r}", "use test or val")
    test = getattr(load_run_split(run_dir, data), split)
    labels = np.asarray(test.labels, dtype=np.int64)
    focus = cfg.data.focus_index()
    everything = find_models(run_dir)
    weights = baseline_word_weights(everything)
    clean_texts = list(test.texts)
    perturbed = {k: perturb_texts(clean_texts, k, seed, 0, labels.tolist(), weights, n_words) for k in kinds}
    teacher = next((n for n, d in everything.items() if read_meta(d).get("kind") == "teacher"), None)
    if teacher is not None and teacher not in chosen:
        chosen = {teacher: everything[teacher], **chosen}
    if seeds:
        chosen.update(seed_repeats(run_dir, list(chosen)))
    logits = {
        n: _model_logits(n, d, split, clean_texts, perturbed, run_dir / CACHE_DIR, threads, batch_size, say)
        for n, d in chosen.items()
    }
    trained = {n: trained_kinds(d, everything, teacher) for n, d in chosen.items()}
    result = summarise(labels, logits, teacher, focus, list(test.label_names), trained)
    result.update(
        {
            "split": split,
            "seed": seed,
            "n_words": n_words,
            "targets": "TF-IDF baseline's words for the row's class" if weights else "words of 4+ letters",
            "kinds": {k: _kind_record(k, perturbed[k], clean_texts) for k in kinds},
        }
    )
    json_name, png_name = output_names(split)
    atomic_write_json(run_dir / json_name, result)
    if plot:
        plot_robustness(heatmap_view(result), run_dir / png_name)
    return result


def summarise(
    labels: np.ndarray,
    logits: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]],
    teacher: str | None,
    focus: int,
    label_names: list[str],
    trained: dict[str, list[str]] | None = None,
) -> dict:
    """The JSON-ready table: ``clean`` scores (and fidelity) per model, ``models[m][kind]`` rows, and with
    ``trained`` (each model's training kinds) ``held_out[m]``: the drop on seen against held-out kinds."""
    k = len(label_names)
    t_clean, t_pert = logits.get(teacher or "", (None, {}))
    out: dict = {"teacher": teacher, "focus_class": label_names[focus], "clean": {}, "models": {}}
    for name, (clean, pert) in logits.items():
        row = class_scores(labels, clean.argmax(-1), k, focus)
        is_teacher = name == teacher or t_clean is None
        if not is_teacher:
            row["agreement"] = float(np.mean(clean.argmax(-1) == t_clean.argmax(-1)))  # type: ignore[union-attr]
            row["tv"] = total_variation(clean, t_clean)  # type: ignore[arg-type]
        out["clean"][name] = row
        out["models"][name] = {
            kind: robustness_row(
                labels, clean, p, focus, None if is_teacher else t_clean, None if is_teacher else t_pert.get(kind)
            )
            for kind, p in pert.items()
        }
    out["worst_char_drop"] = {
        name: max((rows[c]["drop_f1_macro"] for c in CHAR_KINDS if c in rows), default=None)
        for name, rows in out["models"].items()
    }
    trained = trained or {}
    out["trained_kinds"] = {name: trained.get(name, []) for name in out["models"]}
    # A kind whose logits are the clean ones on every row never reached the model (see _changed_rows).
    invisible = {
        name: [k for k, p in pert.items() if np.array_equal(p, clean)] for name, (clean, pert) in logits.items()
    }
    out["held_out"] = {
        name: held_out_summary(rows, out["trained_kinds"][name], HELDOUT_KINDS, invisible[name])
        for name, rows in out["models"].items()
    }
    return out
