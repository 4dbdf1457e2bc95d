"""The quality levers for shallow students: intermediate-layer distillation (w_hidden), attention relations
(w_attn) against a live teacher, teacher-labelled augmentation (augment), and the two-step student."""

import json
import math
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from toxdistill.config import Config, DistillConfig, StageConfig, TrainConfig
from toxdistill.data.perturb import perturb_texts
from toxdistill.data.split import Split
from toxdistill.errors import ToxdistillError
from toxdistill.models.families import count_params, last_layer_qkv
from toxdistill.models.students import attach_hidden_projection, build_student, hidden_pairs
from toxdistill.pipeline import stages
from toxdistill.pipeline.context import RunContext
from toxdistill.training import teacher_cache as cache_mod
from toxdistill.training.encoded import EncodedDataset
from toxdistill.training.losses import attention_relation_loss, distillation_loss, hidden_mse_loss
from toxdistill.training.teacher_cache import Augmentation, augment_texts, compute_teacher_outputs
from toxdistill.training.trainer import (
    LiveTeacher,
    TeacherTargets,
    TrainData,
    TrainJob,
    _with_augmentation,
    capture_qkv,
    train_model,
)

from conftest import FAMILIES, tiny_bert, tiny_dataset, tiny_family


def _mask(b=3, n=6, real=(6, 4, 2)):
    m = torch.zeros(b, n, dtype=torch.long)
    for i, r in enumerate(real):
        m[i, :r] = 1
    return m


# ---------------------------------------------------------------- hidden_mse_loss
def test_hidden_mse_is_zero_for_equal_states_and_matches_its_formula():
    torch.manual_seed(0)
    m = _mask()
    t = [torch.randn(3, 6, 4) for _ in range(2)]
    assert hidden_mse_loss(t, [x.clone() for x in t], m).item() == 0.0
    s = [torch.randn(3, 6, 4) for _ in range(2)]
    by_hand = 0.0
    for sp, tp in zip(s, t, strict=True):
        err = [((sp[b, i] - tp[b, i]) ** 2).mean().item() for b in range(3) for i in range(6) if m[b, i]]
        by_hand += sum(err) / len(err) / 2
    got = hidden_mse_loss(s, t, m)
    assert math.isfinite(got.item()) and got.item() > 0
    assert got.item() == pytest.approx(by_hand, rel=1e-5)


def test_hidden_mse_ignores_padded_tokens():
    torch.manual_seed(1)
    m = _mask()
    s, t = [torch.randn(3, 6, 4)], [torch.randn(3, 6, 4)]
    noisy = s[0].clone()
    noisy[m == 0] += 100.0  # what the padding holds is not the loss's business
    assert hidden_mse_loss([noisy], t, m).item() == pytest.approx(hidden_mse_loss(s, t, m).item(), rel=1e-6)


# ---------------------------------------------------------------- attention_relation_loss
def test_attention_relations_are_zero_for_equal_states_and_positive_otherwise():
    torch.manual_seed(2)
    m = _mask()
    qkv = [torch.randn(3, 6, 8) for _ in range(3)]
    assert attention_relation_loss(qkv, [x.clone() for x in qkv], m, heads=2).item() == pytest.approx(0, abs=1e-6)
    other = [torch.randn(3, 6, 8) for _ in range(3)]
    got = attention_relation_loss(other, qkv, m, heads=2)
    assert math.isfinite(got.item()) and got.item() > 0


def test_attention_relations_work_across_widths_and_head_counts():
    """A student of width 8 against a teacher of width 12, in 2 and 4 relation heads; the relations compare
    L×L token maps, so the widths never meet. Relation maps are invariant to rotating a head's features."""
    torch.manual_seed(3)
    m = _mask()
    teacher = [torch.randn(3, 6, 12) for _ in range(3)]
    student = [torch.randn(3, 6, 8, requires_grad=True) for _ in range(3)]
    for heads in (2, 4):
        loss = attention_relation_loss(student, teacher, m, heads)
        assert math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    assert all(torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0 for x in student)
    rot = torch.linalg.qr(torch.randn(6, 6))[0]  # one orthogonal map on each of the 2 heads' 6 features
    rotated = [torch.cat([x[..., :6] @ rot, x[..., 6:] @ rot], -1) for x in teacher]
    assert attention_relation_loss(rotated, teacher, m, 2).item() == pytest.approx(0, abs=1e-5)
    with pytest.raises(ValueError, match="do not divide"):
        attention_relation_loss(student, teacher, m, 5)


