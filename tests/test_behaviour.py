"""Behaviour fidelity in the frontier: the figures on synthetic logits, the behaviour set (eval sets and perturbed
validation text), each model's cached logits on a tiny model, the select bound leaving a candidate out under both
rules, the flag for a student that looks good on clean validation and parts ways elsewhere (in the selection, the
report, the plain table, selection.json and the model card), and bad select values refused."""

from __future__ import annotations

import numpy as np
import pytest

from toxdistill.config import Config, SelectConfig, load_config
from toxdistill.data.perturb import HELDOUT_KINDS, KINDS
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.behaviour import behaviour_block, describe, fidelity
from toxdistill.evaluation.frontier import format_frontier, select
from toxdistill.evaluation.report import frontier_section
from toxdistill.pipeline import behaviour as step
from toxdistill.pipeline.best import selection_record
from toxdistill.pipeline.model_card import CardFacts, _behaviour, _rule


# ---------------------------------------------------------------- the figures
def test_fidelity_is_top1_agreement_and_mean_total_variation():
    teacher = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]]))
    student = np.log(np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.5, 0.2, 0.3], [0.2, 0.6, 0.2]]))
    f = fidelity(student, teacher)
    assert f["texts"] == 4 and f["agreement"] == pytest.approx(0.5)  # rows 0 and 1 agree
    # ½Σ|p−q| per row: 0.1, 0, 0.2, 0.35
    assert f["tvd"] == pytest.approx((0.1 + 0 + 0.2 + 0.35) / 4)
    with pytest.raises(ValueError, match="differ in shape"):
        fidelity(student[:2], teacher)


def test_overall_is_the_mean_over_sources_not_over_texts():
    t_big, t_small = np.eye(3)[[0] * 90], np.eye(3)[[1] * 10]
    block = behaviour_block({"big": (t_big.copy(), t_big), "small": (np.eye(3)[[2] * 10], t_small), "none": (
        np.zeros((0, 3)), np.zeros((0, 3)))})  # fmt: skip
    assert set(block["sources"]) == {"big", "small"}  # an empty source is left out
    assert block["sources"]["big"]["agreement"] == 1.0 and block["sources"]["small"]["agreement"] == 0.0
    # Pooled it would be 0.9; each source weighs the same, so a small one is not drowned.
    assert block["overall"] == pytest.approx({"texts": 100, "agreement": 0.5, "tvd": block["overall"]["tvd"]})
    assert behaviour_block({"none": (np.zeros((0, 3)), np.zeros((0, 3)))}) is None


def test_a_perturbed_source_keeps_its_same_text_figures_beside():
    s, ref, same = np.eye(3)[[0, 0]], np.eye(3)[[0, 0]], np.eye(3)[[1, 0]]
    block = behaviour_block({"perturbed": (s, ref)}, {"perturbed": (s, same)})
    src = block["sources"]["perturbed"]
    assert src["agreement"] == 1.0 and src["same_text"]["agreement"] == 0.5


