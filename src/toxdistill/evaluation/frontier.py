"""The compression frontier's rules, on rows already measured: the Pareto set and the pick of the best model.

A row is one exported candidate (``pipeline/frontier.py`` measures them): its ``samples_per_s`` in the run's
frontier bench, ``parity_passed`` (its export's parity gates), and ``val`` / ``test`` blocks of
``f1_weighted``, ``f1_macro``, ``f1_focus`` and ``accuracy``. The teacher reference is the torch teacher's own
scores (``{"model", "val", "test"}``), not its export's: a candidate is held against the model it replaces.

Both rules choose on validation and then say whether the choice holds on test:

* **tolerance** (the default): the fastest candidate that passed its parity gates and loses at most
  ``max_drop_f1_weighted`` weighted F1 and ``max_drop_f1_macro`` macro F1 against the teacher (a null limit is
  not checked). The teacher's own export is not a candidate: it is the answer when nothing else qualifies.
* **budget** (``min_samples_per_s`` set): the best validation macro F1 among the candidates that passed their
  gates at or above the budget, the teacher's export included (ties: the faster).

Under either rule a candidate outside the behaviour bound (``min_agreement_behaviour``, ``max_tvd_behaviour``:
its fidelity to the teacher on the behaviour set, ``evaluation/behaviour.py``) is left out first, and named in the
reason; one that looks good on clean validation alone is flagged (``behaviour_flags``): it parts ways with the
teacher where validation does not look.

Nothing qualifies: the teacher's own export, ``fallback`` true, with one line saying why. That is an answer,
not an error.
"""

from __future__ import annotations

from typing import Any

from toxdistill.config import SelectConfig
from toxdistill.evaluation import behaviour
from toxdistill.evaluation.tables import fmt, text_table

PARETO_METRICS = ("f1_macro", "f1_weighted")
# Float noise must not turn a drop of exactly the limit into a miss.
EPS = 1e-9


def pareto_front(rows: list[dict], metric: str, split: str = "val") -> list[dict]:
    """The rows no other row beats on both speed and ``row[split][metric]``, slowest first (best quality first)."""
    front: list[dict] = []
    # Fastest first, and at equal speed the better one first: a row is on the front when it beats the best
    # quality of every row at least as fast.
    best = float("-inf")
    for r in sorted(rows, key=lambda r: (-r["samples_per_s"], -r[split][metric])):
        if r[split][metric] > best:
            front.append(r)
            best = r[split][metric]
    return front[::-1]


def pareto(rows: list[dict], split: str = "val") -> dict[str, list[str]]:
    """Per metric of ``PARETO_METRICS``, the models on the (samples/s, metric) frontier, slowest first; for the
    rows of a multi-label run, whose tolerance reads it, on macro PR AUC alone."""
    multi = bool(rows) and all(r[split].get("pr_auc_macro") is not None for r in rows)
    metrics = ("pr_auc_macro",) if multi else PARETO_METRICS
    return {m: [r["model"] for r in pareto_front(rows, m, split)] for m in metrics}


def _drops(row: dict, teacher: dict, split: str) -> tuple[float, float]:
    """(weighted F1, macro F1) the row loses against the teacher on ``split``; negative: it gains."""
    return (
        teacher[split]["f1_weighted"] - row[split]["f1_weighted"],
        teacher[split]["f1_macro"] - row[split]["f1_macro"],
    )


def within_tolerance(row: dict, teacher: dict, rule: SelectConfig, split: str = "val") -> bool:
    """Whether ``row`` loses no more than the rule's limits against the teacher on ``split``."""
    if _multi_label(teacher, split):
        return within_pr_auc_tolerance(row, teacher, rule, split)
    dw, dm = _drops(row, teacher, split)
    ok_w = rule.max_drop_f1_weighted is None or dw <= rule.max_drop_f1_weighted + EPS
    ok_m = rule.max_drop_f1_macro is None or dm <= rule.max_drop_f1_macro + EPS
    return ok_w and ok_m


def _multi_label(teacher: dict, split: str) -> bool:
    """A multi-label run's blocks carry macro PR AUC (``evaluation/multilabel.py``)."""
    return teacher[split].get("pr_auc_macro") is not None