def test_attention_relations_ignore_padded_keys_and_queries():
    torch.manual_seed(4)
    m = _mask()
    s, t = [torch.randn(3, 6, 8) for _ in range(3)], [torch.randn(3, 6, 8) for _ in range(3)]
    noisy = [x.clone() for x in s]
    for x in noisy:
        x[m == 0] = 50.0 * torch.randn(int((m == 0).sum()), 8)
    base = attention_relation_loss(s, t, m, 2).item()
    assert attention_relation_loss(noisy, t, m, 2).item() == pytest.approx(base, rel=1e-5)


def test_distillation_loss_adds_the_weighted_token_terms():
    torch.manual_seed(5)
    logits, t_logits = torch.randn(3, 3), torch.randn(3, 3)
    y, h, ht = torch.tensor([0, 1, 2]), torch.randn(3, 4), torch.randn(3, 4)
    m = _mask()
    hs = ([torch.randn(3, 6, 4)], [torch.randn(3, 6, 4)])
    qkv = ([torch.randn(3, 6, 8) for _ in range(3)], [torch.randn(3, 6, 8) for _ in range(3)])
    plain, parts = distillation_loss(logits, t_logits, y, h, ht)
    assert set(parts) == {"ce", "kd", "cos"}  # levers off: neither term computed nor reported
    _, no_cos = distillation_loss(logits, t_logits, y, h, torch.randn(3, 7), w_cos=0.0)  # widths differ: unused
    assert set(no_cos) == {"ce", "kd"}
    full, parts = distillation_loss(
        logits, t_logits, y, h, ht, w_hidden=0.5, hidden_states=hs, w_attn=2.0, qkv_states=qkv, mask=m, attn_heads=2
    )
    want = 0.5 * hidden_mse_loss(*hs, m) + 2.0 * attention_relation_loss(*qkv, m, 2)
    assert (full - plain).item() == pytest.approx(want.item(), rel=1e-5)
    assert parts["hidden"] == pytest.approx(hidden_mse_loss(*hs, m).item(), rel=1e-6) and parts["attn"] > 0


# ---------------------------------------------------------------- hooks and the live teacher
@pytest.mark.parametrize("family", FAMILIES)
def test_qkv_hooks_capture_the_last_layers_projections(family):
    model = tiny_family(family, n_layers=3)
    x = torch.randint(5, 1000, (2, 7))
    with capture_qkv(model) as got, torch.no_grad():
        model(input_ids=x, attention_mask=torch.ones_like(x))
    assert [t.shape for t in got] == [torch.Size([2, 7, 32])] * 3
    assert len({t.data_ptr() for t in got}) == 3
    names = {id(m): n for n, m in model.named_modules()}
    assert all(".layer.2." in names[id(m)] for m in last_layer_qkv(model))  # the last of layers 0, 1, 2


def test_live_teacher_sees_the_batch_the_student_sees():
    teacher = tiny_bert(n_layers=4)
    live = LiveTeacher(teacher, hidden_pairs(2, 4, [2, 4]), heads=2)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    x = torch.randint(5, 1000, (2, 5))
    batch = {"input_ids": x, "attention_mask": torch.ones_like(x), "idx": torch.tensor([0, 1])}
    hidden, qkv = live.states(batch, qkv=True)
    assert len(hidden) == 5 and len(qkv) == 3
    with torch.no_grad():
        ref = teacher(input_ids=x, attention_mask=torch.ones_like(x), output_hidden_states=True).hidden_states
    assert torch.equal(hidden[4], ref[4])


