"""Collect an A/B run's small outputs into one JSON: clean validation and test scores of every model and seed
repeat (from toxdistill.json), and the robustness check on both splits (robustness.json, robustness-val.json).

    python bench/experiments/collect_ab.py ~/toxdistill-runs/consistency-ab -o bench/results/consistency_ab.json

Run `toxdistill check RUN --split val --seeds` first, so the validation file holds every seed; a run without
either check file is collected without its perturbed scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = ("accuracy", "f1_weighted", "f1_macro")


def _clean(meta: dict) -> dict:
    m = meta["metrics"]
    hate = lambda d: next(iter(d["f1_per_class"].values()))  # noqa: E731 - the focus class is the first here
    return {
        "val": {**{k: m["val"][k] for k in KEYS}, "f1_hate": hate(m["val"])},
        "test": {**{k: m[k] for k in KEYS}, "f1_hate": hate(m)},
    }


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _perturbed(result: dict) -> dict:
    out = {}
    for name, rows in result["models"].items():
        out[name] = {
            "mean_f1_macro": sum(r["f1_macro"] for r in rows.values()) / len(rows),
            "worst_drop_f1_macro": result["worst_char_drop"][name],
            "agreement_clean": result["clean"][name].get("agreement"),
            "agreement_with_clean_teacher": _mean([r.get("agreement_clean_teacher") for r in rows.values()]),
            "agreement_with_perturbed_teacher": _mean([r.get("agreement") for r in rows.values()]),
            "by_kind": {
                k: {x: r[x] for x in ("f1_macro", "drop_f1_macro", "f1_focus", "flip_rate") if x in r}
                for k, r in rows.items()
            },
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("-o", "--output", type=Path, required=True)
    a = ap.parse_args()
    folders = {d.name: d for d in sorted((a.run / "models").iterdir()) if (d / "toxdistill.json").is_file()}
    for d in sorted((a.run / "seeds").glob("seed*/*")):
        folders[f"{d.name}@{d.parent.name}"] = d
    out = {
        "run": a.run.name,
        "config": (a.run / "config.yaml").read_text(),
        "clean": {n: _clean(json.loads((d / "toxdistill.json").read_text())) for n, d in folders.items()},
    }
    # The check's files where it ran: an A/B of a training setting that robustness does not hinge on may skip it.
    for key, name in (("perturbed_test", "robustness.json"), ("perturbed_val", "robustness-val.json")):
        if (a.run / name).is_file():
            out[key] = _perturbed(json.loads((a.run / name).read_text()))
    a.output.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
