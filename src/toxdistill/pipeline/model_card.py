"""The model card of a shipped ``RUN/best/``: ``README.md`` in the Hugging Face model-card format.

A YAML front matter (licence, language, library, pipeline tag, tags, data sets, ``model-index`` with the test
metrics) and the sections a user of the folder needs: what the model is and how it was made, its data, its
test metrics with 95% intervals, its speed on the machine that benched it, intended use and limits, and how to
load it with plain ONNX Runtime (or OpenVINO) and ``transformers``' tokenizer, or with toxdistill.

Rendering is pure: ``render_model_card`` turns a ``CardFacts`` (gathered by ``pipeline.best``) into text.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field

import yaml

from toxdistill.data import frontend
from toxdistill.data.dataset import CLEAN_STEPS, FRONTEND_STEPS
from toxdistill.evaluation.behaviour import describe
from toxdistill.evaluation.frontier import SCORES_RULE
from toxdistill.evaluation.report import describe_choice
from toxdistill.evaluation.tables import fmt
from toxdistill.files import PACKAGED_MINILM, PACKAGED_MPNET
from toxdistill.inference.calibration import is_multi_label
from toxdistill.inference.export_record import gate_block

# Teacher checkpoints whose licence and Hub id are known: (licence, base_model).
KNOWN_CHECKPOINTS = {
    PACKAGED_MINILM: ("apache-2.0", "sentence-transformers/all-MiniLM-L6-v2"),
    PACKAGED_MPNET: ("apache-2.0", "sentence-transformers/all-mpnet-base-v2"),
    "sentence-transformers/all-MiniLM-L6-v2": ("apache-2.0", "sentence-transformers/all-MiniLM-L6-v2"),
    "sentence-transformers/all-mpnet-base-v2": ("apache-2.0", "sentence-transformers/all-mpnet-base-v2"),
}
DAVIDSON_HUB = "tdavidson/hate_speech_offensive"
DAVIDSON = (
    "Davidson, Warmsley, Macy and Weber (2017), *Automated Hate Speech Detection and the Problem of Offensive "
    "Language* (ICWSM): tweets found through a hate-speech lexicon, each labelled by CrowdFlower annotators as hate "
    "speech, offensive language or neither. The data is under the MIT licence "
    "(github.com/t-davidson/hate-speech-and-offensive-language)."
)
# Example texts of the loading snippet: a mention and a URL, so the cleaning is exercised.
EXAMPLES = ["@someone you are a wonderful person", "I hate all of you, get out of this country http://t.co/x"]
# The card's metric rows: the bootstrap table's key, the frontier row's key, the label.
METRICS = (
    ("f1_weighted", "f1_weighted", "weighted F1"),
    ("f1_macro", "f1_macro", "macro F1"),
    ("f1_hate", "f1_focus", "F1 of {focus}"),
    ("accuracy", "accuracy", "accuracy"),
)


@dataclass
class CardFacts:
    """Everything the card says, gathered from the run folder (``pipeline.best.write_best``)."""

    run_name: str
    folder: str  # how the loading snippets name the best/ folder
    run_folder: str
    meta: dict  # best/toxdistill.json: the source model's metadata and the export record
    row: dict  # the chosen row of frontier.json
    selection: dict  # frontier.json's selection block
    bench: dict  # frontier.json's top level: cpu, cpu_features, threads, texts, engine, naive_teacher_samples_per_s
    teacher_row: dict | None
    teacher_model: str
    data_source: str  # "davidson" or "file"
    data_name: str | None
    label_names: list[str]
    focus_class: str
    split_sizes: dict[str, int]  # train / val / test rows
    test_support: list[int]  # test rows per class, in label order
    seed: int
    ci: dict[str, dict[str, float]]  # bootstrap_ci of this graph's test predictions
    n_boot: int
    robustness: str | None = None  # one line, or None when the run did not measure it
    version: str = ""
    extra_tags: list[str] = field(default_factory=list)

    @property
    def record(self) -> dict:
        return self.meta.get("export") or {}

    @property
    def openvino(self) -> bool:
        return self.record.get("engine") == "openvino"

    @property
    def fallback(self) -> bool:
        return bool(self.selection.get("fallback"))


def render_model_card(f: CardFacts) -> str:
    """The card: YAML front matter, then the sections, in Markdown."""
    front = yaml.safe_dump(front_matter(f), sort_keys=False, allow_unicode=True, width=120)
    parts = [
        f"---\n{front}---",
        _summary(f),
        _model(f),
        _data(f),
        _metrics(f),
        _speed(f),
        _use(f),
        _loading(f),
    ]
    return "\n\n".join(p.rstrip() for p in parts) + "\n"


# ---------------------------------------------------------------- front matter
def front_matter(f: CardFacts) -> dict:
    """The Hub's metadata: licence (the teacher checkpoint's), language, library, task, tags, data, results."""
    licence, base = KNOWN_CHECKPOINTS.get(f.teacher_model, ("unknown", None))
    engine_tags = ["openvino", "int8" if f.record.get("precision") == "int8" else f.record.get("precision")]
    if not f.openvino:
        engine_tags = ["onnx", "int8" if f.record.get("quantization") else "fp32"]
    out: dict = {
        "license": licence,
        "language": ["en"],
        "library_name": "openvino" if f.openvino else "onnx",
        "pipeline_tag": "text-classification",
    }
    if base:
        out["base_model"] = base
    out["tags"] = list(
        dict.fromkeys(
            [
                "toxdistill",
                "hate-speech",
                "offensive-language",
                "content-moderation",
                "knowledge-distillation",
                *engine_tags,
                *f.extra_tags,
            ]
        )
    )
    if f.data_source == "davidson":
        out["datasets"] = [DAVIDSON_HUB]
    out["metrics"] = ["f1", "accuracy"]
    metrics = []
    for key, _, label in METRICS:
        if key not in f.ci:
            continue
        entry: dict = {"type": "accuracy" if key == "accuracy" else "f1", "value": round(f.ci[key]["point"], 4)}
        entry["name"] = label.format(focus=f.focus_class)
        if key in ("f1_weighted", "f1_macro"):
            entry["args"] = {"average": key.removeprefix("f1_")}
        metrics.append(entry)
    dataset = {
        "name": "Davidson et al. 2017, hate speech and offensive language"
        if f.data_source == "davidson"
        else f.data_name or "labelled data",
        "type": DAVIDSON_HUB if f.data_source == "davidson" else "custom",
        "split": f"test ({f.split_sizes.get('test', 0)} rows of toxdistill's stratified split, seed {f.seed})",
    }
    out["model-index"] = [
        {
            "name": f"{f.run_name}-best",
            "results": [
                {
                    "task": {"type": "text-classification", "name": "Text Classification"},
                    "dataset": dataset,
                    "metrics": metrics,
                }
            ],
        }
    ]
    return out


# ---------------------------------------------------------------- sections
def _engine_name(f: CardFacts) -> str:
    if f.openvino:
        return f"OpenVINO {f.record.get('precision', '')}".strip()
    return "ONNX Runtime int8" if f.record.get("quantization") else "ONNX Runtime fp32"


def _summary(f: CardFacts) -> str:
    labels = ", ".join(f.label_names)
    lines = [
        f"# {f.run_name} / best: {f.row.get('model')}, {_engine_name(f)}",
        "",
        f"A classifier of English tweets and short comments into {labels}. It is the model that the toxdistill run "
        f"`{f.run_name}` chose and shipped: {_rule(f)}",
    ]
    if f.fallback:
        lines += [
            "",
            f"**No candidate met the rule, so this is the teacher's own export:** {f.selection.get('reason')}",
        ]
    front = _frontend_steps(f.meta)
    if front:
        lines += [
            "",
            f"**Texts go through a front-end before the tokenizer** ({', '.join(front)}), which undoes disguised "
            "spellings. The saved tokenizer does not do it: with `transformers` alone, clean each text with the "
            '`clean` function of "How to load" below (it reads `confusables.json` from this folder), or the '
            "answers differ from toxdistill's on disguised text.",
        ]
    return "\n".join(lines)


def _rule(f: CardFacts) -> str:
    s = f.selection
    crit = s.get("criteria") or {}
    bound = _bound(crit, _multi_label(f))
    with_bound = f", with {bound} on the behaviour set." if bound else "."
    if s.get("rule") == SCORES_RULE:
        return "the candidate with the best validation macro F1 (the teacher is only scores: no model to be near)."
    if s.get("rule") == "budget":
        return (
            f"the best candidate on validation at or above {fmt(crit.get('min_samples_per_s'), ',.0f')} samples/s"
            + with_bound
        )
    names = {"max_drop_f1_weighted": "weighted F1", "max_drop_f1_macro": "macro F1"}
    if _multi_label(f):  # held to macro PR AUC alone (select.max_drop_pr_auc_macro)
        names = {"max_drop_pr_auc_macro": "macro PR AUC"}
    limits = [f"{100 * v:.1f} points of {names[k]}" for k, v in crit.items() if k in names and v is not None]
    within = " and ".join(limits) or "the tolerance"
    return f"the fastest candidate within {within} of the teacher on validation{with_bound}"


def _multi_label(f: CardFacts) -> bool:
    return is_multi_label(f.meta)


def _bound(crit: dict, multi_label: bool = False) -> str:
    """The selection's behaviour bound in words, from its criteria; "" where it had none."""
    parts = []
    agreement = "per-label decision agreement" if multi_label else "top-1 agreement"
    if crit.get("min_agreement_behaviour") is not None:
        parts.append(f"at least {100 * crit['min_agreement_behaviour']:.1f}% {agreement} with the teacher")
    if crit.get("max_tvd_behaviour") is not None:
        parts.append(f"a total-variation distance of at most {crit['max_tvd_behaviour']:.3f}")
    return " and ".join(parts)


