"""report.md's analysis is computed from the run's numbers."""

import json

import numpy as np
import pytest

from toxdistill.config import Config, DataConfig, StageConfig
from toxdistill.data.split import Split
from toxdistill.evaluation.metrics import classification_metrics, val_headline
from toxdistill.evaluation.report import analysis
from toxdistill.files import META_FILE
from toxdistill.pipeline import stages
from toxdistill.pipeline.context import RunContext, seed_dir
from toxdistill.pipeline.results import seed_summary, significance

from conftest import tiny_dataset

NAMES = ["hate speech", "offensive", "neither"]


def _row(name: str, kind: str, test_hate: float, val_hate: float | None) -> dict:
    per_class = {"hate speech": test_hate, "offensive": 0.94, "neither": 0.89}
    row = {
        "name": name,
        "kind": kind,
        "f1_weighted": 0.90,
        "f1_macro": float(np.mean(list(per_class.values()))),
        "f1_per_class": per_class,
        "throughput_sps": 100.0,
        "params": 10,
        "trainable_params": 10,
    }
    if val_hate is not None:
        row["val"] = {"f1_per_class": {**per_class, "hate speech": val_hate}}
    return row


def test_hate_analysis_sets_the_split_gap_against_the_model_spread():
    rows = [
        _row("tfidf-lr", "baseline", 0.30, 0.35),
        _row("teacher", "teacher", 0.44, 0.52),
        _row("even", "student", 0.47, 0.51),
    ]
    text = "\n".join(analysis(rows))
    # transformer rows only: val 0.51-0.52, gaps +8.0 (teacher) and +4.0 (even), test spread 3.0 points
    assert "the same 2 models score hate F1 0.510–0.520" in text
    assert "+4.0 to +8.0 points per model, against a 3.0-point spread" in text


def test_analysis_without_validation_scores_says_nothing_about_them():
    rows = [_row("teacher", "teacher", 0.44, None), _row("even", "student", 0.47, None)]
    text = "\n".join(analysis(rows))
    assert "Hate class" in text and "On validation" not in text


def test_val_headline_keeps_the_headline_scores_only():
    y = np.array([0, 1, 2, 1])
    v = val_headline(np.eye(3)[y], y, NAMES)
    assert set(v) == {"accuracy", "f1_weighted", "f1_macro", "f1_per_class"} and v["accuracy"] == 1.0


def test_seed_summary_reads_every_matching_seed_folder(tmp_path):
    """A later run without --seeds keeps the table; a seed trained under other stage settings is left out."""
    cfg = Config(stages=[StageConfig(name="odd", kind="distill", layers="odd")])  # seeds = 1

    def finished(folder, seed, f1, fingerprint=None):
        folder.mkdir(parents=True)
        fp = fingerprint or cfg.model_copy(update={"seed": seed}).stage_fingerprint("odd")
        metrics = {"accuracy": 0.9, "f1_weighted": 0.9, "f1_macro": f1, "f1_per_class": dict.fromkeys(NAMES, f1)}
        (folder / META_FILE).write_text(json.dumps({"fingerprint": fp, "metrics": metrics}))

    finished(tmp_path / "models" / "odd", 42, 0.70)
    assert seed_summary(tmp_path, cfg) == {}  # one seed: nothing to summarise
    finished(seed_dir(tmp_path, 43) / "odd", 43, 0.74)
    finished(seed_dir(tmp_path, 44) / "odd", 44, 0.99, fingerprint="stale")
    out = seed_summary(tmp_path, cfg)["odd"]
    assert out["seeds"] == [42, 43]
    assert out["f1_macro"]["values"] == [0.70, 0.74]
    assert out["f1_macro"]["mean"] == pytest.approx(0.72)
    assert out["f1_hate"]["std"] == pytest.approx(np.std([0.70, 0.74], ddof=1))