def within_pr_auc_tolerance(row: dict, teacher: dict, rule: SelectConfig, split: str = "val") -> bool:
    """A multi-label row's tolerance: it loses at most ``max_drop_pr_auc_macro`` macro PR AUC against the teacher.
    The F1 limits are not read: a multi-label F1 is one of a threshold, which calibration sets after training."""
    drop = teacher[split]["pr_auc_macro"] - row[split]["pr_auc_macro"]
    return rule.max_drop_pr_auc_macro is None or drop <= rule.max_drop_pr_auc_macro + EPS


def _closeness(row: dict, teacher: dict) -> tuple:
    """How near a candidate is to the tolerance on validation: its macro PR AUC (multi-label), else its F1s."""
    v = row["val"]
    return (v["pr_auc_macro"],) if _multi_label(teacher, "val") else (v["f1_weighted"], v["f1_macro"])


def _points(x: float, sign: bool = False) -> str:
    """``x`` (a fraction) in points; rounded before the sign is read, so no "-0.00"."""
    v = round(100 * x, 2) + 0.0
    return f"{v:+.2f}" if sign else f"{v:.2f}"


def _limits(rule: SelectConfig, multi_label: bool = False) -> str:
    if multi_label:
        limit = rule.max_drop_pr_auc_macro
        return "no limit" if limit is None else f"macro PR AUC ≤ {_points(limit)} points"
    parts = [
        f"{what} ≤ {_points(limit)} points"
        for what, limit in (("weighted F1", rule.max_drop_f1_weighted), ("macro F1", rule.max_drop_f1_macro))
        if limit is not None
    ]
    return " and ".join(parts) or "no limit"


def _loss(row: dict, teacher: dict, split: str) -> str:
    if _multi_label(teacher, split):
        drop = teacher[split]["pr_auc_macro"] - row[split]["pr_auc_macro"]
        return f"macro PR AUC {_points(-drop, True)} points against the teacher"
    dw, dm = _drops(row, teacher, split)
    return f"weighted F1 {_points(-dw, True)} and macro F1 {_points(-dm, True)} points against the teacher"


def _speed(row: dict) -> str:
    x = row.get("x_naive_teacher")
    return f"{row['samples_per_s']:.0f} samples/s" + (f", {x:.1f}× the naive teacher" if x else "")


# The rule's name where the teacher is only scores (``pipeline.frontier.select_without_teacher``).
SCORES_RULE = "best validation macro F1 (teacher only scores)"


def select(rows: list[dict], teacher: dict, rule: SelectConfig) -> dict[str, Any]:
    """The frontier's choice: ``{"model", "rule", "criteria", "reason", "fallback", "holds_on_test", "test_note",
    "left_out_by_behaviour", "behaviour_flags"}``.

    ``rows``: the measured candidates, the teacher's own export among them (``teacher["model"]``), each with its
    ``behaviour`` block where it was measured; ``teacher``: the torch teacher's ``val`` and ``test`` scores the
    tolerances are held against. A candidate that misses the behaviour bound is left out under either rule."""
    pick = _budget if rule.min_samples_per_s is not None else _tolerance
    kept = [r for r in rows if r["model"] == teacher["model"] or behaviour.behaves(r, rule)]
    out = pick(kept, teacher, rule)
    left_out = [r for r in rows if r not in kept and r["parity_passed"]]
    if left_out:
        out["reason"] += "; " + _left_out(left_out, rule)
    not_measured = [r["model"] for r in rows if r["model"] != teacher["model"] and not behaviour.measured(r)]
    if behaviour.has_bound(rule) and not_measured:
        out["reason"] += f"; behaviour not measured for {', '.join(not_measured)}: the bound was not checked"
    out["left_out_by_behaviour"] = [r["model"] for r in left_out]
    out["behaviour_flags"] = behaviour_flags(rows, teacher, rule)
    # The multi-label limit only where it was read, so a single-label selection records what it always did.
    out["criteria"] = rule.model_dump(exclude=None if _multi_label(teacher, "val") else {"max_drop_pr_auc_macro"})
    return out