def _behaviour(f: CardFacts) -> str | None:
    """The card's behaviour line: the chosen model's fidelity to the teacher beyond clean validation, and the
    candidates the bound left out or flagged; None where the frontier did not measure it."""
    block = f.row.get("behaviour")
    sources = (f.bench.get("behaviour") or {}).get("sources") or {}
    left_out = f.selection.get("left_out_by_behaviour") or []
    if not block and not left_out:
        return None
    line = "- **Behaviour beyond clean validation.** "
    if block:
        what = ", ".join(f"{name} ({s['texts']} texts)" for name, s in sources.items())
        line += f"Against the teacher, on {what or 'the behaviour set'}: {describe(block)} (in torch)."
    elif f.row.get("kind") == "teacher":
        line += "This is the teacher: the behaviour set's reference."
    if left_out:
        line += f" Left out by the behaviour bound: {', '.join(left_out)}."
    flags = f.selection.get("behaviour_flags") or []
    if flags:
        line += " Flagged: " + "; ".join(x["note"] for x in flags) + "."
    return line


def _model(f: CardFacts) -> str:
    meta, rec, row = f.meta, f.record, f.row
    params = row.get("params") or meta.get("params")
    lines = ["## The model", ""]
    lines.append(f"- **What it is.** {_what(f)}{f' {params:,} parameters.' if params else ''}")
    if f.selection.get("reason") and not f.fallback:
        lines.append(f"- **Why this one.** {f.selection['reason']}.".replace("..", "."))
    fidelity = _behaviour(f)
    if fidelity:
        lines.append(fidelity)
    how = _how_trained(meta)
    if how:
        lines.append(f"- **How it was made.** {how}")
    lines.append(f"- **Engine.** {_engine(rec)}")
    parity = _parity(rec)
    if parity:
        lines.append(f"- **Parity.** {parity}")
    holds = f.selection.get("holds_on_test")
    if holds is not None and not f.fallback:
        note = f.selection.get("test_note") or ""
        lines.append(
            f"- **Does the choice hold on test?** {'Yes' if holds else 'No'}" + (f": {note}." if note else ".")
        )
    made = f"toxdistill {f.version}" if f.version else "toxdistill"
    versions = ", ".join(f"{k} {v}" for k, v in (rec.get("versions") or {}).items())
    lines.append(
        f"- **Made by** {made} on {rec.get('created', 'an unknown date')}"
        + (f" ({versions})" if versions else "")
        + f", from `{f.run_folder}` (its report.md has the whole frontier)."
    )
    return "\n".join(lines)


