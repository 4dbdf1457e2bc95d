"""report.md, written from the numbers of one run."""

from __future__ import annotations

from pathlib import Path

from toxdistill.config import Config
from toxdistill.evaluation.frontier import behaviour_set
from toxdistill.evaluation.metrics import hate_f1
from toxdistill.evaluation.robustness import format_robustness
from toxdistill.evaluation.stats import layer_set_pairs
from toxdistill.evaluation.tables import fmt
from toxdistill.files import FRONTIER_PLOT, MODELS_DIR, REPORT_FILE, TEACHER_SCORES
from toxdistill.io import atomic_write_text

FRONTIER_HEADING = "## Compression frontier"
# The section the frontier's lines go before when a report written without them gets them later.
WALL_TIME_HEADING = "## Wall time per stage"
MACHINE_HEADING = "## Machine and reproducibility"


def _f(x, nd=3) -> str:
    return fmt(x, f".{nd}f")


def _order(results: list[dict]) -> list[dict]:
    # A row's "kind" is the model's role (baseline, teacher, finetune, student, lora), as in toxdistill.json.
    rank = {"baseline": 0, "teacher": 1, "finetune": 2, "student": 3, "lora": 4}
    return sorted(results, key=lambda r: (rank.get(r["kind"], 9), r["name"]))


def _comparison(sig: dict | None, a: str, b: str, metric: str) -> dict | None:
    for c in (sig or {}).get("comparisons", []):
        if c["a"] == a and c["b"] == b and c["metric"] == metric:
            return c
    return None


def _sig_words(c: dict | None) -> str:
    if c is None:
        return ""
    verdict = "significant" if c["p_holm"] < 0.05 else "not significant"
    return (
        f" (Δ {c['diff'] * 100:+.2f} points, 95% CI [{c['low'] * 100:+.2f}, {c['high'] * 100:+.2f}], "
        f"p = {c['p_value']:.3f}, Holm p = {c['p_holm']:.3f}: {verdict})"
    )


def analysis(results: list[dict], sig: dict | None = None, focus: str | None = None) -> list[str]:
    """Statements derived from this run's numbers only; ``focus`` is the class of the "hate" statements
    (``data.focus_class``; None: the first class)."""
    base = next((r for r in results if r["kind"] == "baseline"), None)
    teacher = next((r for r in results if r["kind"] == "teacher"), None)
    trans = [r for r in results if r["kind"] != "baseline"]
    out = _floor_lines(base, trans) + _layer_set_lines(results, sig)
    if teacher:
        out += _teacher_lines(teacher, trans, sig)
    if trans:
        out += _hate_lines(trans, focus) + _calibration_lines(trans)
    return out


def _floor_lines(base: dict | None, trans: list[dict]) -> list[str]:
    if not (base and trans):
        return []
    beat = [r["name"] for r in trans if r["f1_weighted"] > base["f1_weighted"]]
    lose = [r["name"] for r in trans if r["f1_weighted"] <= base["f1_weighted"]]
    return [
        f"- **Floor.** {base['name']} reaches weighted F1 {_f(base['f1_weighted'])}; "
        + (f"{len(beat)} of {len(trans)} transformer rows beat it" if beat else "no transformer row beats it")
        + (f" ({', '.join(lose)} do not)." if lose else ".")
    ]


def _layer_set_lines(results: list[dict], sig: dict | None) -> list[str]:
    by = {r["name"]: r for r in results}
    out = []
    for a, b in layer_set_pairs(results):
        o, e = by[a], by[b]
        win = b if e["f1_weighted"] > o["f1_weighted"] else a
        out.append(
            f"- **Layer sets.** {a} {_f(o['f1_weighted'])} vs {b} {_f(e['f1_weighted'])} weighted F1 "
            f"(macro {_f(o['f1_macro'])} vs {_f(e['f1_macro'])}); {win} is ahead by "
            f"{abs(e['f1_weighted'] - o['f1_weighted']) * 100:.2f} points on {sum(sum(r) for r in o['confusion_matrix'])} "
            f"test tweets. {a} − {b} in macro F1"
            + (_sig_words(_comparison(sig, a, b, "f1_macro")) or " (no bootstrap run)")
            + "."
        )
    return out


