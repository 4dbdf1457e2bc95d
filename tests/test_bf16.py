"""Training precision: bf16 autocast where the CPU has native bf16 ("auto"), the same fingerprints on every CPU,
fp32 losses under autocast, and the precision recorded with each trained model."""

import pytest
import torch
from test_train import fit, val_metrics

from toxdistill import cpu
from toxdistill.config import TrainConfig, load_config
from toxdistill.pipeline import estimate
from toxdistill.training import trainer
from toxdistill.training.losses import cosine_loss, hidden_mse_loss, kd_kl_loss

from conftest import tiny_bert, tiny_dataset

AVX2 = ["avx2"]
AVX512_BF16 = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]
AMX = ["avx2", "avx512f", "amx_bf16", "amx_int8"]


@pytest.mark.parametrize(("features", "native"), [(AVX2, False), (AVX512_BF16, True), (AMX, True), ([], False)])
def test_native_bf16_is_avx512_bf16_or_amx(features, native):
    assert cpu.native_bf16(features) is native


@pytest.mark.parametrize(
    ("value", "native", "cuda", "expected"),
    [
        ("auto", True, False, True),
        ("auto", False, False, False),
        ("auto", True, True, False),  # a GPU takes an explicit true
        (True, False, False, True),
        (False, True, False, False),
    ],
)
def test_auto_trains_in_bf16_only_on_a_cpu_with_native_bf16(monkeypatch, value, native, cuda, expected):
    monkeypatch.setattr(trainer, "native_bf16", lambda: native)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert trainer.uses_bf16(TrainConfig(bf16=value)) is expected


def test_auto_is_the_default_and_hashes_as_false_while_true_changes_every_fingerprint():
    assert TrainConfig().bf16 == "auto"
    cfg = load_config(None)
    names = [s.name for s in cfg.stages]
    before = {n: cfg.stage_fingerprint(n) for n in names} | {"global": cfg.fingerprint()}
    off = load_config(None, {"train.bf16": False, "teacher.train.bf16": False})
    assert {n: off.stage_fingerprint(n) for n in names} | {"global": off.fingerprint()} == before
    on = load_config(None, {"train.bf16": True, "teacher.train.bf16": True})
    after = {n: on.stage_fingerprint(n) for n in names} | {"global": on.fingerprint()}
    assert all(after[k] != before[k] for k in before)
    assert "bf16: auto" in cfg.to_yaml()  # the saved config keeps what the user wrote


def test_losses_stay_fp32_under_bf16_logits():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(8, 3, generator=g) * 3
    student = (torch.randn(8, 3, generator=g) * 3).bfloat16()
    kd = kd_kl_loss(student, teacher, 2.0)
    assert kd.dtype == torch.float32
    assert torch.equal(kd, kd_kl_loss(student.float(), teacher, 2.0))  # the teacher's targets are not rounded
    assert not torch.equal(kd, kd_kl_loss(student.float(), teacher.bfloat16().float(), 2.0))
    h_t = torch.randn(8, 16, generator=g)
    h_s = torch.randn(8, 16, generator=g).bfloat16()
    assert torch.equal(cosine_loss(h_s, h_t), cosine_loss(h_s.float(), h_t))
    mask = torch.ones(8, 1)
    assert torch.equal(
        hidden_mse_loss([h_s[:, None]], [h_t[:, None]], mask),
        hidden_mse_loss([h_s[:, None].float()], [h_t[:, None]], mask),
    )


@pytest.mark.parametrize("bf16", [True, False])
def test_a_trained_model_records_its_precision(tmp_path, tokenizer, bf16):
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=16, bf16=bf16)
    hist = fit(tiny_bert(n_layers=1), tokenizer, tiny_dataset(), cfg, tmp_path / "w", 1, compute_metrics=val_metrics)
    assert hist["precision"] == ("bf16" if bf16 else "fp32")
    assert hist["trainer"].args.bf16 is bf16


def test_the_plan_times_training_steps_in_the_precision_training_uses(monkeypatch):
    seen = []
    real = torch.autocast

    def spy(*args, **kw):
        seen.append(kw.get("enabled", True))
        return real(*args, **kw)

    monkeypatch.setattr(torch, "autocast", spy)
    model = tiny_bert(n_layers=1)
    batch = {"input_ids": torch.randint(5, 60, (2, 6))}
    for bf16 in (True, False):
        seen.clear()
        train_s, score_s = estimate._step_seconds(model, batch, bf16)
        assert train_s > 0 and score_s > 0 and seen and set(seen) == {bf16}
