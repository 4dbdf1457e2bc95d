"""The run's plan with a time estimate per stage on this machine, from a few timed steps before the first stage.

Training time is close to linear in rows × epochs × depth, so two measurements fix it: one training step of the
teacher's architecture at full depth and one cut to a single layer, on a batch of real training texts. Their
difference is a layer's cost, the rest is what every model pays (embeddings, head, loss, optimizer). The same
two models timed without gradients give the cost of scoring, which the checks and the frontier are made of.
The estimates of the stages still to come are scaled by how far the finished ones were off (``Plan.refine``),
so the remaining time printed after each stage converges on the truth.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from toxdistill.config import Config, StageConfig
from toxdistill.data.perturb import KINDS
from toxdistill.files import BASELINE
from toxdistill.models.students import build_student, resolve_layers
from toxdistill.models.teacher import load_classifier, load_model_config, resolve_model_path
from toxdistill.training.dropout import use_cheap_dropout
from toxdistill.training.trainer import fused_adamw_ok, uses_bf16

# Timed steps per model after one warm-up: the median of 5, ~4 s in all. With 3, fresh processes on one 2-core
# machine put the same fp32 run at 49 to 69 minutes.
_REPEATS = 5
# Exports, engine screens and parity passes per candidate of the frontier, in rows scored: fitted to the full
# default run's frontier on a 2-core AMD EPYC with AVX-512 (351 s for 6 models, where the plan said ~154 s with
# the 14,000 rows fitted to a quick run). The refinement corrects it on other runs.
_FRONTIER_ROWS_PER_MODEL = 35_000
# Seconds a training step costs beyond its timed forward, backward and optimizer step: the Trainer's batching and
# bookkeeping, the distillation losses, the perturbed rows' draws. 30-56 ms a step in every stage of the full default
# run on a 2-core AMD EPYC with AVX-512 (87 ms in its first student), whatever the model's size.
_STEP_OVERHEAD_S = 0.04
# The check's time over (1 + kinds) clean passes of the test split per model, on the same machine's full default
# run (371 s where 1.6 said ~12 min). Below 1: rows a perturbation leaves unchanged, and the clean pass, reuse the
# saved logits; disguised words split into more word pieces, which costs more per scored row.
_PERTURBED_COST = 0.85


@dataclass(frozen=True)
class RowCosts:
    """Seconds per row on this machine: ``train_*`` one training step's share (forward, backward, optimizer),
    ``score_*`` scoring without gradients; ``*_base`` what every model pays, ``*_layer`` each encoder layer."""

    train_base: float
    train_layer: float
    score_base: float
    score_layer: float

    def train(self, layers: int) -> float:
        return self.train_base + self.train_layer * layers

    def score(self, layers: int) -> float:
        return self.score_base + self.score_layer * layers


def _median_seconds(fn: Callable[[], None]) -> float:
    fn()  # warm-up: first-call allocations and kernel selection
    times = []
    for _ in range(_REPEATS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _step_seconds(model: torch.nn.Module, batch: dict, bf16: bool = False) -> tuple[float, float]:
    """One training step and one scoring pass of ``batch``, in seconds, the step as the trainer takes it: under
    bf16 autocast where training will use it, its dropout, and fused AdamW where that can step the weights (with
    torch's own of both, the default run's teacher was estimated at 11-18 minutes and trained in 9). The
    optimizer's lr is 0: the model is a throwaway copy, but a zero step keeps it honest should anyone reuse it."""
    use_cheap_dropout(model)
    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    opt = torch.optim.AdamW(groups, lr=0.0, fused=fused_adamw_ok(groups))

    def train_step() -> None:
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(**batch).logits
        logits.float().logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def score() -> None:
        model.eval()
        with torch.inference_mode():
            model(**batch)

    return _median_seconds(train_step), _median_seconds(score)


