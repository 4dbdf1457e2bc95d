"""The frontier's behaviour set, and every candidate's fidelity to the teacher on it (``evaluation/behaviour.py``).

The behaviour set is a list of named sources of texts, no labels needed:

- each of the config's ``eval_sets`` (the functional suite by default), its texts cleaned as the run's data;
- ``perturbed`` and ``perturbed-held-out``: validation texts under the perturbation generator, every kind of the
  training family and of the held-out family, ``frontier.behaviour_texts`` in all, spread evenly over the kinds.
  They are made as ``toxdistill check`` makes them (``robustness.seed`` and ``robustness.n_words``, the TF-IDF
  floor's words for the row's class as targets), and only texts the perturbation changed are kept. Each is held
  to the teacher's answer on its clean original (``Source.reference`` says why); the agreement with the teacher
  on the same perturbed text is kept beside it, as ``same_text``.

Another source (unlabelled text, say) is one more ``Source`` in ``behaviour_sources``. The models are scored in
torch, their own weights, not their exports (those pass parity gates against the weights); each model's logits
are cached in ``RUN/cache/behaviour/<model>.npz`` under a key of its weights and the texts, so a resumed run or
``toxdistill frontier`` again costs a file read per model.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np

from toxdistill.config import Config, EvalSetConfig
from toxdistill.console import Say, quiet
from toxdistill.data.dataset import clean_text
from toxdistill.data.perturb import HELDOUT_KINDS, KINDS, aim_classes, perturb
from toxdistill.data.readers import read_frame
from toxdistill.data.split import Split
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.behaviour import behaviour_block
from toxdistill.export.folder import weights_fingerprint
from toxdistill.files import VAL_LOGITS
from toxdistill.inference.predict import load_scorer
from toxdistill.pipeline.check import baseline_word_weights
from toxdistill.runs import find_models

CACHE_DIR = Path("cache") / "behaviour"
PERTURBED = "perturbed"
PERTURBED_HELD_OUT = "perturbed-held-out"
# The teacher's logits on a source's reference texts go under the source's name and this suffix.
REFERENCE = "@reference"


@dataclasses.dataclass(frozen=True)
class Source:
    """One source of the behaviour set: its name in the report, its texts (ready for the tokenizer), and what
    it is, in a few words."""

    name: str
    texts: list[str]
    what: str
    # The texts whose teacher answer each text is held to, row for row; None: the texts themselves. A perturbed
    # text is held to the teacher's answer on its clean original, the answer the teacher means: the teacher is
    # itself fooled by evasive spellings, so agreeing with it on the perturbed text would reward a student for
    # being fooled the same way, and mark down the consistency-trained students for resisting.
    reference: list[str] | None = None


def behaviour_sources(cfg: Config, split: Split, models: dict[str, Path], say: Say = quiet) -> list[Source]:
    """The behaviour set of a run (see the module's docstring); an eval set that cannot be read is left out
    with a note, as the frontier must not fail on it."""
    sources = []
    for es in cfg.eval_sets:
        try:
            sources.append(eval_set_source(es, cfg))
        except (ToxdistillError, OSError, KeyError, ValueError) as e:
            say(f"frontier: behaviour set without eval set {es.name!r}: {e}")
    weights = baseline_word_weights(models)
    sources += perturbed_sources(
        list(split.val.texts),
        aim_classes(split.val.labels),
        cfg.frontier.behaviour_texts,
        cfg.robustness.seed,
        weights,
        cfg.robustness.n_words,
    )
    return [s for s in sources if s.texts]


def eval_set_source(es: EvalSetConfig, cfg: Config) -> Source:
    """An eval set's non-empty texts, cleaned as the run's training data was."""
    df = read_frame(Path(es.path), es.format, what=f"eval set {es.name!r}")
    if es.text_col not in df.columns:
        raise ToxdistillError(f"{es.path} has no column {es.text_col!r}", "fix eval_sets in the config")
    texts = [clean_text(t, cfg.data.clean) for t in df[es.text_col] if isinstance(t, str) and t.strip()]
    return Source(es.name, texts, f"eval set {es.name}")


def perturbed_sources(
    texts: list[str],
    labels: list[int],
    n: int,
    seed: int,
    weights: list[dict[str, float]] | None = None,
    n_words: int = 2,
) -> list[Source]:
    """About ``n`` perturbed copies of ``texts``, an even share per kind of ``KINDS``: for each kind, the rows
    in a seeded order whose text the kind changes. Two sources, the training family and the held-out one."""
    if n <= 0 or not texts:
        return []
    share = math.ceil(n / len(KINDS))
    by_family: dict[bool, list[tuple[str, str]]] = {False: [], True: []}
    for i, kind in enumerate(KINDS):
        order = np.random.default_rng([seed, i]).permutation(len(texts))
        got = 0
        for row in order:
            w = weights[labels[row]] if weights is not None else None
            p = perturb(texts[row], kind, seed, 0, w, n_words)
            if p != texts[row]:
                by_family[kind in HELDOUT_KINDS].append((p, texts[row]))
                got += 1
                if got == share:
                    break
    return [
        Source(
            name,
            [p for p, _ in by_family[held_out]],
            what,
            reference=[t for _, t in by_family[held_out]],
        )
        for held_out, name, what in (
            (False, PERTURBED, "validation texts under the training family's perturbations"),
            (True, PERTURBED_HELD_OUT, "validation texts under the held-out perturbations"),
        )
    ]


def _key(folder: Path, sources: list[Source]) -> str:
    parts = {
        "weights": weights_fingerprint(folder),
        "texts": {
            s.name: hashlib.sha256("\x1e".join(s.texts).encode("utf-8", "surrogatepass")).hexdigest()[:16]
            for s in sources
        },
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def model_logits(
    name: str, folder: Path, sources: list[Source], cache: Path, threads: int | None, batch_size: int = 64
) -> dict[str, np.ndarray]:
    """``{source: logits}`` of one model (torch), from its cache when its weights and every text are the same."""
    key = _key(folder, sources)
    f = cache / f"{name}.npz"
    if f.is_file():
        with np.load(f, allow_pickle=False) as z:
            if str(z["key"]) == key and all(f"s_{s.name}" in z for s in sources):
                return {s.name: z[f"s_{s.name}"] for s in sources}
    scorer = load_scorer(folder, threads)
    # One call over every source: the scorer sorts the texts by length across them.
    texts = [t for s in sources for t in s.texts]
    logits = scorer.logits(texts, batch_size)[0]
    del scorer
    gc.collect()
    out, start = {}, 0
    for s in sources:
        out[s.name] = logits[start : start + len(s.texts)]
        start += len(s.texts)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f".{f.name}.tmp.npz")
    arrays: dict[str, np.ndarray] = {"key": np.asarray(key), **{f"s_{k}": v for k, v in out.items()}}
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(f)
    return out


def measure_behaviour(
    run_dir: Path, cfg: Config, models: dict[str, Path], teacher: str, split: Split, say: Say = quiet
) -> tuple[dict[str, dict], dict]:
    """Every model's behaviour block against ``teacher`` (the teacher's own is left out: it is the reference),
    and the set's record for frontier.json: its sources (texts, what) and the seconds it took."""
    t0 = time.perf_counter()
    sources = behaviour_sources(cfg, split, find_all(run_dir, models), say)
    record = {
        "sources": {
            s.name: {
                "texts": len(s.texts),
                "what": s.what,
                "reference": "the teacher on the clean originals" if s.reference else "the teacher on the same texts",
            }
            for s in sources
        },
        "scored_with": "torch (each model's own weights)",
    }
    if not sources:
        return {}, {**record, "seconds": time.perf_counter() - t0}
    cache = run_dir / CACHE_DIR
    t_logits = model_logits(teacher, models[teacher], sources, cache, cfg.threads)
    t_logits.update(reference_logits(teacher, models[teacher], sources, split, cache, cfg.threads))
    blocks = {}
    for name, folder in models.items():
        if name == teacher:
            continue
        try:
            s_logits = model_logits(name, folder, sources, cache, cfg.threads)
        except ToxdistillError as e:  # its row stands without figures; the bound is then not checked on it
            say(f"frontier: [{name}] behaviour not measured: {e}")
            continue
        block = behaviour_block(
            {s.name: (s_logits[s.name], t_logits[s.name + (REFERENCE if s.reference else "")]) for s in sources},
            {s.name: (s_logits[s.name], t_logits[s.name]) for s in sources if s.reference is not None},
            multi_label=cfg.data.multi_label,
        )
        if block is not None:
            blocks[name] = block
    seconds = time.perf_counter() - t0
    say(f"frontier: behaviour set of {sum(len(s.texts) for s in sources)} texts scored in {seconds:.1f}s")
    return blocks, {**record, "seconds": seconds}


def reference_logits(
    teacher: str, folder: Path, sources: list[Source], split: Split, cache: Path, threads: int | None
) -> dict[str, np.ndarray]:
    """The teacher's logits on each source's reference texts, under ``<source>@reference``: from its saved
    validation logits where every reference is a validation text (the perturbed sources' are), else scored."""
    refs = [s for s in sources if s.reference is not None]
    saved = folder / VAL_LOGITS
    if saved.is_file():
        logits = np.load(saved)
        if len(logits) == len(split.val.texts):
            by_text = dict(zip(split.val.texts, logits))
            if all(t in by_text for s in refs for t in s.reference or []):
                return {s.name + REFERENCE: np.stack([by_text[t] for t in s.reference or []]) for s in refs}
    scored = [Source(s.name + REFERENCE, s.reference or [], s.what) for s in refs]
    return model_logits(f"{teacher}{REFERENCE}", folder, scored, cache, threads) if scored else {}


def find_all(run_dir: Path, models: dict[str, Path]) -> dict[str, Path]:
    """``models`` and the run's TF-IDF floor, whose words the perturbations aim at."""
    return {**find_models(run_dir), **models}
