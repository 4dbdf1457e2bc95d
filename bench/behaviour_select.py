"""Behaviour fidelity of a run's candidates, seed repeats included, and what select: chooses with and without a
behaviour bound, from a run folder whose frontier.json is made (``toxdistill frontier RUN`` first).

`python bench/behaviour_select.py RUN OUT.json` scores the seed repeats (``seeds/seed<N>/<stage>``) on the run's
behaviour set too (the frontier has no rows for them: they show the seed-to-seed spread of the figures), then
replays the selection on the frontier's rows for each rule and bound below. It writes into RUN's cache only:
run it on a copy of a run you want untouched.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from toxdistill.config import SelectConfig
from toxdistill.data.split import load_run_split
from toxdistill.evaluation.behaviour import behaviour_block
from toxdistill.evaluation.frontier import select
from toxdistill.pipeline import behaviour as step
from toxdistill.pipeline.check import seed_repeats
from toxdistill.runs import find_models, load_run_config, read_meta

RULES = {
    "default tolerance (1 weighted / 2 macro points)": {},
    "loose tolerance (3 weighted / 5 macro points)": {"max_drop_f1_weighted": 0.03, "max_drop_f1_macro": 0.05},
    "budget 2000 samples/s": {"min_samples_per_s": 2000.0},
}
BOUNDS = (None, 0.75, 0.80, 0.85)


def seed_figures(run: Path) -> dict[str, dict]:
    """The behaviour block of every seed repeat, against the run's teacher."""
    cfg = load_run_config(run)
    split = load_run_split(run)
    models = find_models(run, transformers_only=True)
    teacher = next(n for n, d in models.items() if read_meta(d).get("kind") == "teacher")
    sources = step.behaviour_sources(cfg, split, step.find_all(run, models))
    cache = run / step.CACHE_DIR
    t = step.model_logits(teacher, models[teacher], sources, cache, cfg.threads)
    t.update(step.reference_logits(teacher, models[teacher], sources, split, cache, cfg.threads))
    out = {}
    for name, folder in seed_repeats(run, list(models)).items():
        s = step.model_logits(name.replace("@", "-"), folder, sources, cache, cfg.threads)
        out[name] = behaviour_block(
            {x.name: (s[x.name], t[x.name + (step.REFERENCE if x.reference else "")]) for x in sources},
            {x.name: (s[x.name], t[x.name]) for x in sources if x.reference is not None},
        )
    return out


def replay(frontier: dict) -> list[dict]:
    """The selection for each rule and bound, on the frontier's rows."""
    out = []
    for rule_name, rule in RULES.items():
        for bound in BOUNDS:
            sel = select(frontier["rows"], frontier["teacher"], SelectConfig(**rule, min_agreement_behaviour=bound))
            out.append(
                {
                    "rule": rule_name,
                    "min_agreement_behaviour": bound,
                    "chosen": sel["model"],
                    "fallback": sel["fallback"],
                    "left_out_by_behaviour": sel["left_out_by_behaviour"],
                    "flagged": [f["model"] for f in sel["behaviour_flags"]],
                }
            )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("out", type=Path)
    a = p.parse_args()
    frontier = json.loads((a.run / "frontier.json").read_text())
    result = {
        "behaviour_set": frontier.get("behaviour"),
        "teacher_val": frontier["teacher"]["val"],
        "candidates": {
            r["model"]: {k: r.get(k) for k in ("backend", "samples_per_s", "parity_passed", "val", "behaviour")}
            for r in frontier["rows"]
        },
        "seed_repeats": seed_figures(a.run),
        "selection_today": frontier["selection"],
        "replay": replay(frontier),
        "cpu": frontier.get("cpu"),
        "cpu_features": frontier.get("cpu_features"),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    for r in result["replay"]:
        print(r)


if __name__ == "__main__":
    main()
