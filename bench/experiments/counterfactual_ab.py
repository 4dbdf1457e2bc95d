"""The counterfactual-augmentation A/B (data.counterfactual): every model and seed repeat of two runs, scored on
clean validation (from toxdistill.json) and on the shipped functional suite (scored here, so both arms see the
same file), plus per-group decision offsets tried on the baseline arm's validation logits.

    python bench/experiments/counterfactual_ab.py RUN_A RUN_B [RUN_C ...] -o bench/results/counterfactual-ab/ab.json

Suite measures, each with the served decision (calibration + decision offsets, "tuned") and with argmax:
identity_ok, the share of harmless identity statements (positive, neutral, self) not called hate speech;
counter_ok, the same over counter-speech, negated and quoted hate; hate_recall, the share of hateful rows called
hate speech; accuracy, hateful = hate speech and non-hateful = offensive or neither, over every row.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from toxdistill.data.counterfactual import mentions_identity
from toxdistill.data.split import load_run_split
from toxdistill.evaluation.calibrate import fit_offsets
from toxdistill.evaluation.metrics import classification_metrics
from toxdistill.inference.calibration import Calibration
from toxdistill.inference.predict import load_scorer, prepare_texts
from toxdistill.runs import find_clean_config

SUITE = Path(__file__).resolve().parents[2] / "src" / "toxdistill" / "configs" / "functional-suite.csv"
IDENTITY = ("positive_identity", "neutral_identity", "self_identity")
COUNTER = ("counter_speech", "negated_hate", "quoted_hate")
HATE = 0  # Davidson's class ids: 0 hate speech, 1 offensive, 2 neither


def model_folders(run: Path) -> dict[str, Path]:
    out = {d.name: d for d in sorted((run / "models").iterdir()) if (d / "toxdistill.json").is_file()}
    for d in sorted((run / "seeds").glob("seed*/*")):
        if (d / "toxdistill.json").is_file():
            out[f"{d.name}@{d.parent.name}"] = d
    return out


def suite_scores(pred: np.ndarray, suite: pd.DataFrame) -> dict:
    hateful = (suite["label"] == "hateful").to_numpy()
    called = pred == HATE
    func = suite["functionality"]
    return {
        "identity_ok": float(np.mean(~called[func.isin(IDENTITY).to_numpy()])),
        "counter_ok": float(np.mean(~called[func.isin(COUNTER).to_numpy()])),
        "hate_recall": float(np.mean(called[hateful])),
        "accuracy": float(np.mean(called == hateful)),
        "by_functionality": {
            f: float(np.mean(called[(func == f).to_numpy()] == hateful[(func == f).to_numpy()])) for f in func.unique()
        },
    }


def separation(p_hate: np.ndarray, suite: pd.DataFrame) -> dict:
    """Threshold-free: how well the calibrated hate probability ranks hateful rows above harmless identity
    statements (auc_identity) and above counter-speech (auc_counter); 0.5 is chance. Decision offsets move the
    operating point along this ranking; the augmentation can only be a real gain where the ranking improves."""
    from sklearn.metrics import roc_auc_score

    func, hateful = suite["functionality"], (suite["label"] == "hateful").to_numpy()
    out = {}
    for name, group in (("auc_identity", IDENTITY), ("auc_counter", COUNTER)):
        rows = hateful | func.isin(group).to_numpy()
        out[name] = float(roc_auc_score(hateful[rows], p_hate[rows]))
    return out


def val_scores(meta: dict) -> dict:
    v = meta["metrics"]["val"]
    return {k: v[k] for k in ("accuracy", "f1_weighted", "f1_macro")} | {"f1_hate": v["f1_per_class"]["hate speech"]}


def group_decide(z: np.ndarray, mask: np.ndarray, off_id: np.ndarray, off_rest: np.ndarray) -> np.ndarray:
    return np.where(mask[:, None], z + off_id, z + off_rest).argmax(-1)


def group_offsets(
    folder: Path, meta: dict, val_texts: list[str], y_val: np.ndarray, z_suite: np.ndarray, suite
) -> dict:
    """Decision offsets tuned apart on the validation rows that name an identity group and on the rest, against
    the model's one set: the suite scored with each, and validation macro F1 by 2-fold cross-fitting."""
    cal = Calibration.from_meta(meta)
    z = cal.calibrated(np.load(folder / "val_logits.npy"))
    m = np.array([mentions_identity(t) for t in val_texts])
    off_one = np.asarray(cal.offsets if cal.offsets is not None else np.zeros(z.shape[1]))
    off_id, off_rest = np.asarray(fit_offsets(z[m], y_val[m])), np.asarray(fit_offsets(z[~m], y_val[~m]))
    ms = np.array([mentions_identity(t) for t in suite["text"]])
    zs = cal.calibrated(z_suite)
    rng = np.random.default_rng(0)
    fold = rng.permutation(len(y_val)) % 2
    cv = {"one": [], "per_group": []}
    for k in (0, 1):
        fit, ev = fold != k, fold == k
        one = np.asarray(fit_offsets(z[fit], y_val[fit]))
        gi = np.asarray(fit_offsets(z[fit & m], y_val[fit & m]))
        gr = np.asarray(fit_offsets(z[fit & ~m], y_val[fit & ~m]))
        names = ["hate speech", "offensive", "neither"]
        cv["one"].append(classification_metrics(y_val[ev], (z[ev] + one).argmax(-1), names)["f1_macro"])
        cv["per_group"].append(classification_metrics(y_val[ev], group_decide(z[ev], m[ev], gi, gr), names)["f1_macro"])
    return {
        "val_rows_naming_a_group": int(m.sum()),
        "hate_among_them": int((y_val[m] == HATE).sum()),
        "offsets": {"one": off_one.tolist(), "identity": off_id.tolist(), "rest": off_rest.tolist()},
        "suite_one": suite_scores((zs + off_one).argmax(-1), suite),
        "suite_per_group": suite_scores(group_decide(zs, ms, off_id, off_rest), suite),
        "val_f1_macro_2fold": {k: float(np.mean(v)) for k, v in cv.items()},
    }


