"""The three-way results table: the reference work, a run at its own scale, and the default offline run.

`python bench/study_table.py RUN [RUN ...] [-o table.md]` (this module's command line) prints, for every row of
each run's `results.json`, train and validation loss, test accuracy, weighted, macro and hate F1 with the 95%
bootstrap intervals of its `significance.json`, and the trained parameters; then each run's layer-set comparisons (odd − even) and the
issue's targets checked on the numbers. Every figure comes from the run folders, so a README table made with it
traces to their files. The reference rows are the published figures (bert-base teacher, 6-layer students).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from toxdistill.data.split import load_run_split
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.metrics import hate_f1
from toxdistill.evaluation.stats import compare_models, layer_set_pairs
from toxdistill.files import BENCH_FILE, RESULTS_FILE, SIGNIFICANCE_FILE, SPLIT_FILE, TEST_LOGITS
from toxdistill.targets import TORCH_ROWS, Target

# The reference work's results (accuracy, weighted F1); it reports neither macro nor hate F1.
REFERENCE = [("even (6 of 12 layers)", 0.915, 0.912), ("odd (6 of 12 layers)", 0.913, 0.910), ("LoRA", 0.843, 0.812)]


def _ci(sig: dict, name: str, metric: str) -> str:
    c = sig.get("ci", {}).get(name, {}).get(metric)
    return f" [{c['low']:.3f}, {c['high']:.3f}]" if c else ""


def run_rows(run: Path) -> tuple[list[dict], dict]:
    results = json.loads((run / RESULTS_FILE).read_text())
    sig_file = run / SIGNIFICANCE_FILE
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


def cross_run(pairs: list[tuple[Path, Path]], data: str | None = None, seed: int = 42) -> str:
    """Paired bootstrap on macro, weighted and hate F1 between models of two runs on the same test split.

    Each argument is a model folder (``RUN/models/NAME``) holding ``test_logits.npy``; the two runs must
    have saved the same split (``split.json`` byte for byte), else the rows would not pair.
    """
    out = []
    for a, b in pairs:
        run_a, run_b = a.parent.parent, b.parent.parent
        if (run_a / SPLIT_FILE).read_bytes() != (run_b / SPLIT_FILE).read_bytes():
            raise ToxdistillError(f"{run_a} and {run_b} saved different splits: their test rows do not pair")
        labels = np.asarray(load_run_split(run_a, data).test.labels)
        na, nb = f"{run_a.name}/{a.name}", f"{run_b.name}/{b.name}"
        preds = {na: np.load(a / TEST_LOGITS).argmax(-1), nb: np.load(b / TEST_LOGITS).argmax(-1)}
        for c in compare_models(labels, preds, [(na, nb)], ["f1_macro", "f1_weighted", "f1_hate"], seed=seed):
            out.append(
                f"- {na} − {nb} {c['metric']}: {c['a_value']:.4f} − {c['b_value']:.4f} = {c['diff'] * 100:+.2f} points "
                f"(95% CI [{c['low'] * 100:+.2f}, {c['high'] * 100:+.2f}], paired bootstrap p = {c['p_value']:.3f})"
            )
    return "\n".join(out)


def read_bench(run: Path) -> dict | None:
    """The run's ``bench.json``, or None before ``toxdistill bench`` has run on it (nothing is then claimed)."""
    f = run / BENCH_FILE
    return json.loads(f.read_text()) if f.is_file() else None


def speed(run: Path, goal: float) -> list[str]:
    """The speed target from the run's ``bench.json``: fastest student against the naive teacher."""
    bench = read_bench(run)
    if bench is None:
        return []
    base = bench["baseline"]["samples_per_s"]
    t = bench.get("targets", {}).get("fastest_student_x_naive_teacher")
    lines = [
        f"- naive teacher: {base:.1f} samples/s on {bench['machine']['cpu']} ({bench['machine']['threads']} threads)"
    ]
    if t:
        lines.append(
            f"- fastest student within 1 weighted-F1 point: {t['model']} {t['backend']} {t['value']:.1f}× the naive "
            f"teacher ({t['f1_weighted_drop_points']:+.2f} points below it) (≥ {goal:g}×): {t['value'] >= goal}"
        )
    return lines


# The backends the study's speed table shows, in order: the naive teacher's own path first.
SPEED_BACKENDS = (*TORCH_ROWS, Target("onnx", "fp32").name, Target("onnx", "int8").name)