def looks_good(row: dict, teacher: dict, rule: SelectConfig) -> bool:
    """Whether ``row`` looks like a safe pick on clean validation alone: at or above the teacher's weighted or
    macro F1 there, or within the rule's tolerances."""
    v, t = row["val"], teacher["val"]
    beats = v["f1_weighted"] >= t["f1_weighted"] - EPS or v["f1_macro"] >= t["f1_macro"] - EPS
    return beats or within_tolerance(row, teacher, rule, "val")


def behaviour_flags(rows: list[dict], teacher: dict, rule: SelectConfig) -> list[dict]:
    """The candidates that look good on clean validation (``looks_good``) yet miss the behaviour bound: the
    students that part ways with the teacher where validation does not look. ``[{"model", "note"}]``, each note
    one line for the report."""
    out = []
    for r in rows:
        if r["model"] == teacher["model"] or not r["parity_passed"] or not looks_good(r, teacher, rule):
            continue
        miss = behaviour.misses(r, rule)
        if miss:
            note = (
                f"{r['model']} scores {_loss(r, teacher, 'val')} on clean validation but parts ways with it on the "
                f"behaviour set ({', '.join(miss)}; {behaviour.describe(r['behaviour'])}): not shipped"
            )
            out.append({"model": r["model"], "note": note})
    return out


def _left_out(rows: list[dict], rule: SelectConfig) -> str:
    each = "; ".join(f"{r['model']} ({', '.join(behaviour.misses(r, rule))})" for r in rows)
    return f"left out by the behaviour bound ({behaviour.bound_phrase(rule)}): {each}"


def _fallback(teacher: dict, rule_name: str, why: str) -> dict[str, Any]:
    return {"model": teacher["model"], "rule": rule_name, "fallback": True, "reason": why}


def _tolerance(rows: list[dict], teacher: dict, rule: SelectConfig) -> dict[str, Any]:
    others = [r for r in rows if r["model"] != teacher["model"]]
    passed = [r for r in others if r["parity_passed"]]
    ok = [r for r in passed if within_tolerance(r, teacher, rule, "val")]
    if ok:
        best = max(ok, key=lambda r: r["samples_per_s"])
        out = {
            "model": best["model"],
            "rule": "tolerance",
            "fallback": False,
            "reason": f"{best['model']} ({best['backend']}, {_speed(best)}) is the fastest of {len(ok)} candidate(s) "
            f"within tolerance on validation ({_limits(rule, _multi_label(teacher, 'val'))}): {_loss(best, teacher, 'val')}",
        }
        holds = within_tolerance(best, teacher, rule, "test")
        note = f"on test {best['model']} scores {_loss(best, teacher, 'test')}: " + (
            "within tolerance too" if holds else "outside the tolerance"
        )
        return {**out, "holds_on_test": holds, "test_note": note}
    if not others:
        why = "no student is left to choose from"
    elif not passed:
        why = f"none of the {len(others)} candidate(s) passed its export's parity gates"
    else:
        closest = max(passed, key=lambda r: _closeness(r, teacher))
        why = (
            f"no candidate is within tolerance on validation ({_limits(rule, _multi_label(teacher, 'val'))}); the closest, {closest['model']}, "
            f"scores {_loss(closest, teacher, 'val')}"
        )
    out = _fallback(teacher, "tolerance", f"the teacher's own export: {why}")
    on_test = [r["model"] for r in passed if within_tolerance(r, teacher, rule, "test")]
    out["holds_on_test"] = not on_test
    out["test_note"] = (
        f"on test {', '.join(on_test)} would have been within tolerance"
        if on_test
        else "on test no candidate is within tolerance either"
    )
    return out


def _best_in_budget(rows: list[dict], budget: float, split: str) -> dict | None:
    fast = [r for r in rows if r["parity_passed"] and r["samples_per_s"] >= budget]
    return max(fast, key=lambda r: (r[split]["f1_macro"], r["samples_per_s"])) if fast else None


