"""`toxdistill run --seeds 2` on a tiny given teacher: every distill stage trained again with the next seed,
outside models/, its mean ± std in seeds.json and the report, and a rerun that skips every finished stage and
repeat. (The default config's own run, on the real data, is tests/test_integration.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from toxdistill.cli import main

from conftest import LABELS, tiny_dataset

CONFIG = """
name: seeds
data: {source: file, path: DATA, sha256: null, max_length: 32}
teacher: {model: TEACHER, train: null}   # used as it is: the repeats are what is tested, not what a model learns
baseline: false
train: {epochs: 1, lr: 1.0e-3, batch_size: 16}
threads: 2
# The check and the default eval set run after training: they must find the run's models, not the seed repeats
# beside them. The frontier finds its models the same way (runs.find_models) and would export each: off.
robustness: {kinds: [leet]}
frontier: {enabled: false}
stages:
  - {name: odd, kind: distill, layers: odd}
  - {name: even, kind: distill, layers: even}
  - {name: lora, kind: lora, base: teacher}   # not a distill stage: trained once
"""


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("seeds")
    ds = tiny_dataset(120, seed=1)
    data = tmp / "tweets.csv"
    rows = [f'"{t}",{y}' for t, y in zip(ds.texts, ds.labels)]
    data.write_text("tweet,class\n" + "\n".join(rows) + "\n")
    cfg = tmp / "c.yaml"
    cfg.write_text(CONFIG.replace("DATA", str(data)).replace("TEACHER", str(tiny_model_dir)))
    argv = ["run", "--config", str(cfg), "--output-dir", str(tmp / "runs"), "--seeds", "2"]
    assert main(argv) == 0
    return tmp / "runs" / "seeds", argv


def test_each_distill_stage_is_trained_again_with_the_next_seed(seeded_run):
    run_dir, _ = seeded_run
    by = {r["name"]: r for r in json.loads((run_dir / "results.json").read_text())}
    assert set(by) == {"teacher", "odd", "even", "lora"}  # the repeats are not report rows
    seeds = json.loads((run_dir / "seeds.json").read_text())
    assert set(seeds) == {"odd", "even"}
    for name, s in seeds.items():
        assert s["seeds"] == [42, 43]
        again = json.loads((run_dir / "seeds" / "seed43" / name / "toxdistill.json").read_text())
        first = json.loads((run_dir / "models" / name / "toxdistill.json").read_text())
        assert again["label_names"] == LABELS and again["fingerprint"] != first["fingerprint"]  # seed 43's settings
        f1 = [by[name]["f1_macro"], again["metrics"]["f1_macro"]]
        assert s["f1_macro"]["values"] == f1
        assert s["f1_macro"]["mean"] == pytest.approx(np.mean(f1))
        assert s["f1_macro"]["std"] == pytest.approx(np.std(f1, ddof=1))
    assert sorted(p.name for p in (run_dir / "seeds" / "seed43").iterdir()) == ["even", "odd"]
    assert not (run_dir / "models" / "seeds").exists()
    models = set(by)
    assert set(json.loads((run_dir / "robustness.json").read_text())["models"]) == models
    assert set(json.loads((run_dir / "eval-functional.json").read_text())["models"]) == models
    report = (run_dir / "report.md").read_text()
    assert "## Seed variation" in report and "| even | 42, 43 |" in report


def test_a_rerun_skips_every_stage_and_seed_repeat(seeded_run, capsys):
    run_dir, argv = seeded_run
    before = (run_dir / "seeds" / "seed43" / "odd" / "toxdistill.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("done already") == 4 + 2  # teacher, odd, even, lora and the two seed-43 repeats
    assert "odd@seed43: done already" in out
    assert (run_dir / "seeds" / "seed43" / "odd" / "toxdistill.json").stat().st_mtime_ns == before