def speed_table(run: Path) -> str:
    """Samples/s of every benched model in each backend, from the run's ``bench.json``, with its best ratio to
    the naive teacher and its int8 p50 latency."""
    bench = read_bench(run)
    if bench is None:
        return ""
    by_model: dict[str, dict[str, dict]] = {}
    for r in bench["rows"]:
        by_model.setdefault(r["model"], {})[r["backend"]] = r
    out = [
        "| model | layers | params | " + " | ".join(SPEED_BACKENDS) + " | × naive teacher (best) | int8 p50 ms |",
        "|---|---|---|" + "---|" * len(SPEED_BACKENDS) + "---|---|",
    ]
    # The teacher first, then the students from fastest to slowest: the order a reader compares them in.
    order = sorted(
        by_model,
        key=lambda m: (m != bench["baseline"]["model"], -max(r["samples_per_s"] for r in by_model[m].values())),
    )
    for m in order:
        rows = by_model[m]
        any_row = next(iter(rows.values()))
        cells = [f"{rows[b]['samples_per_s']:,.1f}" if b in rows else "—" for b in SPEED_BACKENDS]
        best = max(rows[b]["x_naive_teacher"] for b in SPEED_BACKENDS if b in rows)
        p50 = rows["onnx-int8"]["latency_p50_ms"] if "onnx-int8" in rows else None
        out.append(
            f"| {m} | {any_row['layers']} | {any_row['params'] / 1e6:.1f}M | "
            + " | ".join(cells)
            + f" | {best:.1f}× | {'—' if p50 is None else f'{p50:.2f}'} |"
        )
    return "\n".join(out)


def summary_table(runs: list[Path]) -> str:
    """The README's one short table: each run's benched models, its best LoRA model and the TF-IDF floor, with
    their test F1 (weighted, macro, hate) and, where the bench measured them, the best samples/s and the ratio to
    the naive teacher, the CPU named."""
    out = [
        "| run | model | layers | params | F1 weighted | macro F1 | hate F1 | best samples/s (backend) | × naive teacher | CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        results, _ = run_rows(run)
        bench = read_bench(run)
        rows_by_model: dict[str, list[dict]] = {}
        for row in (bench or {}).get("rows", []):
            rows_by_model.setdefault(row["model"], []).append(row)
        cpu = (bench or {}).get("machine", {}).get("cpu", "—")
        # Short: the benched models, the best LoRA model (the alternative to distillation) and the floor.
        loras = [r for r in results if r["kind"] == "lora"]
        best_lora = max(loras, key=lambda r: r["f1_macro"])["name"] if loras else None
        keep = [r for r in results if r["name"] in rows_by_model or r["name"] == best_lora or r["kind"] == "baseline"]
        for r in sorted(keep, key=lambda r: -r["f1_macro"]):
            layers = len(r["layers"]) if r.get("layers") else "—"
            fast = max(rows_by_model.get(r["name"], []), key=lambda b: b["samples_per_s"], default=None)
            speed = f"{fast['samples_per_s']:,.0f} ({fast['backend']})" if fast else "—"
            ratio = f"{fast['x_naive_teacher']:.1f}×" if fast else "—"
            out.append(
                f"| {run.name} | {r['name']} | {layers} | {r['params'] / 1e6:.1f}M | {r['f1_weighted']:.3f} | "
                f"{r['f1_macro']:.3f} | {hate_f1(r):.3f} | {speed} | {ratio} | {cpu if fast else '—'} |"
            )
    return "\n".join(out)


def targets(run: Path) -> list[str]:
    """The 12 → 6 study's targets, checked on one run (points are 100 × the metric)."""
    results, _ = run_rows(run)
    by_kind: dict[str, list[dict]] = {}
    for r in results:
        by_kind.setdefault(r["kind"], []).append(r)
    teacher = next(iter(by_kind.get("teacher", [])), None)
    floor = next(iter(by_kind.get("baseline", [])), None)
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="bench/study_table.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (runs/<name>), the study's first")
    ap.add_argument("-o", "--out", type=Path, default=None, help="also write the markdown here")
    ap.add_argument(
        "--pair",
        nargs=2,
        type=Path,
        action="append",
        default=[],
        metavar=("MODEL_A", "MODEL_B"),
        help="also compare two model folders of different runs on their shared test split (repeatable)",
    )
    ap.add_argument(
        "--speed-goal", type=float, default=30.0, help="the fastest student's goal against the naive teacher"
    )
    ap.add_argument("--data", default=None, help="the data file, to rebuild the test labels for --pair")
    ap.add_argument("--summary", action="store_true", help="print only the README's short table of the runs")
    a = ap.parse_args(argv)
    if a.summary:
        text = summary_table(a.runs)
        print(text)
        if a.out:
            a.out.write_text(text + "\n")
        return
    parts = [table(a.runs), comparisons(a.runs)]
    if a.pair:
        try:
            parts.append(cross_run([(x, y) for x, y in a.pair], a.data))
        except ToxdistillError as e:
            raise SystemExit(str(e)) from None
    if st := speed_table(a.runs[0]):
        parts.append(st)
    parts.append("Targets:\n" + "\n".join(targets(a.runs[0]) + speed(a.runs[0], a.speed_goal)))
    text = "\n\n".join(parts)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