def _what(f: CardFacts) -> str:
    meta, kind = f.meta, f.meta.get("kind")
    layers = meta.get("layers") or []
    t_layers = (f.teacher_row or {}).get("layers")
    if kind == "teacher":
        trained = "fine-tuned on the training split" if meta.get("train") else "used as given"
        return f"The run's teacher: `{f.teacher_model}`, {trained}, {len(layers) or t_layers or '?'} layers."
    if kind == "student" and meta.get("arch") == "cnn":
        source = meta.get("cut_from") or f.teacher_model
        return (
            f"A student without attention: the token embeddings of `{source}` under convolutions over 1, 2 and 3 "
            "tokens, max and mean pooled (`cnn.py` in the folder)."
        )
    if kind == "student":
        kept = ", ".join(str(x) for x in layers)
        of = f" of {t_layers}" if t_layers else ""
        if meta.get("student_model"):
            return (
                f"A {len(layers)}-layer student made from `{meta['student_model']}` (its layers {kept} kept), "
                f"distilled from the teacher `{f.teacher_model}`."
            )
        if meta.get("cut_from"):  # the teacher is only scores: the layers are the pretrained model's
            return f"A {len(layers)}-layer student made of the layers {kept} of `{meta['cut_from']}`."
        return f"A {len(layers)}-layer student made of the teacher's layers {kept}{of} (`{f.teacher_model}`)."
    return f"The run's `{kind}` stage `{meta.get('name')}` (teacher `{f.teacher_model}`)."