def _typical_batch(texts: list[str], tok, size: int, max_length: int, seed: int) -> list[str]:
    """``size`` texts around the median length of a random sample: training groups rows of similar length into a
    batch (``train.group_by_length``), so a typical batch is padded to about its own rows' length."""
    pool = random.Random(seed).sample(texts, min(8 * size, len(texts)))
    pool.sort(key=lambda t: len(tok(t, truncation=True, max_length=max_length)["input_ids"]))
    start = max(0, len(pool) // 2 - size // 2)
    return pool[start : start + size]


def measure_row_costs(cfg: Config, texts: list[str]) -> RowCosts:
    """Time the teacher's architecture, whole and cut to its top layer, on a batch of ``texts``."""
    spec = cfg.teacher.pretrained_model() or cfg.teacher.model
    model, tok = load_classifier(spec, cfg.data.label_names, cfg.seed)
    bs = (cfg.teacher.train or cfg.train).batch_size
    sample = _typical_batch(texts, tok, bs, cfg.data.max_length, cfg.seed)
    batch = dict(tok(sample, padding=True, truncation=True, max_length=cfg.data.max_length, return_tensors="pt"))
    n = model.config.num_hidden_layers
    bf16 = uses_bf16(cfg.train)  # the students' and LoRA stages' precision, which the teacher's follows by default
    full_train, full_score = _step_seconds(model, batch, bf16)
    if n == 1:
        return RowCosts(0.0, full_train / len(sample), 0.0, full_score / len(sample))
    one_train, one_score = _step_seconds(build_student(model, [n]), batch, bf16)
    per = [x / len(sample) for x in (full_train, one_train, full_score, one_score)]
    train_layer = max(per[0] - per[1], 0.0) / (n - 1)
    score_layer = max(per[2] - per[3], 0.0) / (n - 1)
    return RowCosts(per[1] - train_layer, train_layer, per[3] - score_layer, score_layer)


def stage_layers(cfg: Config, st: StageConfig, teacher_layers: int) -> int:
    """Encoder layers of the model stage ``st`` trains (a distill-lora stage: its base stage's)."""
    if st.kind == "distill-lora":
        base = next((s for s in cfg.stages if s.name == st.base), None)
        return stage_layers(cfg, base, teacher_layers) if base is not None else teacher_layers
    if st.arch == "cnn":  # no encoder layer: what every model pays (embeddings, head, optimizer) is its cost
        return 0
    depth = teacher_layers
    if st.student is not None:
        depth = load_model_config(resolve_model_path(st.student)).num_hidden_layers
    return len(resolve_layers(st.layers, depth)) if st.layers is not None else depth


@dataclass
class Plan:
    """Estimated seconds per step label, in run order, and the finished steps' actual seconds."""

    estimates: dict[str, float]
    actual: dict[str, float] = field(default_factory=dict)

    def refine(self, label: str, seconds: float) -> None:
        """Record a finished step; one the plan has no estimate for (the TF-IDF floor) changes nothing."""
        if label in self.estimates:
            self.actual[label] = seconds

    def ratio(self) -> float:
        """Actual over estimated time of the finished steps: how far off this machine's estimates run."""
        done = [k for k in self.actual if k in self.estimates and self.estimates[k] > 0]
        est = sum(self.estimates[k] for k in done)
        return sum(self.actual[k] for k in done) / est if est > 0 else 1.0

    def remaining(self) -> float:
        return self.ratio() * sum(v for k, v in self.estimates.items() if k not in self.actual)


def _train_seconds(costs: RowCosts, n: tuple[int, int, int], epochs: float, layers: int, batch_size: int) -> float:
    """Training: every epoch's rows, steps and validation pass, then the validation and test rows scored once more."""
    train, val, test = n
    steps = math.ceil(train / batch_size)
    per_epoch = train * costs.train(layers) + steps * _STEP_OVERHEAD_S + val * costs.score(layers)
    return epochs * per_epoch + (val + test) * costs.score(layers)


def estimate_plan(
    cfg: Config,
    costs: RowCosts,
    n: tuple[int, int, int],
    labels: list[tuple[str, str]],
    quick: bool,
    teacher_layers: int,
) -> Plan:
    """``labels``: (step label, stage name) of the steps still to run, in order. Post-training steps follow."""
    by_name = {s.name: s for s in cfg.stages}
    est: dict[str, float] = {}
    scores = cfg.teacher.scores is not None  # a teacher that is only scores: nothing to train, run or score
    depths: list[int] = [] if scores else [teacher_layers]  # every model the checks and the frontier score
    cache_paid = scores
    for label, stage in labels:
        if stage == BASELINE or (scores and stage not in by_name):  # seconds, no model: left out of the rescaling
            continue
        if stage not in by_name:  # the teacher
            tc = cfg.teacher.train
            if tc is None:
                # Given as it is: never trained. It scores the training rows once (the teacher cache, built at this
                # step), then validation and test.
                est[label] = sum(n) * costs.score(teacher_layers)
                cache_paid = True
            else:
                epochs = 1.0 if quick else tc.epochs
                est[label] = _train_seconds(costs, n, epochs, teacher_layers, tc.batch_size)
            continue
        st = by_name[stage]
        layers = stage_layers(cfg, st, teacher_layers)
        train_cfg = cfg.stage_train(st)
        est[label] = _train_seconds(costs, n, 1.0 if quick else train_cfg.epochs, layers, train_cfg.batch_size)
        if st.kind == "distill" and not cache_paid:  # the teacher's outputs on the training rows, computed once
            est[label] += n[0] * costs.score(teacher_layers)
            cache_paid = True
        if "@seed" not in label:
            depths.append(layers)
    est.update(_after_training(cfg, costs, n[2], depths))
    return Plan(est)


def _after_training(cfg: Config, costs: RowCosts, n_test: int, depths: list[int]) -> dict[str, float]:
    """The checks and the frontier, as rows scored by each model."""
    out: dict[str, float] = {}
    if cfg.robustness.enabled and not cfg.data.multi_label:  # a multi-label run skips it (pipeline/plan.py)
        kinds = len(cfg.robustness.kinds or KINDS)
        out["robustness"] = _PERTURBED_COST * sum(n_test * (1 + kinds) * costs.score(d) for d in depths)
    if cfg.frontier.enabled:
        rows = _FRONTIER_ROWS_PER_MODEL + (cfg.frontier.limit or n_test)  # the winner's full bench
        out["frontier"] = sum(rows * costs.score(d) for d in depths)
    return out


def format_minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def plan_lines(plan: Plan, cpu: str) -> list[str]:
    """The plan as printed: one line per step, then the total."""
    width = max(len(k) for k in plan.estimates)
    lines = [f"plan on this machine ({cpu}), estimated from timed steps:"]
    lines += [f"  {k:<{width}}  ~{format_minutes(v)}" for k, v in plan.estimates.items()]
    lines.append(f"  {'total':<{width}}  ~{format_minutes(sum(plan.estimates.values()))}")
    return lines