def _budget(rows: list[dict], teacher: dict, rule: SelectConfig) -> dict[str, Any]:
    budget = float(rule.min_samples_per_s or 0.0)
    best = _best_in_budget(rows, budget, "val")
    if best is None:
        passed = [r for r in rows if r["parity_passed"]]
        if passed:
            fastest = max(passed, key=lambda r: r["samples_per_s"])
            why = (
                f"the fastest that passed its parity gates, {fastest['model']}, reaches {fastest['samples_per_s']:.0f}"
            )
        else:
            why = "no candidate passed its export's parity gates"
        out = _fallback(
            teacher, "budget", f"the teacher's own export: no candidate reaches {budget:.0f} samples/s ({why})"
        )
        return {**out, "holds_on_test": True, "test_note": "the budget is a speed, the same on test"}
    n = sum(1 for r in rows if r["parity_passed"] and r["samples_per_s"] >= budget)
    out = {
        "model": best["model"],
        "rule": "budget",
        "fallback": False,
        "reason": f"{best['model']} ({best['backend']}, {_speed(best)}) has the best validation macro F1 "
        f"({best['val']['f1_macro']:.3f}) of the {n} candidate(s) at ≥ {budget:.0f} samples/s",
    }
    on_test = _best_in_budget(rows, budget, "test")
    assert on_test is not None  # the same rows reach the budget whatever the split
    holds = on_test["model"] == best["model"]
    note = (
        f"on test too it has the best macro F1 at that speed ({best['test']['f1_macro']:.3f})"
        if holds
        else f"on test {on_test['model']} has the better macro F1 at that speed "
        f"({on_test['test']['f1_macro']:.3f} against {best['test']['f1_macro']:.3f})"
    )
    return {**out, "holds_on_test": holds, "test_note": note}


def format_frontier(frontier: dict) -> str:
    """The frontier as a plain-text table, slowest first, then the machine and the selection's lines."""
    sel = frontier.get("selection") or {}
    header = ["model", "backend", "samples/s", "× naive T", "p50 ms", "val F1w", "val F1m", "test F1w", "test F1m"]
    header += ["agree", "TVD", "parity", "Pareto", "chosen"]
    body = [
        [
            r["model"],
            r["backend"],
            f"{r['samples_per_s']:.1f}",
            fmt(r.get("x_naive_teacher"), ".2f"),
            f"{r['p50_ms']:.2f}",
            *(fmt(r[split][m]) for split in ("val", "test") for m in ("f1_weighted", "f1_macro")),
            *_fidelity_cells(r),
            "passed" if r["parity_passed"] else "FAILED",
            "yes" if r.get("pareto") else "",
            "*" if r["model"] == sel.get("model") else "",
        ]
        for r in sorted(frontier["rows"], key=lambda r: r["samples_per_s"])
    ]
    lines = [
        text_table(header, body),
        f"{frontier['texts']} test texts, {frontier['threads']} thread(s) on {frontier['cpu']}; naive teacher "
        f"{frontier['naive_teacher_samples_per_s']:.1f} samples/s",
    ]
    if frontier.get("behaviour"):
        lines.append(f"agree / TVD: fidelity to the torch teacher on the behaviour set ({behaviour_set(frontier)})")
    if sel:
        lines.append(f"chosen ({sel['rule']} rule): {sel['model']}: {sel['reason']}")
        lines.append(f"{'holds' if sel['holds_on_test'] else 'does NOT hold'} on test: {sel['test_note']}")
        lines += [f"PARTS WAYS WITH THE TEACHER: {f['note']}" for f in sel.get("behaviour_flags") or []]
    return "\n".join(lines)


def _fidelity_cells(row: dict) -> list[str]:
    """The row's overall behaviour agreement (percent) and TVD; "-" where not measured (the teacher)."""
    o = (row.get("behaviour") or {}).get("overall")
    return [f"{100 * o['agreement']:.1f}", f"{o['tvd']:.3f}"] if o else ["-", "-"]


def behaviour_set(frontier: dict) -> str:
    """The behaviour set in a phrase: each source and its number of texts."""
    sources = (frontier.get("behaviour") or {}).get("sources") or {}
    each = ", ".join(f"{name} {s['texts']}" for name, s in sources.items())
    return f"{sum(s['texts'] for s in sources.values())} texts: {each}; overall = the mean over the sources"
