"""The results tables of the README and docs/, made from committed run folders only.

`python bench/study_table.py RUN [RUN ...] [-o table.md]` (this module's command line) prints, for every row of
each run's `results.json`, train and validation loss, test accuracy, weighted, macro and hate F1 with the 95%
bootstrap intervals of its `significance.json`, and the trained parameters; then each run's layer-set
comparisons (odd − even), the first run's speed table (every backend and export target of its `bench.json`)
and the study's targets checked on the numbers. `--frontier RUN` prints a run's compression frontier (its
`frontier.json`, the model shipped to `best/` from `best/selection.json`) and `--speed RUN` a bench's speed table
alone. Every figure comes from the run folders, so a table made
with it traces to their files. The reference rows are the published figures (bert-base teacher, 6-layer
students).
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
from toxdistill.files import (
    BENCH_FILE,
    BEST_DIR,
    FRONTIER_FILE,
    RESULTS_FILE,
    SIGNIFICANCE_FILE,
    SPLIT_FILE,
    TEST_LOGITS,
)
from toxdistill.runs import SELECTION_FILE
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


def target_order(names: list[str]) -> list[str]:
    """Every backend or export target a bench measured, in a reader's order: SPEED_BACKENDS first (the naive
    teacher's own path leads), then the others as the bench first wrote them (OpenVINO, fused graphs, ...)."""
    known = [str(b) for b in SPEED_BACKENDS]
    seen = list(dict.fromkeys(names))
    return [b for b in known if b in seen] + [b for b in seen if b not in known]


def speed_table(run: Path) -> str:
    """Samples/s of every benched model in every backend and export target of the run's ``bench.json``, with
    its best ratio to the naive teacher, where that best is reached and its single-text p50 latency there."""
    bench = read_bench(run)
    if bench is None:
        return ""
    by_model: dict[str, dict[str, dict]] = {}
    for r in bench["rows"]:
        by_model.setdefault(r["model"], {})[r["backend"]] = r
    columns = target_order([r["backend"] for r in bench["rows"]])
    out = [
        "| model | layers | params | " + " | ".join(columns) + " | × naive teacher (best) | best at | p50 ms there |",
        "|---|---|---|" + "---|" * len(columns) + "---|---|---|",
    ]
    # The teacher first, then the students from fastest to slowest: the order a reader compares them in.
    order = sorted(
        by_model,
        key=lambda m: (m != bench["baseline"]["model"], -max(r["samples_per_s"] for r in by_model[m].values())),
    )
    for m in order:
        rows = by_model[m]
        any_row = next(iter(rows.values()))
        cells = [f"{rows[b]['samples_per_s']:,.1f}" if b in rows else "—" for b in columns]
        best = max(rows.values(), key=lambda r: r["x_naive_teacher"])
        p50 = best.get("latency_p50_ms")
        out.append(
            f"| {m} | {any_row['layers']} | {any_row['params'] / 1e6:.1f}M | "
            + " | ".join(cells)
            + f" | {best['x_naive_teacher']:.1f}× | {best['backend']} | {'—' if p50 is None else f'{p50:.2f}'} |"
        )
    return "\n".join(out)


def speed_caption(run: Path) -> str:
    """Where and how the run's ``bench.json`` was measured: the CPU, threads, date and the naive teacher."""
    bench = read_bench(run)
    if bench is None:
        return ""
    m = bench["machine"]
    return (
        f"{m['cpu']}, {m.get('cores', '?')} cores, {m['threads']} threads, {bench['created'][:10]}; "
        f"{bench['texts']['n']:,} test texts, batches of {bench['batch_size']}, the fastest of {bench['repeats']} "
        f"passes; naive teacher {bench['baseline']['samples_per_s']:,.1f} samples/s"
    )


