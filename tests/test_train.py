import numpy as np
import pytest
import torch

from toxdistill.config import DistillConfig, TrainConfig
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.metrics import classification_metrics
from toxdistill.training.dropout import CheapDropout
from toxdistill.training.encoded import EncodedDataset
from toxdistill.training.trainer import (
    DistillationTrainer,
    TeacherTargets,
    TrainData,
    TrainJob,
    class_weight_tensor,
    fused_adamw_ok,
    layerwise_param_groups,
    soft_target_tensor,
    train_model,
)

from conftest import LABELS, tiny_bert, tiny_dataset


def val_metrics(eval_pred) -> dict[str, float]:
    """The scores the pipeline hands the Trainer: evaluation's own, the scalar ones."""
    logits, labels = eval_pred
    m = classification_metrics(labels, np.asarray(logits).argmax(-1), LABELS)
    return {k: m[k] for k in ("accuracy", "f1_macro", "f1_weighted")}


def fit(model, tokenizer, ds, cfg: TrainConfig, work, n_layers: int, encoded=None, **kw) -> dict:
    """train_model on ``ds``, validated on ``ds`` too: seed 0, 32 tokens, no progress bars; ``kw`` are further
    ``TrainJob`` fields."""
    data = TrainData(ds, ds, 32, encoded=encoded)
    return train_model(TrainJob(model, tokenizer, data, cfg, work, 0, n_layers, progress=False, **kw))


def test_layerwise_lr_groups_have_expected_rates():
    model = tiny_bert(n_layers=4)
    lr, decay = 1e-3, 0.5
    groups = layerwise_param_groups(model, lr=lr, n_layers=4, decay=decay, weight_decay=0.01)
    rate_of = {}
    for g in groups:
        for p in g["params"]:
            rate_of[id(p)] = (g["lr"], g["weight_decay"])
    named = dict(model.named_parameters())
    assert rate_of[id(named["classifier.weight"])][0] == pytest.approx(lr)
    assert rate_of[id(named["bert.pooler.dense.weight"])][0] == pytest.approx(lr)
    for layer in range(4):  # layer l (0-based) is l+1 deep: lr * decay^(5 - (l+1))
        w = named[f"bert.encoder.layer.{layer}.attention.self.query.weight"]
        assert rate_of[id(w)][0] == pytest.approx(lr * decay ** (4 - layer))
    assert rate_of[id(named["bert.embeddings.word_embeddings.weight"])][0] == pytest.approx(lr * decay**5)
    assert rate_of[id(named["bert.encoder.layer.0.attention.output.LayerNorm.weight"])][1] == 0.0
    assert rate_of[id(named["bert.encoder.layer.0.attention.self.query.weight"])][1] == 0.01


def test_freeze_lowest_layers():
    model = tiny_bert(n_layers=4)
    groups = layerwise_param_groups(model, lr=1e-3, n_layers=4, freeze_layers=2)
    in_groups = {id(p) for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert id(named["bert.embeddings.word_embeddings.weight"]) not in in_groups
    assert id(named["bert.encoder.layer.1.output.dense.weight"]) not in in_groups
    assert id(named["bert.encoder.layer.2.output.dense.weight"]) in in_groups
    assert not named["bert.encoder.layer.0.output.dense.weight"].requires_grad


def test_trainer_optimizer_uses_llrd_groups(tmp_path, tokenizer):
    model = tiny_bert(n_layers=2)
    ds = tiny_dataset()
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=16, layer_lr_decay=0.5)
    hist = fit(model, tokenizer, ds, cfg, tmp_path / "w", 2, compute_metrics=val_metrics)
    # The linear schedule has decayed "lr" to 0 by now; "initial_lr" is what each group started from.
    rates = sorted({g["initial_lr"] for g in hist["trainer"].optimizer.param_groups if g["params"]})
    assert rates == pytest.approx([1e-3 * 0.5**3, 1e-3 * 0.5**2, 1e-3 * 0.5, 1e-3])