def _how_trained(meta: dict) -> str:
    stage = meta.get("stage") or {}
    parts = []
    if stage.get("kind"):
        parts.append(f"toxdistill's `{stage['kind']}` stage `{stage.get('name', meta.get('name'))}`")
    distill = stage.get("distill") or {}
    loss = ", ".join(f"{k} {v}" for k, v in distill.items() if v not in (None, 0, 0.0, False))
    if loss and stage.get("kind") in ("distill", "distill-lora"):
        parts.append(f"distillation loss: {loss}")
    train = stage.get("train") or {}
    if train.get("epochs") is not None:
        parts.append(f"{train['epochs']:g} epochs at lr {train.get('lr')}")
    return "; ".join(parts) + "." if parts else ""


def _engine(rec: dict) -> str:
    q = rec.get("quantization") or {}
    size = f"`{rec.get('file')}`, {fmt(rec.get('size_mb'), '.1f')} MB"
    if rec.get("engine") == "openvino":
        if q.get("method") == "static":
            cal = (q.get("calibration") or {}).get("n")
            return (
                f"OpenVINO IR ({size}), int8 by NNCF static quantization: weights and activations, the activation "
                f"ranges calibrated on {cal} training texts."
            )
        return f"OpenVINO IR ({size}), {rec.get('precision')}."
    fused = " on a fused graph (ONNX Runtime's transformer optimizer)" if rec.get("fusion") else ""
    if q:
        ops = ", ".join(q.get("op_types") or [])
        return (
            f"ONNX Runtime int8 ({size}, opset {rec.get('opset')}): dynamic quantization{fused}, the weights of the "
            f"{ops} ops int8 per output channel, activations quantized as it runs."
        )
    return f"ONNX fp32 ({size}, opset {rec.get('opset')}){fused}, no quantization."


def _parity(rec: dict) -> str:
    b = gate_block(rec)
    if not b:
        return ""
    against = b.get("against") or ("fp32" if rec.get("quantization") or rec.get("engine") == "openvino" else "torch")
    s = f"against {against} on {b.get('n', 0):,} texts ({b.get('texts')}): the same class on {100 * b['agreement']:.2f}%"
    if "f1_weighted_drop_points" in b:
        s += f", weighted F1 {0.0 - b['f1_weighted_drop_points']:+.2f} points"
    if "max_abs_diff" in b:
        s += f", max |Δlogit| {b['max_abs_diff']:.1e}"
    return s[0].upper() + s[1:] + ". Passed."


