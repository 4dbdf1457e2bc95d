"""The run's plan and its time estimates (pipeline/estimate.py): the cost model, the refinement, the timed steps."""

from __future__ import annotations

import pytest

from toxdistill.config import load_config
from toxdistill.pipeline import estimate
from toxdistill.pipeline.estimate import Plan, RowCosts, estimate_plan, plan_lines, stage_layers

from conftest import tiny_bert

COSTS = RowCosts(train_base=0.001, train_layer=0.002, score_base=0.0002, score_layer=0.0005)
N = (1000, 100, 200)  # train, val, test rows


@pytest.fixture(scope="module")
def cfg():
    return load_config(overrides={"robustness.enabled": False, "frontier.enabled": False})


def _todo(cfg, seeds: int = 1) -> list[tuple[str, str]]:
    steps = [("tfidf-lr", "tfidf-lr"), ("teacher", "teacher")] + [(s.name, s.name) for s in cfg.stages if s.enabled]
    for k in range(1, seeds):
        steps += [(f"{s.name}@seed{cfg.seed + k}", s.name) for s in cfg.stages if s.enabled and s.kind == "distill"]
    return steps


def test_stage_depths_follow_the_layer_rules(cfg):
    by = {s.name: s for s in cfg.stages}
    assert stage_layers(cfg, by["odd"], 6) == 3
    assert stage_layers(cfg, by["shallow-1"], 6) == 1
    assert stage_layers(cfg, by["lora-teacher"], 6) == 6
    assert stage_layers(cfg, by["cnn"], 6) == 0  # no encoder layer: what every model pays
    assert stage_layers(cfg, by["distill-lora"], 6) == 3  # its base, the even student


def test_estimates_follow_rows_epochs_and_depth(cfg):
    plan = estimate_plan(cfg, COSTS, N, _todo(cfg), quick=False, teacher_layers=6)
    epochs, steps = cfg.teacher.train.epochs, -(-1000 // cfg.teacher.train.batch_size)
    overhead = steps * estimate._STEP_OVERHEAD_S  # the Trainer's own cost per step, whatever the model's size
    teacher = epochs * (1000 * COSTS.train(6) + overhead + 100 * COSTS.score(6)) + 300 * COSTS.score(6)
    assert plan.estimates["teacher"] == pytest.approx(teacher)
    # The first distill stage also pays for the teacher's outputs on the training rows; the second does not.
    assert plan.estimates["odd"] == pytest.approx(plan.estimates["even"] + 1000 * COSTS.score(6))
    assert plan.estimates["cnn"] < plan.estimates["even"] < plan.estimates["teacher"]
    assert "tfidf-lr" not in plan.estimates  # seconds of scikit-learn: nothing to time it by
    quick = estimate_plan(cfg, COSTS, N, _todo(cfg), quick=True, teacher_layers=6)
    assert quick.estimates["teacher"] < plan.estimates["teacher"]  # --quick trains one epoch


def test_a_given_teacher_pays_for_the_cache_at_its_own_step():
    """A given teacher is never trained (not even by --quick) and builds the teacher cache when it is saved, so
    its step carries the cache's cost and no student's does: a plan that put it on the first student rescaled
    every later estimate by the given teacher's step, several times over."""
    given = load_config(overrides={"teacher.train": None, "robustness.enabled": False, "frontier.enabled": False})
    for quick in (False, True):
        plan = estimate_plan(given, COSTS, N, _todo(given), quick=quick, teacher_layers=6)
        assert plan.estimates["teacher"] == pytest.approx((300 + 1000) * COSTS.score(6))
        assert plan.estimates["odd"] == pytest.approx(plan.estimates["even"])


def test_seed_repeats_and_post_training_steps_are_planned():
    cfg = load_config(overrides={"frontier.limit": 50})
    plan = estimate_plan(cfg, COSTS, N, _todo(cfg, seeds=2), quick=False, teacher_layers=6)
    assert "odd@seed43" in plan.estimates and "lora-student@seed43" not in plan.estimates
    assert {"robustness", "frontier"} <= set(plan.estimates)
    off = load_config(overrides={"frontier.enabled": False, "robustness.enabled": False})
    assert not {"robustness", "frontier"} & set(estimate_plan(off, COSTS, N, _todo(off), False, 6).estimates)


def test_remaining_time_is_rescaled_by_the_finished_steps():
    plan = Plan({"a": 10.0, "b": 20.0, "c": 30.0})
    assert plan.remaining() == pytest.approx(60.0)
    plan.refine("a", 20.0)  # twice the estimate: the rest is expected to run twice as long too
    assert plan.remaining() == pytest.approx(100.0)
    plan.refine("b", 10.0)  # 30 s against 30 estimated so far
    assert plan.remaining() == pytest.approx(30.0)
    plan.refine("tfidf-lr", 6.0)  # a step without an estimate does not move the scale
    assert plan.remaining() == pytest.approx(30.0)


def test_plan_lines_name_the_cpu_and_the_total():
    lines = plan_lines(Plan({"teacher": 600.0, "odd": 30.0}), "Some CPU")
    assert "Some CPU" in lines[0]
    assert lines[1].split() == ["teacher", "~10", "min"] and lines[2].split() == ["odd", "~30", "s"]
    assert lines[-1].split() == ["total", "~10", "min"]


def test_row_costs_are_measured_on_the_teachers_architecture(monkeypatch, cfg, tokenizer):
    model = tiny_bert()  # 4 layers
    monkeypatch.setattr(estimate, "load_classifier", lambda *a, **k: (model, tokenizer))
    texts = [f"text number {k} with some words" for k in range(40)]
    costs = estimate.measure_row_costs(cfg, texts)
    assert costs.train_layer >= 0 and costs.score_layer >= 0
    assert costs.train(4) > 0 and costs.score(4) > 0
    assert model.config.num_hidden_layers == 4  # the cut is a copy: the measured model keeps its layers


def test_the_timed_step_is_the_trainers(monkeypatch):
    """The step is timed as the trainer takes it: the trainer's dropout and fused AdamW (torch's own of both made
    the default run's plan say 11-18 minutes for a 9-minute teacher)."""
    import torch

    from toxdistill.training.dropout import CheapDropout

    made: list[dict] = []
    real = torch.optim.AdamW

    def adamw(params, **kwargs):
        made.append(kwargs)
        return real(params, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", adamw)
    model = tiny_bert()
    batch = {"input_ids": torch.randint(5, 90, (4, 12)), "attention_mask": torch.ones(4, 12, dtype=torch.long)}
    train_s, score_s = estimate._step_seconds(model, batch)
    assert train_s > 0 and score_s > 0
    assert made and all(kw.get("fused") for kw in made)
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]
    assert dropouts and all(isinstance(m, CheapDropout) for m in dropouts)