def test_the_optimizer_is_fused_adamw_on_the_cpu_and_steps_like_the_default(tmp_path, tokenizer):
    model = tiny_bert(n_layers=2)
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=16)
    hist = fit(model, tokenizer, tiny_dataset(), cfg, tmp_path / "w", 2, compute_metrics=val_metrics)
    opt = hist["trainer"].optimizer
    assert all(g["fused"] is True for g in opt.param_groups)  # accelerate wraps the AdamW it made
    # The fused kernel is the same update: one step on the same groups moves the weights alike.
    torch.manual_seed(0)
    a, b = tiny_bert(n_layers=1), tiny_bert(n_layers=1)
    b.load_state_dict(a.state_dict())
    steps = []
    for m, fused in ((a, True), (b, False)):
        m.eval()  # no dropout: the two forward passes are the same
        groups = layerwise_param_groups(m, lr=1e-2, n_layers=1)
        o = torch.optim.AdamW(groups, lr=1e-2, fused=fused)
        ids = torch.randint(5, 60, (4, 7), generator=torch.Generator().manual_seed(1))
        m(input_ids=ids, labels=torch.tensor([0, 1, 2, 0])).loss.backward()
        o.step()
        steps.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.allclose(steps[0], steps[1], atol=1e-6)
    assert not torch.equal(steps[0], torch.cat([p.detach().flatten() for p in tiny_bert(n_layers=1).parameters()]))


def test_fused_adamw_only_for_floating_cpu_or_cuda_parameters():
    w = torch.nn.Parameter(torch.zeros(3))
    assert fused_adamw_ok([{"params": [w]}])
    assert not fused_adamw_ok([{"params": []}])
    assert not fused_adamw_ok([{"params": [w, torch.zeros(2, dtype=torch.int64)]}])
    assert not fused_adamw_ok([{"params": [torch.nn.Parameter(torch.zeros(2, device="meta"))]}])


def test_distillation_uses_cached_teacher_outputs(tmp_path, tokenizer):
    """A cache that points away from the labels pulls the student's logits towards it."""
    ds = tiny_dataset(64)
    enc = EncodedDataset(ds, tokenizer, 32)
    hidden = 32
    fake_logits = torch.tensor([[0.0, 0.0, 8.0]]).repeat(len(ds), 1)  # teacher says "neither" for all
    fake_cls = torch.ones(len(ds), hidden)
    student = tiny_bert(n_layers=2)
    cfg = TrainConfig(epochs=3, lr=3e-3, batch_size=16)
    dcfg = DistillConfig(w_ce=0.0, w_kd=1.0, w_cos=0.0, temperature=1.0)
    teacher = TeacherTargets(dcfg, (fake_logits, fake_cls))
    hist = fit(student, tokenizer, ds, cfg, tmp_path / "w", 2, enc, teacher=teacher, compute_metrics=val_metrics)
    trainer = hist["trainer"]
    assert isinstance(trainer, DistillationTrainer)
    assert trainer.teacher_logits is fake_logits
    with torch.no_grad():
        b = tokenizer(ds.texts[:8], padding=True, return_tensors="pt")
        preds = trainer.model(**b).logits.argmax(-1)
    assert (preds == 2).all()


def _epoch_batches(tmp_path, tokenizer, group_by_length: bool) -> tuple[list[int], float]:
    """One epoch of the training dataloader that train_model sets up: the row ids it yields, and the mean
    share of padding per batch."""
    ds = tiny_dataset(203)
    cfg = TrainConfig(epochs=1, batch_size=16, group_by_length=group_by_length)
    hist = fit(tiny_bert(n_layers=1), tokenizer, ds, cfg, tmp_path / str(group_by_length), 1, max_steps=1)
    seen, pad = [], []
    for b in hist["trainer"].get_train_dataloader():
        seen += b["idx"].tolist()
        pad.append(1 - b["attention_mask"].float().mean().item())
    return seen, float(np.mean(pad))


def test_training_groups_batches_by_length_and_covers_each_row_once(tmp_path, tokenizer):
    grouped, grouped_pad = _epoch_batches(tmp_path, tokenizer, True)
    shuffled, shuffled_pad = _epoch_batches(tmp_path, tokenizer, False)
    assert sorted(grouped) == list(range(203)) and sorted(shuffled) == list(range(203))
    assert grouped != shuffled
    # Rows of 2-11 words: random batches are about a third padding, length-grouped ones half that.
    assert grouped_pad < 0.7 * shuffled_pad, (grouped_pad, shuffled_pad)