def _data(f: CardFacts) -> str:
    sizes = f.split_sizes
    total = sum(sizes.values())
    src = DAVIDSON if f.data_source == "davidson" else f"The run's own labelled file ({f.data_name or 'data.path'})."
    classes = ", ".join(f"{i} {n}" for i, n in enumerate(f.label_names))
    support = ", ".join(f"{n} {c:,}" for n, c in zip(f.label_names, f.test_support))
    clean = _clean_steps(f.meta)
    return "\n".join(
        [
            "## Data",
            "",
            src,
            "",
            f"- **Split.** {total:,} rows, stratified by class (seed {f.seed}): train {sizes.get('train', 0):,}, "
            f"validation {sizes.get('val', 0):,}, test {sizes.get('test', 0):,}. The model was chosen on validation "
            "and is scored here on test.",
            f"- **Classes** (ids in the model's output order): {classes}. Test rows per class: {support}.",
            f"- **Cleaning** before tokenizing (as in training; the snippets below do it too): "
            f"{', '.join(clean) or 'none'}.",
        ]
    )


def _clean_steps(meta: dict) -> list[str]:
    c = _clean(meta)
    names = {
        "unescape_html": "HTML entities unescaped",
        "normalize_urls": "URLs → `http`",
        "normalize_mentions": "mentions → `@user`",
        "strip_rt": "a leading `RT` removed",
        "collapse_whitespace": "whitespace collapsed",
    }
    return [v for k, v in names.items() if c.get(k)] + _frontend_steps(meta)


# The front-end's steps as the card names them (data.clean, data/frontend.py), in the order they run.
FRONTEND_NAMES = {
    "nfkc": "Unicode NFKC",
    "strip_zero_width": "zero-width characters removed",
    "fold_confusables": "look-alike letters of other scripts folded to Latin in mixed-script words",
    "decode_leet": "leetspeak decoded in words mixing letters with digits or symbols",
    "join_spelled": "spelled-out letters joined (`h a t e` → `hate`)",
    "squeeze_repeats": "letters repeated 3+ times cut to 2",
}


def _frontend_steps(meta: dict) -> list[str]:
    c = _clean(meta)
    return [FRONTEND_NAMES[k] for k in FRONTEND_STEPS if c.get(k)]


def _clean(meta: dict) -> dict:
    return meta.get("clean") or (meta.get("export") or {}).get("clean") or {}


def _metrics(f: CardFacts) -> str:
    if _multi_label(f):
        return _multi_label_metrics(f)
    n = f.split_sizes.get("test", 0)
    teacher = (f.teacher_row or {}).get("test") or {}
    val, t_val = f.row.get("val") or {}, (f.teacher_row or {}).get("val") or {}
    lines = [
        f"## Metrics (test, {n:,} rows)",
        "",
        "| metric | this model | 95% interval | teacher | validation (this / teacher) |",
        "|---|---|---|---|---|",
    ]
    for key, row_key, label in METRICS:
        c = f.ci.get(key)
        if c is None:
            continue
        lines.append(
            f"| {label.format(focus=f.focus_class)} | {c['point']:.3f} | [{c['low']:.3f}, {c['high']:.3f}] "
            f"| {fmt(teacher.get(row_key))} | {fmt(val.get(row_key))} / {fmt(t_val.get(row_key))} |"
        )
    lines += [
        "",
        f"Scores of this very graph's argmax predictions; intervals by percentile bootstrap over the test rows "
        f"({f.n_boot:,} resamples, seed {f.seed}). The teacher's scores are those of its row in the run's frontier "
        f"(its {(f.teacher_row or {}).get('backend', '?')} export). Served labels add the decision offsets tuned on "
        "validation (see *How to load*).",
    ]
    return "\n".join(lines)