# ---------------------------------------------------------------- augmentation
def test_augmented_copies_cycle_kinds_and_are_seeded():
    texts = ["you are such a stupid idiot", "what a lovely morning today"]
    a = augment_texts(texts, 3, ["spaces", "leet"], seed=1)
    assert len(a) == 6 and a == augment_texts(texts, 3, ["spaces", "leet"], seed=1)
    assert all(re.search(r"\b\w( \w){3,}\b", t) for t in a[:2])  # copy 0: "spaces"
    assert all(re.search(r"\d", t) for t in a[2:4])  # copy 1: "leet"
    assert a[4:] == perturb_texts(texts, "spaces", 1, 2)  # copy 2: "spaces" again, as the generator's copy 2
    assert augment_texts(texts, 3, ["spaces", "leet"], seed=2) != a


def test_copies_are_labelled_by_the_teacher_alone(tokenizer):
    ds = tiny_dataset(8)
    enc = EncodedDataset(ds, tokenizer, 32)
    cached = (torch.randn(8, 3), torch.randn(8, 32))
    aug = Augmentation(texts=[t + " !!" for t in ds.texts], logits=torch.randn(8, 3), cls=torch.randn(8, 32))
    out, soft, (logits, cls) = _with_augmentation(enc, None, cached, aug, 3)
    assert len(out) == 16 and out[12]["idx"] == 12 and len(enc) == 8  # the clean dataset is untouched
    assert torch.equal(soft[:8], torch.eye(3)[torch.as_tensor(ds.labels)])  # clean rows: their labels
    assert torch.allclose(soft[8:], torch.softmax(aug.logits, -1))  # copies: the teacher's distribution
    assert torch.equal(logits[8:], aug.logits) and torch.equal(cls[:8], cached[1])


# ---------------------------------------------------------------- the stage, end to end
@pytest.fixture
def tiny_run_ctx(tmp_path, tokenizer):
    def make(stage_list):
        teacher = tiny_bert(n_layers=4)
        tdir = tmp_path / "run" / "models" / "teacher"
        teacher.save_pretrained(tdir)
        tokenizer.save_pretrained(tdir)
        ds = tiny_dataset(36)
        split = Split(ds.subset(ds.ids[:24]), ds.subset(ds.ids[24:30]), ds.subset(ds.ids[30:]))
        cfg = Config(stages=stage_list, baseline=False)
        return RunContext(cfg, tmp_path / "run", split)

    return make


def test_a_two_step_student_with_every_lever_trains_and_saves_a_plain_classifier(
    tmp_path, tokenizer, tiny_run_ctx, monkeypatch
):
    """A narrower 3-layer model cut to its top layer, with w_hidden, w_attn and augment, and consistency training:
    it trains, the projections stay out of the folder, and the augmentation cache is reused on the next call."""
    sdir = tmp_path / "student"
    student = tiny_bert(n_layers=3, hidden=16, seed=3)
    student.save_pretrained(sdir)
    tokenizer.save_pretrained(sdir)
    tc = TrainConfig(epochs=1, batch_size=16, perturb=0.5, perturb_kinds=["spaces", "leet"])
    dc = DistillConfig(w_hidden=1.0, w_attn=1.0, augment=1)
    st = StageConfig(name="two", kind="distill", student=str(sdir), layers="top:1", train=tc, distill=dc)
    ctx = tiny_run_ctx([st])
    stages.stage_distill(ctx, ctx.cfg.stages[0])

    out = ctx.model_dir("two")
    meta = json.loads((out / "toxdistill.json").read_text())
    assert meta["layers"] == [3] and meta["student_model"] == str(sdir)
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1
    assert not [k for k in load_file(str(out / "model.safetensors")) if "kd_" in k]
    assert meta["params"] == count_params(build_student(student, [3]))[0]
    augs = list((ctx.run_dir / "cache").glob("augment-*.safetensors"))
    assert len(augs) == 1 and load_file(str(augs[0]))["logits"].shape == (24, 3)

    def no_teacher(*a, **k):
        raise AssertionError("the augmentation cache should have been reused")

    monkeypatch.setattr(cache_mod, "compute_teacher_outputs", no_teacher)
    again = stages._augmentation(ctx, ctx.cfg.stage_train(st), 1, None)
    assert len(again.texts) == 24 and torch.equal(again.logits, load_file(str(augs[0]))["logits"])