def test_class_weight_rules():
    labels = np.array([0] * 10 + [1] * 70 + [2] * 20)
    balanced = class_weight_tensor("balanced", labels, 3)
    # sklearn's rule: N / (K n_c); each class then carries the same total weight.
    assert torch.allclose(balanced, torch.tensor([100 / 30, 100 / 210, 100 / 60]))
    assert torch.allclose(balanced * torch.tensor([10.0, 70.0, 20.0]), torch.full((3,), 100 / 3))
    assert torch.allclose(class_weight_tensor("sqrt-balanced", labels, 3), balanced.sqrt())
    assert class_weight_tensor(None, labels, 3) is None
    assert torch.equal(class_weight_tensor([2.0, 1.0, 1.0], labels, 3), torch.tensor([2.0, 1.0, 1.0]))
    with pytest.raises(ToxdistillError, match="2 values for 3 classes"):
        class_weight_tensor([1.0, 1.0], labels, 3)
    assert TrainConfig(class_weights="sqrt-balanced").class_weights == "sqrt-balanced"


def test_soft_targets_mix_labels_and_votes():
    ds = tiny_dataset(5)
    ds.votes = np.tile(np.array([[0.5, 0.5, 0.0]], dtype=np.float32), (5, 1))
    assert soft_target_tensor(ds, 0.0) is None
    t = soft_target_tensor(ds, 0.25)
    expected = 0.75 * np.eye(3)[ds.labels] + 0.25 * ds.votes
    np.testing.assert_allclose(t.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(t.sum(1).numpy(), 1.0, rtol=1e-6)
    with pytest.raises(ToxdistillError, match="vote_cols"):
        soft_target_tensor(tiny_dataset(5), 0.5)


def test_training_follows_the_votes_and_validation_the_labels(tmp_path, tokenizer):
    """Votes that all say "neither" pull the model there, whatever the majority labels say."""
    ds = tiny_dataset(64)
    ds.votes = np.tile(np.array([[0.0, 0.0, 1.0]], dtype=np.float32), (len(ds), 1))
    cfg = TrainConfig(epochs=3, lr=3e-3, batch_size=16, soft_labels=1.0)
    hist = fit(tiny_bert(n_layers=2), tokenizer, ds, cfg, tmp_path / "w", 2, compute_metrics=val_metrics)
    trainer = hist["trainer"]
    with torch.no_grad():
        b = tokenizer(ds.texts[:8], padding=True, return_tensors="pt")
        assert (trainer.model(**b).logits.argmax(-1) == 2).all()
    labels = torch.tensor(ds.labels[:4])
    trainer.model.eval()
    assert trainer.training_targets(trainer.model, labels, torch.arange(4)) is labels
    trainer.model.train()
    assert torch.equal(trainer.training_targets(trainer.model, labels, torch.arange(4)), trainer.soft_targets[:4])


def test_validation_runs_in_length_order_and_scores_the_same(tmp_path, tokenizer):
    ds = tiny_dataset(61)
    cfg = TrainConfig(epochs=1, batch_size=16)
    hist = fit(tiny_bert(n_layers=1), tokenizer, ds, cfg, tmp_path / "w", 1, max_steps=1, compute_metrics=val_metrics)
    trainer = hist["trainer"]
    ev = trainer.eval_dataset
    lengths = [len(x) for x in ev.input_ids]
    assert lengths == sorted(lengths) and lengths != [len(x) for x in EncodedDataset(ds, tokenizer, 32).input_ids]
    assert sorted(ev.labels.tolist()) == sorted(ds.labels.tolist())
    in_order = trainer.evaluate()
    as_given = trainer.evaluate(EncodedDataset(ds, tokenizer, 32))
    for k in ("eval_accuracy", "eval_f1_macro", "eval_f1_weighted"):
        assert in_order[k] == pytest.approx(as_given[k])


def test_the_best_epoch_is_the_one_compute_metrics_scores_highest(tmp_path, tokenizer):
    """One step per epoch; the scores are made up, so only the wiring to the Trainer can pick epoch 2."""
    ds = tiny_dataset(16)
    scores = iter([0.5, 0.9, 0.1])

    def made_up(eval_pred) -> dict[str, float]:
        return {"f1_macro": next(scores)}

    cfg = TrainConfig(epochs=3, batch_size=16)
    hist = fit(tiny_bert(n_layers=1), tokenizer, ds, cfg, tmp_path / "w", 1, compute_metrics=made_up)
    assert hist["best_checkpoint"].endswith("checkpoint-2")
    assert [h["eval_f1_macro"] for h in hist["trainer"].state.log_history if "eval_f1_macro" in h] == [0.5, 0.9, 0.1]


def test_selecting_the_best_epoch_by_a_score_needs_compute_metrics(tmp_path, tokenizer):
    ds = tiny_dataset(16)
    with pytest.raises(ValueError, match="needs compute_metrics to select the best epoch by 'f1_macro'"):
        fit(tiny_bert(n_layers=1), tokenizer, ds, TrainConfig(epochs=1), tmp_path / "w", 1)
    by_loss = TrainConfig(epochs=1, batch_size=16, best_metric="loss")  # the Trainer's own validation loss
    hist = fit(tiny_bert(n_layers=1), tokenizer, ds, by_loss, tmp_path / "w", 1)
    assert hist["best_checkpoint"].endswith("checkpoint-1")


def test_perturbed_rows_keep_the_clean_rows_index_and_label(tokenizer):
    ds = tiny_dataset(32)
    clean = EncodedDataset(ds, tokenizer, 32)
    variants = [clean.encode([t.upper() + " zzz" for t in ds.texts]), clean.encode([t + " qqq" for t in ds.texts])]
    always = clean.with_perturbations(variants, share=1.0, seed=0)
    variant_ids = [always.variants[k] for k in range(2)]
    drawn = set()
    for i in range(len(ds)):
        item = always[i]
        assert item["idx"] == i and item["labels"] == int(ds.labels[i])
        k = next(k for k in range(2) if item["input_ids"] == variant_ids[k][i])
        drawn.add(k)
        assert item["input_ids"] != clean[i]["input_ids"]
    assert drawn == {0, 1}  # both kinds are drawn
    assert all(clean[i]["input_ids"] == clean.input_ids[i] for i in range(len(ds)))  # the clean copy is untouched
    never = clean.with_perturbations(variants, share=0.0, seed=0)
    assert all(never[i]["input_ids"] == clean.input_ids[i] for i in range(len(ds)))
    half = clean.with_perturbations(variants, share=0.5, seed=1)
    share = np.mean([half[i % len(ds)]["input_ids"] != clean.input_ids[i % len(ds)] for i in range(400)])
    assert 0.4 < share < 0.6


def test_consistency_distillation_targets_the_teacher_on_the_clean_row(tmp_path, tokenizer):
    """Every row drawn perturbed: the student still learns the cached (clean-row) teacher outputs."""
    ds = tiny_dataset(64)
    enc = EncodedDataset(ds, tokenizer, 32)
    fake_logits = torch.tensor([[0.0, 0.0, 8.0]]).repeat(len(ds), 1)
    student = tiny_bert(n_layers=2)
    cfg = TrainConfig(epochs=3, lr=3e-3, batch_size=16, perturb=1.0, perturb_kinds=["spaces", "leet"])
    dcfg = DistillConfig(w_ce=0.0, w_kd=1.0, w_cos=0.0, temperature=1.0)
    teacher = TeacherTargets(dcfg, (fake_logits, torch.ones(len(ds), 32)))
    hist = fit(student, tokenizer, ds, cfg, tmp_path / "w", 2, enc, teacher=teacher, compute_metrics=val_metrics)
    trainer = hist["trainer"]
    assert trainer.train_dataset is not enc and trainer.train_dataset.share == 1.0
    assert len(trainer.train_dataset.variants) == 2
    with torch.no_grad():
        b = tokenizer(ds.texts[:8], padding=True, return_tensors="pt")
        assert (trainer.model(**b).logits.argmax(-1) == 2).all()


def test_training_swaps_in_cheap_dropout(tmp_path, tokenizer):
    model = tiny_bert(n_layers=2)
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=16)
    fit(model, tokenizer, tiny_dataset(), cfg, tmp_path / "w", 2, compute_metrics=val_metrics)
    assert any(isinstance(m, CheapDropout) for m in model.modules())
    assert not any(type(m) is torch.nn.Dropout and m.p > 0 for m in model.modules())