def _multi_label_metrics(f: CardFacts) -> str:
    """A multi-label model's scores: each label's ranking scores and F1 at its tuned threshold (the source model's
    own, from its toxdistill.json), and macro PR AUC of this graph and of the teacher (the frontier's rows)."""
    m = f.meta.get("metrics") or {}
    roc, pr = m.get("roc_auc_per_label") or {}, m.get("pr_auc_per_label") or {}
    tuned = (m.get("tuned") or {}).get("f1_per_class") or {}
    lines = [
        f"## Metrics (test, {f.split_sizes.get('test', 0):,} rows)",
        "",
        "| label | ROC AUC | PR AUC | F1 at its threshold |",
        "|---|---|---|---|",
        *(f"| {n} | {fmt(roc.get(n))} | {fmt(pr.get(n))} | {fmt(tuned.get(n))} |" for n in f.label_names),
        "",
        "| macro PR AUC | this graph | teacher |",
        "|---|---|---|",
    ]
    for part in ("val", "test"):
        mine, teacher = (f.row.get(part) or {}), ((f.teacher_row or {}).get(part) or {})
        lines.append(f"| {part} | {fmt(mine.get('pr_auc_macro'))} | {fmt(teacher.get('pr_auc_macro'))} |")
    lines += [
        "",
        "The per-label table is the source model's (torch), each label decided at its threshold tuned on validation, "
        "as served; the macro PR AUC rows are this very graph's and the teacher's export's, from the run's frontier.",
    ]
    return "\n".join(lines)


def _speed(f: CardFacts) -> str:
    row, b, t = f.row, f.bench, f.teacher_row or {}
    naive = b.get("naive_teacher_samples_per_s")
    rows = [_speed_row(f"this model ({row.get('model')})", row)]
    if t and t.get("model") != row.get("model"):
        rows.append(_speed_row("teacher", t))
    if naive:
        rows.append(f"| naive teacher | torch fp32 | {naive:,.0f} | — | 1.0× |")
    features = b.get("cpu_features")
    cpu = f"**{b.get('cpu', 'an unnamed CPU')}**" + (f" ({', '.join(features)})" if features else "")
    note = (
        f"Measured by the run's frontier bench on {cpu}, {b.get('threads', '?')} threads, on the same "
        f"{fmt(b.get('texts'), ',')} test texts for every row, in one bench run. The ratios carry to other machines "
        "better than the rates; `toxdistill bench` measures yours. p50 is the median latency of one text."
    )
    header = ["## Speed on this machine", "", "| model | engine | samples/s | p50 (ms) | × naive teacher |"]
    return "\n".join([*header, "|---|---|---|---|---|", *rows, "", note, "", _engine_choice(f)])


def _engine_choice(f: CardFacts) -> str:
    """How this model's engine was chosen, and how to choose again on another CPU."""
    choice = f.row.get("engine_choice") or {}
    model = f"{f.run_folder}/models/{f.row.get('model')}"
    if choice.get("pinned", True):
        return (
            f"**Engine:** {f.row.get('backend')}, pinned by the run's `frontier.target`. Which engine is fastest "
            f"depends on the CPU: `toxdistill frontier {f.run_folder} --target auto` measures each on yours."
        )
    return (
        f"**Engine:** {f.row.get('backend')} on this CPU, {describe_choice(choice)}; then benched in full "
        f"(the table). Another CPU may favour another engine: `toxdistill frontier {f.run_folder}` measures again "
        f"there, or `toxdistill export {model} --auto` for this model alone."
    )


def _speed_row(name: str, r: dict) -> str:
    return (
        f"| {name} | {r.get('backend')} | {fmt(r.get('samples_per_s'), ',.0f')} | {fmt(r.get('p50_ms'), '.2f')} "
        f"| {fmt(r.get('x_naive_teacher'), '.1f')}× |"
    )