def test_hidden_terms_pair_a_cut_student_with_its_source_layers(tiny_run_ctx, monkeypatch):
    st = StageConfig(name="s", kind="distill", layers="spread:2", distill=DistillConfig(w_hidden=1.0))
    ctx = tiny_run_ctx([st])
    seen = {}

    def capture(ctx_, name, role, model, tok, train_cfg, **kw):
        seen.update(kw, model=model)

    monkeypatch.setattr(stages, "_train_and_save", capture)
    stages.stage_distill(ctx, ctx.cfg.stages[0])
    assert seen["layers"] == [2, 4] and seen["live_teacher"].pairs == [(0, 0), (1, 2), (2, 4)]
    assert not hasattr(seen["model"], "kd_hidden_projection")  # same width: no projection


def test_a_projected_student_resumes_with_its_projection(tmp_path, tokenizer):
    ds = tiny_dataset(16)
    teacher = tiny_bert(n_layers=2)
    enc = EncodedDataset(ds, tokenizer, 32)
    outs = compute_teacher_outputs(teacher, enc, progress=False)
    dc = DistillConfig(w_hidden=1.0, w_cos=0.0)

    def fit(epochs):
        student = tiny_bert(n_layers=2, hidden=16, seed=1)
        assert attach_hidden_projection(student, 32, "kd_hidden_projection")
        live = LiveTeacher(teacher, hidden_pairs(2, 2), 2)
        cfg = TrainConfig(epochs=epochs, batch_size=16, best_metric="loss")
        teacher_part = TeacherTargets(dc, outs, live=live)
        data = TrainData(ds, ds, 32, encoded=enc)
        return train_model(TrainJob(student, tokenizer, data, cfg, tmp_path / "w", 0, 2, teacher_part, progress=False))

    fit(1)
    ckpt = tmp_path / "w" / "checkpoint-1" / "model.safetensors"
    saved = load_file(str(ckpt))
    assert "kd_hidden_projection.weight" in saved
    # Zeroed in the checkpoint: a resumed projection starts there, a fresh one at ±0.25.
    saved["kd_hidden_projection.weight"] = torch.zeros_like(saved["kd_hidden_projection.weight"])
    save_file(saved, str(ckpt), metadata={"format": "pt"})
    hist = fit(2)  # resumes from checkpoint-1 and trains its second epoch
    assert hist["trainer"].state.global_step == 2
    assert hist["trainer"].model.kd_hidden_projection.weight.abs().max().item() < 0.01


# ---------------------------------------------------------------- checks before training
def _confs(teacher_hidden=32, student_hidden=32, heads=2):
    t = tiny_bert(n_layers=2, hidden=teacher_hidden).config
    s = tiny_bert(n_layers=2, hidden=student_hidden).config
    t.num_attention_heads = heads
    return t, s


def test_relation_heads_must_divide_both_widths():
    t, s = _confs(32, 24)
    stages.check_levers("x", DistillConfig(w_attn=1.0, attn_heads=4), (t, "a"), (s, "a"))  # 4 | 32 and 4 | 24
    with pytest.raises(ToxdistillError, match=r"stage 'x': 5 relation heads .* 32 \(teacher\) and 24 \(student\)"):
        stages.check_levers("x", DistillConfig(w_attn=1.0, attn_heads=5), (t, "a"), (s, "a"))
    t.num_attention_heads = 16  # the default: the teacher's own heads, which do not divide 24
    with pytest.raises(ToxdistillError, match="e.g. 8"):
        stages.check_levers("x", DistillConfig(w_attn=1.0), (t, "a"), (s, "a"))
    stages.check_levers("x", DistillConfig(w_hidden=1.0), (t, "a"), (s, "a"))  # heads matter for w_attn only


