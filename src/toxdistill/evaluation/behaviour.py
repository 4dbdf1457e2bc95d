"""Behaviour fidelity: how closely a candidate follows its teacher beyond clean validation, and the select bound.

A student can match or beat its teacher on clean validation and still part ways with it on other text: the
functional tests, evasive spellings, the held-out perturbation family. Clean validation F1 does not see that, so
the frontier also scores every candidate and the teacher on a *behaviour set* (``pipeline/behaviour.py`` builds
it: named sources of texts, no labels needed) and measures, per source, the two fidelity figures of
``toxdistill check``: top-1 agreement with the teacher and the mean total-variation distance between their
probability vectors.

The overall figure is the mean over the sources, each source weighing the same whatever its size: the functional
suite (a few hundred texts) is not drowned by a thousand perturbed ones, nor by a large unlabelled source added
later.

All functions are pure (numpy on logits, dicts for rows); ``evaluation/frontier.py``'s selection uses the bound.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from toxdistill.config import SelectConfig
from toxdistill.evaluation.logits import sigmoid
from toxdistill.evaluation.robustness import agreement, total_variation

# Float noise must not turn a figure of exactly the bound into a miss.
EPS = 1e-9


def fidelity(logits: np.ndarray, teacher_logits: np.ndarray, multi_label: bool = False) -> dict:
    """``{"texts", "agreement", "tvd"}`` of a model against its teacher on the same texts. ``multi_label``: each
    label read as a yes/no classifier, averaged over the labels: ``agreement`` the share of (text, label) decisions
    at 0.5 the two share, ``tvd`` the mean |σ(s) − σ(t)|, which is the total-variation distance of a yes/no."""
    if logits.shape != teacher_logits.shape:
        raise ValueError(f"logits {logits.shape} and the teacher's {teacher_logits.shape} differ in shape")
    if multi_label:
        p, q = (sigmoid(np.asarray(x, dtype=np.float64)) for x in (logits, teacher_logits))
        return {
            "texts": len(logits),
            "agreement": float(((p >= 0.5) == (q >= 0.5)).mean()),
            "tvd": float(np.abs(p - q).mean()),
        }
    return {
        "texts": len(logits),
        "agreement": agreement(logits, teacher_logits),
        "tvd": total_variation(logits, teacher_logits),
    }


def behaviour_block(
    per_source: Mapping[str, tuple[np.ndarray, np.ndarray]],
    same_text: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    multi_label: bool = False,
) -> dict | None:
    """``{"overall", "sources"}`` from ``{source: (model logits, teacher reference logits)}``; empty sources are
    left out, and None when nothing is left. ``overall`` is the mean over the sources (see the module's
    docstring). ``same_text``: for a source whose reference is the teacher on other texts (a perturbed text's
    clean original), the logits against the teacher on the same texts, kept beside as ``same_text``."""
    sources = {name: fidelity(s, t, multi_label) for name, (s, t) in per_source.items() if len(s)}
    if not sources:
        return None
    for name, (s, t) in (same_text or {}).items():
        if name in sources:
            sources[name]["same_text"] = {k: v for k, v in fidelity(s, t, multi_label).items() if k != "texts"}
    overall = {
        "texts": sum(f["texts"] for f in sources.values()),
        "agreement": float(np.mean([f["agreement"] for f in sources.values()])),
        "tvd": float(np.mean([f["tvd"] for f in sources.values()])),
    }
    return {"overall": overall, "sources": sources}


def has_bound(rule: SelectConfig) -> bool:
    return rule.min_agreement_behaviour is not None or rule.max_tvd_behaviour is not None


def misses(row: dict, rule: SelectConfig) -> list[str]:
    """What of the behaviour bound ``row`` misses, as phrases ("agreement 84.1% < 90.0%"); empty where it
    meets it, has no behaviour figures (not measured) or the rule sets no bound."""
    overall = (row.get("behaviour") or {}).get("overall")
    if not overall:
        return []
    out = []
    low = rule.min_agreement_behaviour
    if low is not None and overall["agreement"] < low - EPS:
        out.append(f"agreement {_pct(overall['agreement'])} < {_pct(low)}")
    high = rule.max_tvd_behaviour
    if high is not None and overall["tvd"] > high + EPS:
        out.append(f"TVD {overall['tvd']:.3f} > {high:.3f}")
    return out


def behaves(row: dict, rule: SelectConfig) -> bool:
    """Whether ``row`` meets the rule's behaviour bound (a row without behaviour figures is not held to it)."""
    return not misses(row, rule)


def measured(row: dict) -> bool:
    return bool((row.get("behaviour") or {}).get("overall"))


def bound_phrase(rule: SelectConfig) -> str:
    """The behaviour bound in words, or "" where the rule sets none."""
    parts = []
    if rule.min_agreement_behaviour is not None:
        parts.append(f"agreement with the teacher ≥ {_pct(rule.min_agreement_behaviour)}")
    if rule.max_tvd_behaviour is not None:
        parts.append(f"TVD ≤ {rule.max_tvd_behaviour:.3f}")
    return " and ".join(parts)


def describe(block: dict | None) -> str:
    """One phrase of a behaviour block: overall agreement and TVD, then each source's agreement."""
    if not block:
        return "behaviour not measured"
    o = block["overall"]
    per = ", ".join(f"{name} {_pct(f['agreement'])}" for name, f in block["sources"].items())
    return f"agreement {_pct(o['agreement'])} ({per}), TVD {o['tvd']:.3f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"