def read_frontier(run: Path) -> tuple[dict, dict] | None:
    """The run's ``frontier.json`` and its ``best/selection.json`` ({} when nothing was shipped), or None."""
    f = run / FRONTIER_FILE
    if not f.is_file():
        return None
    sel = run / BEST_DIR / SELECTION_FILE
    return json.loads(f.read_text()), json.loads(sel.read_text()) if sel.is_file() else {}


def _points(row: dict, ref: dict, split: str, metric: str) -> str:
    return f"{(row[split][metric] - ref[split][metric]) * 100:+.2f}"


def frontier_table(run: Path) -> str:
    """Every model of the run's compression frontier, fastest first, the one shipped to ``best/`` in bold: its
    export target, samples/s and ratio to the naive teacher, validation points against the (torch) teacher that
    the selection reads, and its test F1 (weighted, macro, hate) as the exported model scores it."""
    found = read_frontier(run)
    if found is None:
        return ""
    front, sel = found
    shipped = sel.get("selection", {}).get("model")
    teacher = front["teacher"]
    out = [
        "| model | layers | params | target | samples/s | × naive teacher | val Δ weighted / macro (points) "
        "| test F1 weighted | macro F1 | hate F1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(front["rows"], key=lambda r: -r["samples_per_s"]):
        name = f"**{r['model']}** (shipped: best/)" if r["model"] == shipped else r["model"]
        out.append(
            f"| {name} | {r['layers']} | {r['params'] / 1e6:.1f}M | {r['backend']} | {r['samples_per_s']:,.0f} "
            f"| {r['x_naive_teacher']:.1f}× | {_points(r, teacher, 'val', 'f1_weighted')} / "
            f"{_points(r, teacher, 'val', 'f1_macro')} | {r['test']['f1_weighted']:.3f} | "
            f"{r['test']['f1_macro']:.3f} | {r['test']['f1_focus']:.3f} |"
        )
    return "\n".join(out)


def frontier_caption(run: Path) -> str:
    """Where the frontier was measured and what ``best/`` holds: CPU, threads, date, the naive teacher and the
    selection's own sentence (rule, tolerance, whether it holds on test)."""
    found = read_frontier(run)
    if found is None:
        return ""
    front, sel = found
    lines = [
        f"{front['cpu']}, {front['threads']} threads, {front['created'][:10]}; {front['texts']:,} test texts, "
        f"batches of {front['batch_size']}, the fastest of {front['repeats']} passes; naive teacher (torch, "
        f"random-order padded batches) {front['naive_teacher_samples_per_s']:,.1f} samples/s."
    ]
    if s := sel.get("selection"):
        lines.append(f"Shipped: {s['reason']}; {s['test_note']}.")
    return " ".join(lines)


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


def fill_block(text: str, tag: str, body: str) -> str:
    """``text`` with what stands between ``<!-- TAG -->`` and ``<!-- /TAG -->`` replaced by ``body``: how the
    README and docs/ hold a generated table, so a test can compare it with a fresh one and a writer refresh it."""
    start, end = f"<!-- {tag} -->", f"<!-- /{tag} -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ToxdistillError(f"no {start} … {end} block to fill")
    return text[: i + len(start)] + "\n" + body + "\n" + text[j:]


def frontier_block(run: Path) -> str:
    """The README's results block: the frontier's caption line above its table."""
    return frontier_caption(run) + "\n\n" + frontier_table(run)


def _only(a: argparse.Namespace) -> str:
    """One kind of table for every run named: the frontier or the bench's speed."""
    make = frontier_block if a.frontier else speed_caption_table
    return "\n\n".join(make(r) for r in a.runs)


def speed_caption_table(run: Path) -> str:
    """A bench's caption line (CPU, threads, date, naive teacher) above its speed table."""
    return speed_caption(run) + "\n\n" + speed_table(run)


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
    ap.add_argument(
        "--frontier", action="store_true", help="print each run's compression frontier and shipped best/ only"
    )
    ap.add_argument("--speed", action="store_true", help="print each run's bench speed table only")
    a = ap.parse_args(argv)
    if a.frontier or a.speed:
        text = _only(a)
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