def _teacher_lines(teacher: dict, trans: list[dict], sig: dict | None) -> list[str]:
    out = []
    for r in trans:
        if r is teacher:
            continue
        d = (r["f1_weighted"] - teacher["f1_weighted"]) * 100
        dm = (r["f1_macro"] - teacher["f1_macro"]) * 100
        if teacher.get(TEACHER_SCORES):  # scores: no model, so neither a throughput nor parameters to compare
            out.append(f"- **{r['name']}** vs the teacher's scores: {d:+.2f} weighted-F1, {dm:+.2f} macro-F1 points.")
            continue
        sp = r["throughput_sps"] / teacher["throughput_sps"] if teacher["throughput_sps"] else float("nan")
        out.append(
            f"- **{r['name']}** vs {teacher['name']}: {d:+.2f} weighted-F1 points, {dm:+.2f} macro-F1 points"
            f"{_sig_words(_comparison(sig, r['name'], teacher['name'], 'f1_macro'))}, "
            f"{sp:.2f}× the teacher's throughput, {r['trainable_params'] / max(r['params'], 1):.2%} of its "
            "parameters trained."
        )
    return out


def _hate_lines(trans: list[dict], focus: str | None) -> list[str]:
    best = max(trans, key=lambda r: hate_f1(r.get("tuned") or r, focus))
    t = best.get("tuned") or best
    out = [
        f"- **Hate class.** best hate F1 is {best['name']}'s: {_f(hate_f1(best, focus))} at argmax, "
        f"{_f(hate_f1(t, focus))} with validation-tuned offsets."
    ]
    # (validation, test)
    pairs = [(hate_f1(r["val"], focus), hate_f1(r, focus)) for r in trans if r.get("val")]
    if pairs:
        gaps = [(v - t) * 100 for v, t in pairs]
        val_hate, test_hate = zip(*pairs)
        out.append(
            f"  On validation the same {len(pairs)} models score hate F1 "
            f"{min(val_hate):.3f}–{max(val_hate):.3f}; "
            f"validation − test is {min(gaps):+.1f} to {max(gaps):+.1f} points per model, against a "
            f"{(max(test_hate) - min(test_hate)) * 100:.1f}-point spread between models on test."
        )
    return out


def _calibration_lines(trans: list[dict]) -> list[str]:
    eces = [
        (r["name"], r["ece"], r["ece_calibrated"])
        for r in trans
        if r.get("ece") is not None and r.get("ece_calibrated") is not None
    ]
    if not eces:
        return []
    worst = max(eces, key=lambda x: x[2])
    return [
        f"- **Calibration.** after calibration (temperature + class bias, fitted on validation) the worst "
        f"test ECE is {worst[0]}'s {_f(worst[2])} "
        f"(before: {_f(worst[1])})."
    ]


def _headline(rows: list[dict], run_dir: Path, cfg: Config, quick: bool) -> list[str]:
    lines = [f"# toxdistill report: {run_dir.name}", ""]
    if quick:
        lines += ["> **Quick smoke run** on a small stratified subset, one epoch per stage: not a result.", ""]
    lines += [
        f"{_teacher_phrase(cfg)}, seed {cfg.seed}. Every row is evaluated by the same code on the same "
        "saved test split. LoRA rows are measured merged.",
        "",
        "| Model | Train Loss | Validation Loss | Test Accuracy | Test F1 |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {_shown_name(r)} | {_f(r['train_loss'], 4)} | {_f(r['val_loss'], 4)} | {_f(r['accuracy'], 4)} | "
            f"{_f(r['f1_weighted'], 4)} |"
        )
    return lines


def _teacher_phrase(cfg: Config) -> str:
    t = cfg.teacher
    if t.scores is None:
        return f"Teacher `{t.model}`"
    return (
        f"Teacher: the scores in `{Path(t.scores).name}` (no teacher model; its row is scored on the rows the file "
        f"scores), students made from `{t.pretrained}`"
    )


def _shown_name(row: dict) -> str:
    """A row's name; a scores teacher's says what it is and on how many test rows it is scored."""
    rec = row.get(TEACHER_SCORES)
    if not rec:
        return str(row["name"])
    return f"{row['name']} (scores, {rec['test']['scored']:,} of {rec['test']['rows']:,} test rows)"


