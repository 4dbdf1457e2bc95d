"""The three-way results table: the reference work, a run at its own scale, and the default offline run.

`python bench/study_table.py RUN [RUN ...] [-o table.md]` prints, for every row of each run's `results.json`,
train and validation loss, test accuracy, weighted, macro and hate F1 with the 95% bootstrap intervals of its
`significance.json`, and the trained parameters; then each run's layer-set comparisons (odd − even) and the
issue's targets checked on the numbers. Every figure comes from the run folders, so a README table made with it
traces to their files. The reference rows are the published figures (bert-base teacher, 6-layer students).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from toxdistill.evaluation.metrics import hate_f1

# The reference work's results (accuracy, weighted F1); it reports neither macro nor hate F1.
REFERENCE = [("even (6 of 12 layers)", 0.915, 0.912), ("odd (6 of 12 layers)", 0.913, 0.910), ("LoRA", 0.843, 0.812)]


def _ci(sig: dict, name: str, metric: str) -> str:
    c = sig.get("ci", {}).get(name, {}).get(metric)
    return f" [{c['low']:.3f}, {c['high']:.3f}]" if c else ""


def run_rows(run: Path) -> tuple[list[dict], dict]:
    results = json.loads((run / "results.json").read_text())
    sig_file = run / "significance.json"
    return results, json.loads(sig_file.read_text()) if sig_file.is_file() else {}


def table(runs: list[Path]) -> str:
    out = [
        "| run | model | train loss | val loss | test acc | F1 weighted [95% CI] | macro F1 [95% CI] | hate F1 [95% CI] "
        "| trained params |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, acc, f1 in REFERENCE:
        out.append(f"| reference | {name} | — | — | {acc:.3f} | {f1:.3f} | — | — | — |")
    for run in runs:
        results, sig = run_rows(run)
        for r in results:
            share = r["trainable_params"] / max(r["params"], 1)
            out.append(
                f"| {run.name} | {r['name']} | {r['train_loss']:.4f} | {r['val_loss']:.4f} | {r['accuracy']:.4f} "
                f"| {r['f1_weighted']:.4f}{_ci(sig, r['name'], 'f1_weighted')} "
                f"| {r['f1_macro']:.3f}{_ci(sig, r['name'], 'f1_macro')} "
                f"| {hate_f1(r):.3f}{_ci(sig, r['name'], 'f1_hate')} "
                f"| {r['trainable_params']:,} ({share:.2%}) |"
            )
    return "\n".join(out)


def comparisons(runs: list[Path]) -> str:
    from toxdistill.evaluation.stats import layer_set_pairs

    out = []
    for run in runs:
        results, sig = run_rows(run)
        for a, b in layer_set_pairs(results):
            for c in sig.get("comparisons", []):
                if (c["a"], c["b"]) == (a, b):
                    out.append(
                        f"- {run.name}: {a} − {b} {c['metric']}: {c['diff'] * 100:+.2f} points "
                        f"(95% CI [{c['low'] * 100:+.2f}, {c['high'] * 100:+.2f}], p = {c['p_value']:.3f}, "
                        f"Holm p = {c['p_holm']:.3f})"
                    )
    return "\n".join(out)


def targets(run: Path) -> list[str]:
    """The 12 → 6 study's targets, checked on one run (points are 100 × the metric)."""
    results, _ = run_rows(run)
    by_kind: dict[str, list[dict]] = {}
    for r in results:
        by_kind.setdefault(r["kind"], []).append(r)
    teacher = (by_kind.get("teacher") or [None])[0]
    floor = (by_kind.get("baseline") or [None])[0]
    lines = []
    if teacher:
        for s in by_kind.get("student", []):
            dw = (s["f1_weighted"] - teacher["f1_weighted"]) * 100
            dm = (s["f1_macro"] - teacher["f1_macro"]) * 100
            ok = dw >= -1.0 and dm >= -2.0
            lines.append(f"- {s['name']}: {dw:+.2f} weighted, {dm:+.2f} macro F1 vs teacher (≥ −1.0 / −2.0): {ok}")
        for lo in by_kind.get("lora", []):
            dw = (lo["f1_weighted"] - teacher["f1_weighted"]) * 100
            share = lo["trainable_params"] / max(lo["params"], 1)
            lines.append(
                f"- {lo['name']}: {dw:+.2f} weighted F1, {share:.2%} trained (≥ −1.0, ≤ 2%): {dw >= -1 and share <= 0.02}"
            )
    trans = [r for r in results if r["kind"] != "baseline"]
    if trans:
        best = max(trans, key=lambda r: r["f1_macro"])
        best_hate = max(trans, key=hate_f1)
        lines.append(
            f"- best macro F1 {best['f1_macro']:.3f} ({best['name']}), best hate F1 {hate_f1(best_hate):.3f} "
            f"({best_hate['name']}) (≥ 0.78 / ≥ 0.50)"
        )
    if floor:
        losing = [
            r["name"]
            for r in trans
            if not (
                r["f1_weighted"] > floor["f1_weighted"]
                and r["f1_macro"] > floor["f1_macro"]
                and hate_f1(r) > hate_f1(floor)
            )
        ]
        lines.append(
            f"- every transformer row beats {floor['name']} on weighted, macro and hate F1: {not losing} {losing or ''}"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (runs/<name>), the study's first")
    ap.add_argument("-o", "--out", type=Path, default=None, help="also write the markdown here")
    a = ap.parse_args()
    text = "\n\n".join([table(a.runs), comparisons(a.runs), "Targets:\n" + "\n".join(targets(a.runs[0]))])
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