def score_run(run: Path, suite: pd.DataFrame, offsets: bool) -> dict:
    split = load_run_split(run)
    y_val = np.asarray(split.val.labels)
    rob_file = run / "robustness-val.json"
    rob = json.loads(rob_file.read_text())["models"] if rob_file.is_file() else {}
    out = {}
    for name, folder in model_folders(run).items():
        meta = json.loads((folder / "toxdistill.json").read_text())
        scorer = load_scorer(folder)
        texts = prepare_texts(list(suite["text"]), find_clean_config(folder, meta))
        logits, _ = scorer.logits(texts, 64)
        rec = {
            "val": val_scores(meta),
            "suite_tuned": suite_scores(scorer.decide(logits), suite),
            "suite_argmax": suite_scores(logits.argmax(-1), suite),
            "suite_ranking": separation(scorer.probabilities(logits)[:, HATE], suite),
            "counterfactual": meta.get("counterfactual"),
        }
        if name in rob:  # toxdistill check RUN --split val --seeds: macro F1 under each perturbation, mean of kinds
            rec["val_perturbed_f1_macro"] = float(np.mean([r["f1_macro"] for r in rob[name].values()]))
        if offsets and name != "tfidf-lr":
            rec["group_offsets"] = group_offsets(folder, meta, list(split.val.texts), y_val, logits, suite)
        out[name] = rec
        print(f"{run.name} {name}: {json.dumps({k: rec['suite_tuned'][k] for k in ('identity_ok', 'hate_recall')})}")
    return out


STUDENTS = ("odd", "even", "shallow-1", "shallow-1-llrd")  # the distill stages: the ones with a seed repeat
MEASURES = (
    ("val", "f1_macro"),
    ("val", "f1_weighted"),
    ("val", "f1_hate"),
    ("suite_tuned", "identity_ok"),
    ("suite_tuned", "counter_ok"),
    ("suite_tuned", "hate_recall"),
    ("suite_tuned", "accuracy"),
    ("suite_argmax", "identity_ok"),
    ("suite_argmax", "hate_recall"),
    ("suite_ranking", "auc_identity"),
    ("suite_ranking", "auc_counter"),
)


def _get(rec: dict, where: str, key: str) -> float:
    return float(rec[where][key])


def seed_means(arm: dict) -> dict:
    """Per measure: the mean over the distill students of each seed, so the two seeds' gap is the noise yardstick."""
    out = {}
    for where, key in MEASURES:
        by_seed = {
            seed: float(np.mean([_get(arm[n + suffix], where, key) for n in STUDENTS]))
            for seed, suffix in (("42", ""), ("43", "@seed43"))
        }
        out[f"{where}.{key}"] = by_seed | {"mean": float(np.mean(list(by_seed.values())))}
    return out


def summary_table(arms: dict) -> str:
    """Markdown: each measure, both arms (students' mean over both seeds, and each seed), and the teacher."""
    names = list(arms)
    means = {a: seed_means(arms[a]) for a in names}
    lines = [
        "| measure | "
        + " | ".join(f"{a}: students (s42 / s43) | {a}: teacher" for a in names)
        + "".join(f" | Δ students {a}" for a in names[1:])
        + " |",
        "|---|" + "---|---|" * len(names) + "---|" * (len(names) - 1),
    ]
    for where, key in MEASURES:
        k = f"{where}.{key}"
        cells = []
        for a in names:
            m = means[a][k]
            cells += [f"{m['mean']:.3f} ({m['42']:.3f} / {m['43']:.3f})", f"{_get(arms[a]['teacher'], where, key):.3f}"]
        deltas = [means[a][k]["mean"] - means[names[0]][k]["mean"] for a in names[1:]]
        lines.append(f"| {k} | " + " | ".join(cells) + "".join(f" | {d:+.3f}" for d in deltas) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="the baseline arm's run folder, then the treatments'")
    ap.add_argument("-o", "--output", type=Path, required=True)
    a = ap.parse_args()
    suite = pd.read_csv(SUITE)
    arms = {r.name: score_run(r, suite, offsets=(k == 0)) for k, r in enumerate(a.runs)}
    a.output.parent.mkdir(parents=True, exist_ok=True)
    summary = {name: seed_means(arm) for name, arm in arms.items()}
    a.output.write_text(json.dumps({"suite_rows": len(suite), "summary": summary, "arms": arms}, indent=1))
    print(summary_table(arms))


if __name__ == "__main__":
    main()