def _scores_fidelity(rows: list[dict]) -> list[str]:
    """Where the teacher is only scores: every model against them on the rows they score."""
    if not any(r.get("scores_fidelity") for r in rows):
        return []
    lines = [
        "",
        "## Against the teacher's scores",
        "",
        "Each model on the validation and test rows the scores file scores: top-1 agreement with the scores' "
        "argmax, and the mean total-variation distance from their distribution (0 = the same distribution).",
        "",
        "| Model | val rows | val agreement | val TVD | test rows | test agreement | test TVD |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f = r.get("scores_fidelity")
        if not f:
            continue
        v, t = f.get("val") or {}, f.get("test") or {}
        lines.append(
            f"| {r['name']} | {v.get('rows', '—')} | {_f(v.get('agreement'))} | {_f(v.get('tvd'))} | "
            f"{t.get('rows', '—')} | {_f(t.get('agreement'))} | {_f(t.get('tvd'))} |"
        )
    return lines


def _full_results(rows: list[dict], names: list[str], focus: str | None) -> list[str]:
    lines = [
        "",
        "Train loss is each model's own training objective (the distillation loss for students), "
        "so compare validation and test losses across rows, not train losses. `samples/s` is measured on the "
        "test split right after each stage (torch, length-sorted batches); for speed compared side by side "
        "in one quiet run, see `bench.json` / `toxdistill bench`.",
        "",
        "## Full results",
        "",
        "| Model | kind | layers | acc | F1 weighted | F1 macro | "
        + " | ".join(f"F1 {n}" for n in names)
        + " | tuned F1 macro | tuned hate F1 | ECE → calibrated | params | trainable | size MB | samples/s |",
        "|---|---|---|---|---|---|" + "---|" * len(names) + "---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r.get("tuned") or {}
        layers = ",".join(map(str, r["layers"])) if r.get("layers") else "—"
        lines.append(
            f"| {_shown_name(r)} | {r['kind']} | {layers} | {_f(r['accuracy'])} | {_f(r['f1_weighted'])} | "
            f"{_f(r['f1_macro'])} | "
            + " | ".join(_f(r["f1_per_class"][n]) for n in names)
            + f" | {_f(t.get('f1_macro'))} | {_f(hate_f1(t, focus) if t else None)} | "
            f"{_f(r.get('ece'))} → {_f(r.get('ece_calibrated'))} | {r['params']:,} | {r['trainable_params']:,} "
            f"({r['trainable_params'] / max(r['params'], 1):.1%}) | {r['size_mb']:.1f} | {r['throughput_sps']:.0f} |"
        )
    lines += ["", "## Per-class precision / recall", ""]
    lines += ["| Model | " + " | ".join(f"P/R {n}" for n in names) + " |", "|---|" + "---|" * len(names)]
    for r in rows:
        lines.append(
            f"| {r['name']} | "
            + " | ".join(f"{r['precision_per_class'][n]:.2f} / {r['recall_per_class'][n]:.2f}" for n in names)
            + " |"
        )
    return lines


def _validation_beside_test(rows: list[dict], focus: str | None) -> list[str]:
    if not any(r.get("val") for r in rows):
        return []
    lines = [
        "",
        "## Validation beside test (argmax)",
        "",
        "Two splits of the same size drawn from the same data. Where a model's two scores differ by more "
        "than two models differ on one split, the split decides the ranking, not the model.",
        "",
        "| Model | val F1 weighted | test F1 weighted | val F1 macro | test F1 macro | val hate F1 | test hate F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        v = r.get("val") or {}
        lines.append(
            f"| {r['name']} | {_f(v.get('f1_weighted'))} | {_f(r['f1_weighted'])} | {_f(v.get('f1_macro'))} | "
            f"{_f(r['f1_macro'])} | {_f(hate_f1(v, focus) if v else None)} | {_f(hate_f1(r, focus))} |"
        )
    return lines


def _uncertainty(rows: list[dict], significance: dict | None) -> list[str]:
    if not significance:
        return []
    ci = significance["ci"]
    lines = [
        "",
        f"## Uncertainty: 95% bootstrap intervals ({significance['n_boot']} resamples of the test split)",
        "",
        "| Model | accuracy | F1 weighted | F1 macro | F1 hate |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        c = ci.get(r["name"], {})
        cells = [
            f"{c[m]['point']:.3f} [{c[m]['low']:.3f}, {c[m]['high']:.3f}]" if m in c else "—"
            for m in ("accuracy", "f1_weighted", "f1_macro", "f1_hate")
        ]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Are the differences real? (paired bootstrap, Δ = first − second, Holm-adjusted per metric)",
        "",
        "| pair | metric | Δ points | 95% CI | p | Holm p |",
        "|---|---|---|---|---|---|",
    ]
    for c in significance["comparisons"]:
        lines.append(
            f"| {c['a']} − {c['b']} | {c['metric']} | {c['diff'] * 100:+.2f} | "
            f"[{c['low'] * 100:+.2f}, {c['high'] * 100:+.2f}] | {c['p_value']:.3f} | {c['p_holm']:.3f} |"
        )
    return lines


def _figures(rows: list[dict], run_dir: Path) -> list[str]:
    lines = ["", "## Confusion matrices and reliability diagrams (test)", ""]
    for r in rows:
        rel = f" ![{r['name']} reliability](models/{r['name']}/reliability.png)"
        has_rel = (run_dir / MODELS_DIR / r["name"] / "reliability.png").is_file()
        lines.append(f"![{r['name']}](models/{r['name']}/confusion.png)" + (rel if has_rel else ""))
    return lines


def _seed_variation(seeds: dict | None) -> list[str]:
    if not seeds:
        return []
    lines = [
        "",
        "## Seed variation (students trained again with other seeds; mean ± sample std)",
        "",
        "The rows above are the first seed. Same split, teacher and cache; only the training order and dropout change.",
        "",
        "| stage | seeds | accuracy | F1 weighted | F1 macro | F1 hate |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in seeds.items():
        stats_cells = " | ".join(
            f"{s[k]['mean']:.4f} ± {s[k]['std']:.4f}" for k in ("accuracy", "f1_weighted", "f1_macro", "f1_hate")
        )
        lines.append(f"| {name} | {', '.join(map(str, s['seeds']))} | {stats_cells} |")
    return lines


def _robustness(result: dict | None) -> list[str]:
    if not result:
        return []
    return [
        "",
        "## Robustness and fidelity (test split, perturbed; `toxdistill check`)",
        "",
        format_robustness(result),
        "",
        "![robustness](robustness.png)",
    ]


def _eval_sets(evals: dict | None) -> list[str]:
    """Per eval set: each model's accuracy (tuned decision), then per group, models as columns."""
    lines: list[str] = []
    for name, res in (evals or {}).items():
        models = list(res["models"])
        d = res["data"]
        counts = ", ".join(f"{k} {v}" for k, v in res["label_counts"].items())
        lines += [
            "",
            f"## Eval set {name} (`{Path(d['path']).name}`, {d['rows']} rows: {counts})",
            "",
            "Accuracy is the share of rows whose predicted class is one the label maps to ("
            + "; ".join(f"{k} → {', '.join(v)}" for k, v in res["label_map"].items() if k in res["label_counts"])
            + "), with each model's tuned decision.",
            "",
            "| model | accuracy [95% CI] | " + " | ".join(f"recall {lab}" for lab in res["label_counts"]) + " |",
            "|---|---|" + "---|" * len(res["label_counts"]),
        ]
        for m in models:
            t = res["models"][m]["tuned"]
            ci = t.get("accuracy_ci")
            acc = f"{t['accuracy']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            rec = " | ".join(_f(t["recall"].get(lab)) for lab in res["label_counts"])
            lines.append(f"| {m} | {acc} | {rec} |")
        groups = res["models"][models[0]]["tuned"].get("groups") if models else None
        if groups:
            lines += ["", f"Accuracy per {d['group_col']} (rows):", "", "| group | n | " + " | ".join(models) + " |"]
            lines.append("|---|---|" + "---|" * len(models))
            for g in sorted(groups):
                cells = " | ".join(_f(res["models"][m]["tuned"]["groups"][g]["accuracy"]) for m in models)
                lines.append(f"| {g} | {groups[g]['n']} | {cells} |")
    return lines


def _pair(block_a: dict, block_b: dict, key: str) -> str:
    return f"{_f(block_a.get(key))} / {_f(block_b.get(key))}"


def frontier_section(frontier: dict | None) -> list[str]:
    """The report's "Compression frontier": the chart, the table (validation / test) and the selection's lines."""
    if not frontier:
        return []
    sel = frontier.get("selection") or {}
    focus = frontier.get("focus_class") or "focus class"
    lines = [
        "",
        FRONTIER_HEADING,
        "",
        f"Every transformer model exported ({_engines_phrase(frontier)}) and benched in one run on "
        f"{_cpu_phrase(frontier)}, {frontier['threads']} thread(s), on the same {frontier['texts']} test texts; "
        f"{_naive_phrase(frontier)} Scores "
        "are the exported models' own, validation / test; the choice is made on validation, the Pareto frontier "
        "drawn on validation (macro or weighted F1).",
        "",
        f"![compression frontier]({FRONTIER_PLOT})",
        "",
        "| Model | layers | params | backend | samples/s | × naive teacher | p50 ms | F1 weighted val / test | "
        f"F1 macro val / test | F1 {focus} val / test | behaviour agreement / TVD | parity | Pareto | chosen |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(frontier["rows"], key=lambda r: r["samples_per_s"]):
        v, t = r["val"], r["test"]
        lines.append(
            f"| {r['model']} | {r['layers']} | {r['params']:,} | {r['backend']} | {r['samples_per_s']:.1f} | "
            f"{fmt(r.get('x_naive_teacher'), '.2f')}× | {r['p50_ms']:.2f} | {_pair(v, t, 'f1_weighted')} | "
            f"{_pair(v, t, 'f1_macro')} | {_pair(v, t, 'f1_focus')} | {_fidelity(r, sel)} | "
            f"{'passed' if r['parity_passed'] else 'FAILED'} | "
            f"{'yes' if r.get('pareto') else ''} | {'**chosen**' if r['model'] == sel.get('model') else ''} |"
        )
    lines += _behaviour_lines(frontier)
    lines += _engine_lines(frontier)
    teacher = frontier.get("teacher") or {}
    if teacher.get("val"):
        tv, tt = teacher["val"], teacher["test"]
        lines += [
            "",
            f"Held against the torch teacher ({teacher['model']}): weighted F1 {_pair(tv, tt, 'f1_weighted')}, "
            f"macro F1 {_pair(tv, tt, 'f1_macro')} (validation / test).",
        ]
    if sel:
        chosen = "the teacher's own export (nothing met the rule)" if sel.get("fallback") else f"**{sel['model']}**"
        lines += [
            "",
            f"- **Chosen ({sel['rule']} rule):** {chosen}. {sel['reason'][:1].upper()}{sel['reason'][1:]}.",
            f"- **On test:** {'the choice holds' if sel['holds_on_test'] else 'the choice does NOT hold'}: "
            f"{sel['test_note']}.",
        ]
        for flag in sel.get("behaviour_flags") or []:
            lines.append(f"- **⚠ Parts ways with the teacher:** {flag['note']}.")
        if sel.get("best_error"):
            lines.append(f"- **best/ was not written:** {sel['best_error']}")
    return lines


def _naive_phrase(frontier: dict) -> str:
    naive = frontier.get("naive_teacher_samples_per_s")
    if naive is None:  # a teacher that is only scores: no model to time, so no "× naive teacher" ratio
        return "the teacher is only scores, so there is no teacher model to time and no speed-up over it."
    return f"the naive teacher (torch fp32, unsorted padded batches) reaches {naive:.1f} samples/s."


def _fidelity(row: dict, sel: dict) -> str:
    """The row's overall behaviour agreement and TVD; "⚠" where it parts ways (flagged), "left out" where the
    bound left it out; "—" where not measured (the teacher, its own reference)."""
    o = (row.get("behaviour") or {}).get("overall")
    if not o:
        return "—"
    cell = f"{100 * o['agreement']:.1f}% / {o['tvd']:.3f}"
    if any(f.get("model") == row["model"] for f in sel.get("behaviour_flags") or []):
        return f"⚠ {cell}"
    return cell + (" (left out)" if row["model"] in (sel.get("left_out_by_behaviour") or []) else "")


def _behaviour_lines(frontier: dict) -> list[str]:
    """Per candidate and source of the behaviour set, agreement with the teacher and TVD."""
    sources = list((frontier.get("behaviour") or {}).get("sources") or {})
    rows = [r for r in frontier["rows"] if (r.get("behaviour") or {}).get("overall")]
    if not sources or not rows:
        return []
    lines = [
        "",
        f"Behaviour fidelity to the torch teacher, each model in torch, on the behaviour set ({behaviour_set(frontier)})"
        ": top-1 agreement / mean total-variation distance. Clean validation F1 does not see a student that parts "
        "ways with its teacher on other text; `select.min_agreement_behaviour` and `select.max_tvd_behaviour` "
        "bound it.",
        "",
        "| Model | overall | " + " | ".join(sources) + " |",
        "|---|---|" + "---|" * len(sources),
    ]
    for r in sorted(rows, key=lambda r: r["samples_per_s"]):
        b = r["behaviour"]
        cells = [_agree_tvd(b["overall"])] + [_agree_tvd(b["sources"].get(s)) for s in sources]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return lines


def _agree_tvd(f: dict | None) -> str:
    return f"{100 * f['agreement']:.1f}% / {f['tvd']:.3f}" if f else "—"


def _cpu_phrase(frontier: dict) -> str:
    features = frontier.get("cpu_features")
    return frontier["cpu"] + (f" ({', '.join(features)})" if features else "")


def _engines_phrase(frontier: dict) -> str:
    if frontier.get("engine") == "auto":
        return "auto: each in the engine that measured fastest on this CPU while passing its parity gates"
    return str(frontier.get("engine"))


def _engine_lines(frontier: dict) -> list[str]:
    """Per model, how its engine was chosen: the screen's samples/s of the winner and the runners-up."""
    chosen = [r for r in frontier["rows"] if not (r.get("engine_choice") or {}).get("pinned", True)]
    if not chosen:
        return []
    lines = [
        "",
        "Engines, chosen per model on this CPU (the screen's samples/s; the table's are the full bench's):",
        "",
    ]
    for r in chosen:
        lines.append(f"- **{r['model']}** → {r['backend']}: {describe_choice(r['engine_choice'])}.")
    return lines


def describe_choice(engine: dict) -> str:
    """One phrase on how an engine was chosen (an ``engine_choice`` block): pinned, or the screen's rates, the
    winner's first, then the runners-up fastest first, each failed parity gate said, and the rule."""
    if engine.get("pinned", True):
        return "pinned by frontier.target"
    cands = sorted(
        engine.get("candidates") or [], key=lambda c: (c["backend"] != engine.get("chosen"), -c["samples_per_s"])
    )
    rates = ", ".join(
        f"{c['backend']} {c['samples_per_s']:,.0f}/s" + ("" if c.get("ok") else " (failed parity)") for c in cands
    )
    timing = engine.get("timing") or {}
    least = (
        f"at least {timing.get('passes')} passes and {timing['min_seconds']:g} s"
        + (", taken in turns" if timing.get("in_turns") else "")
        if timing.get("min_seconds")
        else f"{timing.get('passes')} passes"
    )
    skipped = engine.get("not_timed") or []
    rates += f"; {', '.join(skipped)} not timed, as a target below fp32 passed" if skipped else ""
    return f"chosen from {rates} ({engine.get('rule')}; {timing.get('texts')} test texts, the fastest of {least})"


def update_frontier_section(run_dir: Path, frontier: dict) -> bool:
    """Put ``frontier``'s section into an existing report.md in place of its old one (or, where it has none,
    before the wall times); the rest of the report stays as it was. False where the run has no report yet."""
    path = Path(run_dir) / REPORT_FILE
    if not path.is_file():
        return False
    lines = path.read_text(encoding="utf-8").split("\n")
    if FRONTIER_HEADING in lines:
        start = lines.index(FRONTIER_HEADING) - 1  # the blank line each section starts with
        end = next((i for i in range(start + 2, len(lines)) if lines[i].startswith("## ")), len(lines))
        end -= 1 if end < len(lines) else 0
    else:
        start = end = lines.index(WALL_TIME_HEADING) - 1 if WALL_TIME_HEADING in lines else len(lines)
    from toxdistill.evaluation.report_multilabel import frontier_ranking_lines  # [] for a single-label run

    section = [*frontier_section(frontier), *frontier_ranking_lines(frontier)]
    atomic_write_text(path, "\n".join([*lines[:start], *section, *lines[end:]]))
    return True


def _wall_times(timings: dict) -> list[str]:
    lines = ["", WALL_TIME_HEADING, "", "| stage | seconds | minutes |", "|---|---|---|"]
    for k, v in timings.items():
        lines.append(f"| {k} | {v:.0f} | {v / 60:.1f} |")
    total = sum(timings.values())
    lines.append(f"| **total** | {total:.0f} | {total / 60:.1f} |")
    return lines


def _precision_line(rows: list[dict]) -> list[str]:
    """Which models trained in bf16 autocast and which in fp32 (``train.bf16: auto`` decides by the CPU)."""
    precision = {r["name"]: r["train_precision"] for r in rows if r.get("train_precision")}
    if not precision:
        return []
    groups = {p: [m for m, q in precision.items() if q == p] for p in sorted(set(precision.values()))}
    parts = [f"{'bf16 autocast' if p == 'bf16' else p}: {', '.join(ms)}" for p, ms in groups.items()]
    return [f"- **Training precision** (`train.bf16`; auto is bf16 on a CPU with native bf16): {'; '.join(parts)}."]


def _machine(machine: dict | None, rows: list[dict]) -> list[str]:
    """Where the numbers were computed (``machine``: cpu, cpu_features, versions; the ``rows``' training
    precision), and what that means for reproducing them."""
    if not machine:
        return []
    features = ", ".join(machine.get("cpu_features") or []) or "no AVX2 or newer listed"
    versions = ", ".join(f"{k} {v}" for k, v in (machine.get("versions") or {}).items())
    return [
        "",
        MACHINE_HEADING,
        "",
        f"- **CPU:** {machine.get('cpu')} ({features}).",
        f"- **Libraries:** {versions or 'unknown'}.",
        *_precision_line(rows),
        "- **Reproducible to the last digit only on the same CPU kind** (and these versions): the same seed and data "
        "give the same split everywhere, but float sums run in other orders on other vector units (AVX2, AVX-512, "
        "AMX), so trained weights and scores can differ in their last digits, and on a close call a model's "
        "place. Speeds, and which engine wins, are this CPU's.",
    ]


def write_report(
    run_dir: Path,
    results: list[dict],
    cfg: Config,
    timings: dict,
    quick: bool = False,
    significance: dict | None = None,
    seeds: dict | None = None,
    robustness: dict | None = None,
    eval_sets: dict | None = None,
    frontier: dict | None = None,
    machine: dict | None = None,
) -> None:
    """report.md. ``machine`` (``cpu.machine_facts``: the CPU, its features and the library versions)
    adds the section that says where the numbers were computed."""
    rows = _order(results)
    if cfg.data.multi_label:
        from toxdistill.evaluation.report_multilabel import frontier_ranking_lines, multilabel_lines

        lines = [
            *multilabel_lines(rows, run_dir, cfg, quick),
            *frontier_section(frontier),
            *frontier_ranking_lines(frontier),
            *_wall_times(timings),
            *_machine(machine, rows),
            "",
        ]
        atomic_write_text(run_dir / REPORT_FILE, "\n".join(lines))
        return
    focus = cfg.data.focus_class
    names = list(rows[0]["f1_per_class"]) if rows else []
    lines = [
        *_headline(rows, run_dir, cfg, quick),
        *_full_results(rows, names, focus),
        *_validation_beside_test(rows, focus),
        *_scores_fidelity(rows),
        *_uncertainty(rows, significance),
        *_figures(rows, run_dir),
        *_seed_variation(seeds),
        *_robustness(robustness),
        *_eval_sets(eval_sets),
        *frontier_section(frontier),
        *_wall_times(timings),
        *_machine(machine, rows),
        *["", "## Analysis", "", *analysis(results, significance, focus), ""],
    ]
    atomic_write_text(run_dir / REPORT_FILE, "\n".join(lines))