def test_analysis_follows_the_focus_class():
    rows = [_row("teacher", "teacher", 0.44, None), _row("even", "student", 0.47, None)]
    rows[1]["f1_per_class"]["neither"] = 0.50
    assert "best hate F1 is even's: 0.470" in "\n".join(analysis(rows))
    assert "best hate F1 is teacher's: 0.890" in "\n".join(analysis(rows, focus="neither"))


@pytest.mark.parametrize("focus", [None, "neither"])
def test_model_folders_record_the_focus_class(tmp_path, focus):
    """serve and the other readers find the class of interest in toxdistill.json by name."""
    ds = tiny_dataset(90)
    split = Split(ds.subset(ds.ids[:60]), ds.subset(ds.ids[60:75]), ds.subset(ds.ids[75:]))
    cfg = Config(data=DataConfig(focus_class=focus), stages=[])
    stages.stage_baseline(RunContext(cfg, tmp_path, split))
    meta = json.loads((tmp_path / "models" / "tfidf-lr" / META_FILE).read_text())
    assert meta["focus_class"] == (focus or "hate speech")
    assert (tmp_path / "models" / "tfidf-lr" / "confusion.png").is_file()


def test_significance_scores_the_focus_class_under_f1_hate(tmp_path):
    y = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    preds = {"teacher": np.array([0, 1, 1, 1, 2, 2, 2, 0]), "even": np.array([0, 0, 1, 2, 2, 2, 1, 1])}
    for name, p in preds.items():
        (tmp_path / "models" / name).mkdir(parents=True)
        np.save(tmp_path / "models" / name / "test_logits.npy", np.eye(3)[p])
    results = [
        {"name": n, "kind": k, "f1_per_class": dict.fromkeys(NAMES, 0.0)} for n, k in zip(preds, ("teacher", "student"))
    ]
    for focus in (0, 2):
        sig = significance(tmp_path, results, y, seed=0, n_boot=50, focus=focus)
        for name, p in preds.items():
            want = classification_metrics(y, p, NAMES)["f1_per_class"][NAMES[focus]]
            assert sig["ci"][name]["f1_hate"]["point"] == pytest.approx(want)
        (c,) = [c for c in sig["comparisons"] if c["metric"] == "f1_hate"]
        assert c["a_value"] == pytest.approx(
            classification_metrics(y, preds["even"], NAMES)["f1_per_class"][NAMES[focus]]
        )


def test_the_report_names_the_machine_and_says_when_its_digits_reproduce(tmp_path):
    from toxdistill import cpu
    from toxdistill.evaluation.report import MACHINE_HEADING, _machine, write_report

    machine = {"cpu": "AMD EPYC", "cpu_features": ["avx2"], "versions": {"torch": "9.9", "onnxruntime": "1.0"}}
    write_report(tmp_path, [], Config(), {"teacher": 1.0}, machine=machine)
    text = (tmp_path / "report.md").read_text()
    section = text.split(MACHINE_HEADING)[1].split("\n## ")[0]
    assert "**CPU:** AMD EPYC (avx2)" in section and "**Libraries:** torch 9.9, onnxruntime 1.0" in section
    assert "Reproducible to the last digit only on the same CPU kind" in section
    assert text.index("## Wall time per stage") < text.index(MACHINE_HEADING) < text.index("## Analysis")
    assert "Training precision" not in section  # no model recorded one
    # Each result row's recorded training precision; the floor has none.
    rows = [{"name": "tfidf-lr", "train_precision": None}]
    rows += [{"name": n, "train_precision": p} for n, p in (("teacher", "bf16"), ("odd", "fp32"), ("even", "bf16"))]
    section = "\n".join(_machine(machine, rows))
    assert "bf16 autocast: teacher, even; fp32: odd." in section and "tfidf-lr" not in section
    # What the run passes: this machine's own facts, the libraries installed.
    facts = cpu.machine_facts()
    assert facts["cpu"] == cpu.cpu_name() and facts["cpu_features"] == cpu.cpu_features()
    assert {"torch", "transformers", "onnxruntime"} <= set(facts["versions"])