def test_token_level_levers_need_the_teachers_tokenizer(tmp_path, tokenizer):
    from transformers import BertTokenizerFast

    other = tmp_path / "other"
    other.mkdir()
    (other / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "you", "hate"]))
    BertTokenizerFast(vocab_file=str(other / "vocab.txt")).save_pretrained(other)
    same = tmp_path / "same"
    tokenizer.save_pretrained(same)
    t, s = _confs()
    for dc in (DistillConfig(w_hidden=1.0), DistillConfig(w_attn=1.0)):
        stages.check_levers("x", dc, (t, str(same)), (s, str(same)))
        with pytest.raises(ToxdistillError, match="student's tokenizer is not the teacher's"):
            stages.check_levers("x", dc, (t, str(same)), (s, str(other)))
    stages.check_levers("x", DistillConfig(augment=2), (t, str(same)), (s, str(other)))  # row-level: any tokenizer


def test_run_refuses_relation_heads_that_do_not_divide_in_one_line(tmp_path, capsys):
    from toxdistill.cli import main

    data = tmp_path / "ok.csv"
    data.write_text("tweet,class\n" + "\n".join(f"text {i},{i % 3}" for i in range(30)) + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "baseline: false\nstages: [{name: s1, kind: distill, layers: 'spread:1', distill: {w_attn: 1, attn_heads: 5}}]\n"
    )
    code = main(["run", "--config", str(cfg), "--output-dir", str(tmp_path / "runs"), "--data", str(data)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "5 relation heads" in err[0] and "384" in err[0], err


def test_levers_off_keep_stage_fingerprints_and_on_change_them():
    stage = [StageConfig(name="s", kind="distill", layers="even")]
    off = DistillConfig(w_hidden=0.0, w_attn=0.0, attn_heads=None, augment=0)
    base = Config(stages=stage).stage_fingerprint("s")
    assert Config(stages=stage, distill=off).stage_fingerprint("s") == base
    for lever in ({"w_hidden": 1.0}, {"w_attn": 1.0}, {"attn_heads": 4}, {"augment": 2}):
        assert Config(stages=stage, distill=DistillConfig(**lever)).stage_fingerprint("s") != base


def test_distill_lora_gets_the_live_teacher_and_its_hooks_see_the_adapters(tiny_run_ctx, tokenizer, monkeypatch):
    base = StageConfig(name="base", kind="distill", layers=[2, 4])
    dc = DistillConfig(w_hidden=1.0, w_attn=1.0)
    dl = StageConfig(name="dl", kind="distill-lora", base="base", distill=dc)
    ctx = tiny_run_ctx([base, dl])
    folder = ctx.model_dir("base")
    build_student(tiny_bert(n_layers=4), [2, 4]).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "toxdistill.json").write_text(json.dumps({"name": "base", "kind": "student", "layers": [2, 4]}))
    seen = {}
    monkeypatch.setattr(stages, "_train_and_save", lambda *a, **kw: seen.update(kw, model=a[3]))
    stages.stage_lora(ctx, ctx.cfg.stages[1])
    live = seen["live_teacher"]
    assert live.pairs == [(0, 0), (1, 2), (2, 4)] and live.heads == 2
    names = {id(m): n for n, m in seen["model"].named_modules()}
    assert all("lora" in type(m).__module__ for m in last_layer_qkv(seen["model"])), names
    ds = ctx.split.train
    teacher = TeacherTargets(dc, (torch.randn(len(ds), 3), torch.randn(len(ds), 32)), live=live)
    cfg = TrainConfig(batch_size=8)
    data = TrainData(ds, ds, 32)
    job = TrainJob(seen["model"], tokenizer, data, cfg, ctx.work_dir("dl"), 0, 2, teacher, progress=False, max_steps=1)
    hist = train_model(job)
    parts = hist["trainer"].loss_parts
    assert parts["hidden"] > 0 and parts["attn"] > 0 and math.isfinite(parts["attn"])