def _use(f: CardFacts) -> str:
    hate = f.ci.get("f1_hate")
    share = f.test_support[f.label_names.index(f.focus_class)] / max(1, sum(f.test_support))
    hate_line = ""
    if hate:
        hate_line = (
            f"- **The {f.focus_class} class is the rare, hard one.** It is {100 * share:.1f}% of the test rows; its "
            f"F1 is {hate['point']:.3f} [{hate['low']:.3f}, {hate['high']:.3f}]."
        )
        if f.data_source == "davidson":
            hate_line += (
                " Many hateful tweets come out as offensive and the reverse, and hate without a slur is mostly missed."
            )
    lines = [
        "## Intended use and limits",
        "",
        "- **Intended use:** triage for moderation: ranking or flagging English tweets and short comments for a "
        "person to review. Not for removing content or judging people without review.",
    ]
    if hate_line:
        lines.append(hate_line)
    lines += [
        "- **Its data's limits.** Tweets of 2017 found through a lexicon, labelled by crowd workers: the classes "
        "follow their judgement and that lexicon. Models trained on it flag African-American English as offensive "
        "more often (Davidson, Bhattacharya and Weber 2019; Sap et al. 2019)."
        if f.data_source == "davidson"
        else "- **Its data's limits** are those of the run's own labelled file.",
        f"- **English only**; text longer than {f.meta.get('max_length', '?')} tokens is cut.",
        f"- **Robustness.** {f.robustness or 'Not measured in this run (robustness.enabled is off).'}",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- loading
def _loading(f: CardFacts) -> str:
    need = "openvino transformers numpy" if f.openvino else "onnxruntime transformers numpy"
    return "\n".join(
        [
            "## How to load",
            "",
            f"With {'OpenVINO' if f.openvino else 'ONNX Runtime'} and `transformers`' tokenizer alone "
            f"(`pip install {need}`; no torch, no toxdistill). It cleans the texts as in training and gives "
            "the probabilities and labels that toxdistill serves:",
            "",
            "```python",
            plain_snippet(f),
            "```",
            "",
            f"With toxdistill (`pip install 'toxdistill[{'serve,openvino' if f.openvino else 'serve'}]'`; no torch):",
            "",
            "```bash",
            f'echo "you are a wonderful person" | toxdistill predict {f.folder} - --format txt -o scored.jsonl',
            f"toxdistill predict {f.folder} comments.csv -o scored.csv   # a text, tweet or comment column",
            f"toxdistill serve {f.folder}                                  # this model alone",
            f"toxdistill serve {f.run_folder}       # every model of the run, this one first (the default)",
            "```",
        ]
    )


def plain_snippet(f: CardFacts) -> str:
    """Python that loads the folder with ONNX Runtime (or OpenVINO) and ``transformers``' tokenizer, cleans as
    in training, and computes toxdistill's calibrated probabilities and decided labels (``Calibration``)."""
    meta, rec = f.meta, f.record
    clean = clean_function(_clean(meta))
    front = frontend_source(_clean(meta))
    if f.openvino:
        imports = ["import openvino as ov"]
        load = [
            f'compiled = ov.Core().compile_model(f"{{folder}}/{rec.get("file")}", "CPU")',
            "names = {i.get_any_name() for i in compiled.inputs}",
        ]
        run = "logits = compiled({k: v.astype(np.int64) for k, v in enc.items() if k in names})[compiled.output(0)]"
    else:
        imports = ["import onnxruntime as ort"]
        load = [
            f'session = ort.InferenceSession(f"{{folder}}/{rec.get("file")}", providers=["CPUExecutionProvider"])',
            "names = {i.name for i in session.get_inputs()}",
        ]
        run = "logits = session.run(None, {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0]"
    lines = [
        "import html",
        "import json",
        "import re",
        *(["import unicodedata", "from pathlib import Path"] if front else []),
        "",
        "import numpy as np",
        *imports,
        "from transformers import AutoTokenizer",
        "",
        f"folder = {json.dumps(f.folder)}",
        'config = json.load(open(f"{folder}/config.json"))',
        'labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]',
        "tokenizer = AutoTokenizer.from_pretrained(folder)",
        *load,
        "",
        "",
        *front,
        *clean,
        "",
        "",
        f"texts = {json.dumps(EXAMPLES)}",
        "enc = tokenizer(",
        f"    [clean(t) for t in texts], padding=True, truncation=True, max_length={int(meta.get('max_length') or 512)}, "
        'return_tensors="np"',
        ")",
        run,
        *decision_lines(meta),
    ]
    return "\n".join(lines)


def decision_lines(meta: dict) -> list[str]:
    """The snippet's last lines: ``logits`` to calibrated probabilities and decided labels, printed per text."""
    cal = meta.get("calibration") or {}
    if is_multi_label(meta):
        # Per label; absent keys are the identity calibration and the even threshold.
        t, b, cut = (cal.get(k, d) for k, d in (("temperature", 1.0), ("bias", 0.0), ("thresholds", 0.5)))
        return [
            "# Calibrated as toxdistill serves it: per label, a temperature and a bias fitted on validation, and a",
            "# threshold tuned on validation; a label is decided when its probability reaches its threshold.",
            f"probs = 1 / (1 + np.exp(-(logits / {_per_label(t)} + {_per_label(b)})))",
            f"decided = probs >= {_per_label(cut)}",
            "for text, row, p in zip(texts, decided, probs):",
            "    print([n for n, d in zip(labels, row) if d], {n: round(float(q), 3) for n, q in zip(labels, p)}, text)",
        ]
    bias, offsets = cal.get("bias"), cal.get("offsets")
    z = f"z = logits / {float(cal.get('temperature', 1.0))!r}" + (
        f" + np.array({_floats(bias)})" if bias is not None else ""
    )
    decide = "z" + (f" + np.array({_floats(offsets)})" if offsets is not None else "")
    return [
        "# Calibrated as toxdistill serves it: temperature and class bias fitted on validation, then per-class",
        "# decision offsets tuned on validation for macro F1. The test metrics above score argmax(logits).",
        z,
        "probs = np.exp(z - z.max(-1, keepdims=True))",
        "probs /= probs.sum(-1, keepdims=True)",
        f"predicted = [labels[i] for i in ({decide}).argmax(-1)]",
        "for text, label, p in zip(texts, predicted, probs):",
        "    print(label, {n: round(float(q), 3) for n, q in zip(labels, p)}, text)",
    ]


def clean_function(switches: dict) -> list[str]:
    """The snippet's ``clean(text)``: ``data.dataset.clean_text``'s steps rendered from its own patterns
    (``CLEAN_STEPS``), those that ``switches`` (the model's saved data.clean) turns on."""
    lines = ["def clean(text):", "    # The cleaning of the training data (toxdistill's data.clean)."]
    if switches.get("unescape_html"):
        lines.append("    text = html.unescape(html.unescape(text))  # twice: some tweets are double-escaped")
    for name in FRONTEND_STEPS:  # as clean_text: after the unescaping, before the regex steps
        if switches.get(name):
            arg = ", CONFUSABLES" if name == "fold_confusables" else ""
            lines.append(f"    text = {name}(text{arg})")
    for step in CLEAN_STEPS:
        if switches.get(step.switch):
            strip = ".strip()" if step.strip else ""
            lines.append(f"    text = re.sub({_raw(step.pattern)}, {json.dumps(step.repl)}, text){strip}")
    lines.append("    return text")
    return lines


def frontend_source(switches: dict) -> list[str]:
    """The front-end's code for the snippet, where ``switches`` turn on any of its steps: ``data/frontend.py``
    itself from its first constant on (its imports are the snippet's), and the fold table read from the folder."""
    if not any(switches.get(name) for name in FRONTEND_STEPS):
        return []
    lines = inspect.getsource(frontend).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("CONFUSABLES_FILE"))
    body = lines[start:]
    if switches.get("fold_confusables"):
        body += ["", "", 'CONFUSABLES = load_confusables(f"{folder}/{CONFUSABLES_FILE}")']
    return ["# The front-end (toxdistill's data/frontend.py, as it is).", *body, "", ""]


def _raw(pattern: str) -> str:
    """``pattern`` as a Python literal: a raw string where one can say it, as a reader would write it."""
    if '"' in pattern or pattern.endswith("\\") or "\n" in pattern:
        return repr(pattern)
    return f'r"{pattern}"'


def _per_label(x) -> str:
    """A per-label list as the snippet's numpy array, a scalar (one value for every label) as itself."""
    return f"np.array({_floats(x)})" if isinstance(x, list) else repr(float(x))


def _floats(values) -> str:
    return "[" + ", ".join(repr(round(float(v), 6)) for v in values) + "]"