# ---------------------------------------------------------------- the behaviour set
def test_perturbed_sources_are_seeded_spread_over_every_kind_and_held_to_their_clean_originals():
    texts = [f"you are such a horrible person number {i} honestly" for i in range(40)]
    labels = [i % 3 for i in range(40)]
    a = step.perturbed_sources(texts, labels, 180, seed=3)
    assert a == step.perturbed_sources(texts, labels, 180, seed=3)
    assert a != step.perturbed_sources(texts, labels, 180, seed=4)
    train, held = a
    assert (train.name, held.name) == (step.PERTURBED, step.PERTURBED_HELD_OUT)
    share = -(-180 // len(KINDS))
    assert len(train.texts) == share * (len(KINDS) - len(HELDOUT_KINDS)) and len(held.texts) == share * len(
        HELDOUT_KINDS
    )
    for s in a:
        assert len(s.reference) == len(s.texts) and set(s.reference) <= set(texts)
        assert all(p != t for p, t in zip(s.texts, s.reference))  # only texts a perturbation changed
    assert any("\u200b" in t or "\u200c" in t or "\u200d" in t or "\ufeff" in t for t in held.texts)
    assert step.perturbed_sources(texts, labels, 0, seed=3) == []


def test_the_run_config_gives_the_eval_sets_and_the_perturbed_validation_texts(tmp_path):
    from toxdistill.data.dataset import Dataset
    from toxdistill.data.split import Split

    es = tmp_path / "suite.csv"
    es.write_text("text,label\nI hate   you,hateful\n,non-hateful\nhave a nice day,non-hateful\n")
    cfg = Config.model_validate(
        {"eval_sets": [{"name": "suite", "path": str(es)}, {"name": "gone", "path": str(tmp_path / "none.csv")}],
         "frontier": {"behaviour_texts": 36}}
    )  # fmt: skip
    texts = ["what a lovely morning everyone", "those people disgust me totally"]
    val = Dataset(np.arange(2), texts, np.array([2, 0]), ["hate speech", "offensive", "neither"], "sha")
    said: list[str] = []
    sources = step.behaviour_sources(cfg, Split(val, val, val), {}, said.append)
    names = [s.name for s in sources]
    assert names == ["suite", step.PERTURBED, step.PERTURBED_HELD_OUT]
    assert sources[0].texts == ["I hate you", "have a nice day"]  # empty rows dropped, cleaned as the run's data
    assert sources[0].reference is None
    assert any("'gone'" in s for s in said)  # an unreadable eval set is left out with a note, not an error


def test_each_models_logits_are_cached_under_its_weights_and_texts(tmp_path, tiny_model_dir, monkeypatch):
    sources = [step.Source("a", ["hello there", "you idiot"], "a"), step.Source("b", ["ok"], "b")]
    first = step.model_logits("m", tiny_model_dir, sources, tmp_path, threads=1)
    assert first["a"].shape == (2, 3) and first["b"].shape == (1, 3)

    def no_scoring(*a, **k):
        raise AssertionError("scored again although nothing changed")

    with monkeypatch.context() as m:
        m.setattr(step, "load_scorer", no_scoring)
        again = step.model_logits("m", tiny_model_dir, sources, tmp_path, threads=1)
        assert np.array_equal(again["a"], first["a"])
        with pytest.raises(AssertionError, match="scored again"):
            step.model_logits("m", tiny_model_dir, [sources[0], step.Source("b", ["other"], "b")], tmp_path, 1)


# ---------------------------------------------------------------- the bound and the flag
def _scores(f1w: float, f1m: float) -> dict:
    return {"f1_weighted": f1w, "f1_macro": f1m, "f1_focus": f1m / 2, "accuracy": f1w}


def _fid(agreement: float, tvd: float) -> dict:
    src = {"texts": 100, "agreement": agreement, "tvd": tvd}
    return {"overall": {**src, "texts": 200}, "sources": {"functional": src, "perturbed": src}}


def _row(model: str, sps: float, val: tuple[float, float], behaviour: dict | None) -> dict:
    return {
        "model": model,
        "kind": "teacher" if model == "teacher" else "distill",
        "backend": "onnx-int8",
        "samples_per_s": sps,
        "p50_ms": 1.0,
        "layers": 3,
        "params": 1000,
        "x_naive_teacher": sps / 100,
        "parity_passed": True,
        "val": _scores(*val),
        "test": _scores(*val),
        "behaviour": behaviour,
    }


TEACHER = {"model": "teacher", "val": _scores(0.90, 0.78), "test": _scores(0.90, 0.78)}
ROWS = [
    _row("teacher", 300, (0.90, 0.78), None),
    _row("even", 2400, (0.895, 0.775), _fid(0.93, 0.05)),
    _row("shallow", 9000, (0.905, 0.79), _fid(0.70, 0.20)),  # beats the teacher on clean validation
]
BOUND = SelectConfig(min_agreement_behaviour=0.85)


def test_without_a_bound_the_fastest_within_tolerance_ships():
    sel = select(ROWS, TEACHER, SelectConfig(min_agreement_behaviour=None))
    assert sel["model"] == "shallow" and sel["left_out_by_behaviour"] == [] and sel["behaviour_flags"] == []


def test_the_bound_leaves_out_a_student_that_parts_ways_and_flags_it():
    sel = select(ROWS, TEACHER, BOUND)
    assert sel["model"] == "even" and not sel["fallback"]
    assert sel["left_out_by_behaviour"] == ["shallow"]
    assert "left out by the behaviour bound (agreement with the teacher ≥ 85.0%)" in sel["reason"]
    assert "shallow (agreement 70.0% < 85.0%)" in sel["reason"]
    assert [f["model"] for f in sel["behaviour_flags"]] == ["shallow"]
    assert "parts ways with it on the behaviour set" in sel["behaviour_flags"][0]["note"]
    assert sel["criteria"]["min_agreement_behaviour"] == 0.85


def test_a_tvd_bound_and_an_agreement_of_exactly_the_bound():
    rows = [ROWS[0], _row("s", 5000, (0.9, 0.78), _fid(0.85, 0.10))]
    assert select(rows, TEACHER, BOUND)["model"] == "s"  # 85.0% meets a bound of 85%
    sel = select(rows, TEACHER, SelectConfig(max_tvd_behaviour=0.08))
    assert sel["fallback"] and "TVD 0.100 > 0.080" in sel["reason"]


def test_the_bound_holds_under_the_budget_rule_too():
    sel = select(ROWS, TEACHER, SelectConfig(min_samples_per_s=2000, min_agreement_behaviour=0.85))
    assert sel["rule"] == "budget" and sel["model"] == "even" and sel["left_out_by_behaviour"] == ["shallow"]


def test_a_student_below_the_bound_that_does_not_look_good_is_left_out_but_not_flagged():
    rows = [ROWS[0], _row("poor", 9000, (0.80, 0.60), _fid(0.50, 0.30))]
    sel = select(rows, TEACHER, BOUND)
    assert sel["fallback"] and sel["left_out_by_behaviour"] == ["poor"] and sel["behaviour_flags"] == []


def test_a_bound_on_rows_without_behaviour_figures_says_it_was_not_checked():
    rows = [ROWS[0], {**ROWS[2], "behaviour": None}]
    sel = select(rows, TEACHER, BOUND)
    assert sel["model"] == "shallow" and "behaviour not measured for shallow" in sel["reason"]


def _frontier(rule: SelectConfig) -> dict:
    return {
        "rows": ROWS,
        "selection": select(ROWS, TEACHER, rule),
        "teacher": TEACHER,
        "behaviour": {"sources": {"functional": {"texts": 100, "what": "x"}, "perturbed": {"texts": 100, "what": "y"}}},
        "cpu": "a CPU",
        "threads": 1,
        "texts": 10,
        "naive_teacher_samples_per_s": 100.0,
        "engine": "onnx-int8",
    }


def test_the_report_and_the_table_show_fidelity_and_flag_the_student_visibly():
    frontier = _frontier(BOUND)
    text = "\n".join(frontier_section(frontier))
    assert "behaviour agreement / TVD" in text and "| 93.0% / 0.050 |" in text
    assert "⚠ 70.0% / 0.200" in text  # the flagged row, in the main table
    assert "| shallow | 70.0% / 0.200 | 70.0% / 0.200 | 70.0% / 0.200 |" in text  # per source
    assert "**⚠ Parts ways with the teacher:** shallow" in text
    table = format_frontier(frontier)
    assert "PARTS WAYS WITH THE TEACHER: shallow" in table and "93.0" in table
    assert "200 texts: functional 100, perturbed 100" in table


def test_selection_json_lists_every_candidate_with_its_fidelity():
    frontier = _frontier(BOUND)
    record = selection_record(frontier, ROWS[1])
    assert [c["model"] for c in record["candidates"]] == ["teacher", "even", "shallow"]
    assert record["candidates"][2]["behaviour"]["overall"]["agreement"] == 0.70
    assert record["selection"]["left_out_by_behaviour"] == ["shallow"] and record["behaviour_set"]


def test_the_model_card_names_the_bound_the_fidelity_and_the_student_left_out():
    frontier = _frontier(BOUND)
    facts = CardFacts(
        run_name="r", folder="best", run_folder="runs/r", meta={}, row=ROWS[1], selection=frontier["selection"],
        bench={"behaviour": frontier["behaviour"]}, teacher_row=ROWS[0], teacher_model="t", data_source="file",
        data_name=None, label_names=["a", "b", "c"], focus_class="a", split_sizes={}, test_support=[], seed=0,
        ci={}, n_boot=0,
    )  # fmt: skip
    assert "with at least 85.0% top-1 agreement with the teacher on the behaviour set" in _rule(facts)
    line = _behaviour(facts)
    assert line is not None and describe(ROWS[1]["behaviour"]) in line
    assert "functional (100 texts)" in line and "Left out by the behaviour bound: shallow" in line


# ---------------------------------------------------------------- config
@pytest.mark.parametrize(
    "bad",
    [
        "select: {min_agreement_behaviour: 1.5}",
        "select: {min_agreement_behaviour: -0.1}",
        "select: {max_tvd_behaviour: -0.01}",
        "select: {max_tvd_behaviour: 2}",
        "frontier: {behaviour_texts: -1}",
        "select: {min_agreement: 0.9}",
    ],
)
def test_bad_behaviour_values_fail_at_config_load(tmp_path, bad):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(bad + "\n")
    key = bad.split("{")[1].split(":")[0]
    with pytest.raises(ToxdistillError, match=key):
        load_config(cfg)


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--min-agreement-behaviour", "1.5", "must be from 0 to 1"),
        ("--max-tvd-behaviour", "-0.1", "must be from 0 to 1"),
        ("--min-agreement-behaviour", "most", "is not a number"),
    ],
)
def test_the_frontier_command_refuses_a_bad_bound_in_one_line(tmp_path, capsys, flag, value, needle):
    from toxdistill.cli import main

    assert main(["frontier", str(tmp_path), flag, value]) != 0
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
