"""A team with few labels: does the transfer set (``data.unlabelled``) close the students' gap to their teacher?

    python bench/experiments/low_label.py prepare DATA.csv OUT      # the folders and configs below
    bash OUT/commands.sh                                          # the runs, one after the other
    python bench/experiments/low_label.py collect OUT RESULTS      # the table, as JSON and Markdown

For each labelled share (10% and 25% of the default split's training rows, stratified, seed 0) two run folders
share one split (validation and test are the default split's, row for row) and one teacher, fine-tuned on that
share alone by the default recipe:

- ``labNN``: the students trained on the labelled share only (2 seeds);
- ``labNN-transfer``: the same students, with the rest of the training split, its labels dropped, as the
  transfer set (2 seeds). Its teacher, split and cache are copied from ``labNN``, so both arms learn from the
  same teacher.

The students are the default config's ``shallow-1-llrd`` (1 layer) and ``even`` (3 layers); every other stage,
the robustness check and the frontier are off. "Gap closed" is (with − without) / (teacher − without), on
macro F1, seed means.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from toxdistill.config import DEFAULT_CONFIG, load_config
from toxdistill.data.dataset import load_dataset
from toxdistill.data.split import make_or_load_split, stratified_subsample
from toxdistill.runs import write_run_format

SHARES = (0.10, 0.25)
STUDENTS = ("shallow-1-llrd", "even")
SEEDS = 2


def _config(unlabelled: Path | None) -> dict:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    for st in raw["stages"]:
        st["enabled"] = st["name"] in STUDENTS
    raw["robustness"] = {"enabled": False}
    raw["frontier"] = {"enabled": False}
    raw["eval_sets"] = []
    raw["seeds"] = SEEDS
    if unlabelled is not None:
        raw["data"]["unlabelled"] = [str(unlabelled)]
    return raw


def prepare(data: Path, out: Path) -> None:
    cfg = load_config(None)
    ds = load_dataset(data, cfg.data)
    out.mkdir(parents=True, exist_ok=True)
    full = make_or_load_split(ds, out / "default-split.json", cfg.data, cfg.seed)
    raw = pd.read_csv(data)
    by_id = raw.set_index("Unnamed: 0")[cfg.data.text_col]
    lines = ["set -e", f"export TOXDISTILL_DATA={data}"]
    for share in SHARES:
        name = f"lab{round(share * 100):02d}"
        n = round(share * len(full.train))
        kept = np.sort(stratified_subsample(full.train.labels, full.train.ids, n, 0))
        rest = np.setdiff1d(full.train.ids, kept)
        split = json.loads((out / "default-split.json").read_text()) | {"train": kept.tolist()}
        (out / name).mkdir(exist_ok=True)
        (out / name / "split.json").write_text(json.dumps(split))
        write_run_format(out / name)  # a folder holding a split is a run folder: it says its format
        unlabelled = out / f"{name}-unlabelled.csv"
        pd.DataFrame({"tweet": by_id.loc[rest].to_numpy()}).to_csv(unlabelled, index=False)
        (out / f"{name}.yaml").write_text(yaml.safe_dump(_config(None), sort_keys=False))
        (out / f"{name}-transfer.yaml").write_text(yaml.safe_dump(_config(unlabelled), sort_keys=False))
        lines += [
            f"toxdistill run --config {out}/{name}.yaml --output-dir {out} --name {name}",
            f"mkdir -p {out}/{name}-transfer/models",
            f"cp -r {out}/{name}/run.json {out}/{name}/split.json {out}/{name}/cache {out}/{name}-transfer/",
            f"cp -r {out}/{name}/models/teacher {out}/{name}/models/tfidf-lr {out}/{name}-transfer/models/",
            f"toxdistill run --config {out}/{name}-transfer.yaml --output-dir {out} --name {name}-transfer",
        ]
        print(f"{name}: {len(kept):,} labelled training rows, {len(rest):,} as the transfer set")
    (out / "commands.sh").write_text("\n".join(lines) + "\n")


def _scores(run: Path, model: str) -> list[dict]:
    """The model's validation and test scores, one entry per seed."""
    folders = [run / "models" / model] + sorted(run.glob(f"seeds/seed*/{model}"))
    rows = []
    for f in folders:
        m = json.loads((f / "toxdistill.json").read_text())["metrics"]
        rows.append(
            {
                "val_f1_macro": m["val"]["f1_macro"],
                "val_f1_weighted": m["val"]["f1_weighted"],
                "test_f1_macro": m["f1_macro"],
                "test_f1_weighted": m["f1_weighted"],
                "test_f1_hate": m["f1_per_class"]["hate speech"],
            }
        )
    return rows


def collect(out: Path, results: Path) -> None:
    from toxdistill.cpu import cpu_name

    table: dict = {"cpu": cpu_name(), "shares": {}}
    lines = ["| labelled | model | arm | val F1 m | val F1 w | test F1 m | test F1 w | test hate F1 | seeds |"]
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for share in SHARES:
        name = f"lab{round(share * 100):02d}"
        teacher = _scores(out / name, "teacher")
        entry: dict = {"teacher": teacher}
        mean = lambda rows, k: float(np.mean([r[k] for r in rows]))  # noqa: E731
        lines.append(
            f"| {share:.0%} | teacher | — | {mean(teacher, 'val_f1_macro'):.4f} | {mean(teacher, 'val_f1_weighted'):.4f}"
            f" | {mean(teacher, 'test_f1_macro'):.4f} | {mean(teacher, 'test_f1_weighted'):.4f}"
            f" | {mean(teacher, 'test_f1_hate'):.4f} | 1 |"
        )
        for model in STUDENTS:
            arms = {
                arm: _scores(out / f"{name}{suffix}", model) for arm, suffix in (("without", ""), ("with", "-transfer"))
            }
            entry[model] = arms
            for split in ("val", "test"):
                t, wo, w = (
                    mean(teacher, f"{split}_f1_macro"),
                    mean(arms["without"], f"{split}_f1_macro"),
                    mean(arms["with"], f"{split}_f1_macro"),
                )
                entry[model][f"{split}_gap_closed"] = (w - wo) / (t - wo) if t != wo else None
            for arm in ("without", "with"):
                rows = arms[arm]
                lines.append(
                    f"| {share:.0%} | {model} | {arm} transfer set | {mean(rows, 'val_f1_macro'):.4f} "
                    f"| {mean(rows, 'val_f1_weighted'):.4f} | {mean(rows, 'test_f1_macro'):.4f} "
                    f"| {mean(rows, 'test_f1_weighted'):.4f} | {mean(rows, 'test_f1_hate'):.4f} | {len(rows)} |"
                )
        table["shares"][name] = entry
    results.mkdir(parents=True, exist_ok=True)
    (results / "low_label.json").write_text(json.dumps(table, indent=2))
    (results / "low_label.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "prepare":
        prepare(Path(args[0]), Path(args[1]).expanduser())
    else:
        collect(Path(args[0]).expanduser(), Path(args[1]))
