"""Every common encoder family: student building, distillation, LoRA, inputs, export and labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from toxdistill.config import DistillConfig, LoraConfig, TrainConfig
from toxdistill.errors import ToxdistillError
from toxdistill.inference.predict import Predictor
from toxdistill.models.families import LORA_TARGETS, count_params, forward_inputs, label_order, relabel
from toxdistill.models.lora import add_lora
from toxdistill.models.students import attach_hidden_projection, build_student, detach_hidden_projection
from toxdistill.training.encoded import EncodedDataset
from toxdistill.training.teacher_cache import compute_teacher_outputs
from toxdistill.training.trainer import TeacherTargets, TrainData, TrainJob, train_model

from conftest import FAMILIES, LABELS, SAMPLE_TEXTS, tiny_dataset, tiny_family

# The Trainer's own validation loss picks the epoch, so these runs need no scores (compute_metrics).
BY_LOSS = TrainConfig(epochs=1, batch_size=8, best_metric="loss")


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0  # one padded row: masks and relative positions must behave the same in both models
    ids[0, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("family", FAMILIES)
def test_all_layers_student_gives_exactly_the_teachers_logits(family):
    """Any shared part left uncopied (MPNet's relative attention bias, DeBERTa-v2's relative embeddings,
    ELECTRA's embedding projection) would be random in the student and change these logits."""
    teacher = tiny_family(family)
    student = build_student(teacher, [1, 2, 3, 4])
    with torch.no_grad():
        a, b = teacher(**_batch()).logits, student(**_batch()).logits
    assert torch.equal(a, b)


@pytest.mark.parametrize("family", FAMILIES)
def test_half_depth_student_copies_the_chosen_layers_and_shares_nothing(family):
    teacher = tiny_family(family)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = build_student(teacher, "even")
    assert student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 4
    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    layer_keys = [k for k in s_sd if ".layer.1." in k]
    assert layer_keys
    for k in layer_keys:  # student layer 2 (0-based 1) is teacher layer 4 (0-based 3)
        assert torch.equal(s_sd[k], t_sd[k.replace(".layer.1.", ".layer.3.")])
    t_ptrs = {p.data_ptr() for p in teacher.parameters()}
    assert not t_ptrs & {p.data_ptr() for p in student.parameters()}
    for p in student.parameters():
        p.data.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_default_targets_cover_every_linear_layer(family):
    model = tiny_family(family)
    peft_model = add_lora(model, LoraConfig(r=4, alpha=8))
    total, trainable = count_params(peft_model)
    adapted = {n.rsplit(".lora_A", 1)[0] for n, _ in peft_model.named_parameters() if ".lora_A." in n}
    # Each default target is adapted in each of the 4 layers.
    for t in LORA_TARGETS[family]:
        hits = {a for a in adapted if a.endswith("." + t)}
        assert len(hits) >= 4, (t, sorted(adapted)[:8])
    trained = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any("classifier" in n for n in trained)
    if family == "distilbert":  # its pre_classifier is random in a pretrained checkpoint: it must train too
        assert any("pre_classifier" in n and "modules_to_save" in n for n in trained)
    assert 0 < trainable < total


def test_lora_needs_targets_for_an_unknown_family():
    from transformers import AlbertConfig, AlbertForSequenceClassification

    albert = AlbertForSequenceClassification(
        AlbertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    )
    with pytest.raises(ToxdistillError, match="no default LoRA target modules for model_type 'albert'"):
        add_lora(albert, LoraConfig())
    assert count_params(add_lora(albert, LoraConfig(target_modules=["query", "value"])))[1] > 0


@pytest.mark.parametrize("family", ["mpnet", "distilbert"])
def test_no_token_type_ids_reach_a_model_that_has_none(family, tmp_path, tokenizer):
    """These forwards swallow unknown keywords, so feeding token_type_ids would pass silently; we check
    what actually arrives, in training, teacher outputs and the Predictor."""
    model = tiny_family(family)
    assert forward_inputs(model) == ["input_ids", "attention_mask"]
    seen: set[str] = set()
    orig = model.forward

    def spy(*args, **kw):
        seen.update(k for k, v in kw.items() if v is not None)
        return orig(*args, **kw)

    model.forward = spy
    ds = tiny_dataset(24)
    train_model(TrainJob(model, tokenizer, TrainData(ds, ds, 32), BY_LOSS, tmp_path / "w", 0, 4, progress=False))
    enc = EncodedDataset(ds, tokenizer, 32, token_types="token_type_ids" in forward_inputs(model))
    compute_teacher_outputs(model, enc, progress=False)
    assert "input_ids" in seen and "token_type_ids" not in seen
    model.forward = orig
    d = tmp_path / "m"
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    pred = Predictor.load(d, backend="torch")
    pred.backend.model.forward = spy
    seen.clear()
    pred.logits(SAMPLE_TEXTS)
    assert seen and "token_type_ids" not in seen


def _distill(student, tokenizer, ds, cache, tmp_path, distill: DistillConfig) -> dict:
    """One epoch of distillation of a 2-layer student on ``ds`` from the cached teacher outputs."""
    cfg = BY_LOSS.model_copy(update={"lr": 1e-3})
    teacher = TeacherTargets(distill, cache)
    return train_model(
        TrainJob(student, tokenizer, TrainData(ds, ds, 32), cfg, tmp_path / "w", 0, 2, teacher, progress=False)
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_distillation_trains_every_family(family, tmp_path, tokenizer):
    """The full objective (CE + KD + cosine on the first token's final state) on each family's student."""
    ds = tiny_dataset(32)
    teacher = tiny_family(family)
    enc = EncodedDataset(ds, tokenizer, 32, token_types="token_type_ids" in forward_inputs(teacher))
    cache = compute_teacher_outputs(teacher, enc, progress=False)
    student = build_student(teacher, "odd")
    hist = _distill(student, tokenizer, ds, cache, tmp_path, DistillConfig())
    parts = hist["trainer"].loss_parts
    assert set(parts) == {"ce", "kd", "cos"} and all(np.isfinite(v) for v in parts.values())
    assert parts["cos"] < 0.5  # a student from the teacher's own layers starts close to its states


def test_student_of_another_hidden_size_trains_through_a_projection_that_is_not_saved(tmp_path, tokenizer):
    from transformers import AutoModelForSequenceClassification

    ds = tiny_dataset(32)
    teacher = tiny_family("bert", hidden=32)
    cache = compute_teacher_outputs(teacher, EncodedDataset(ds, tokenizer, 32), progress=False)
    student = tiny_family("mpnet", n_layers=2, hidden=48, seed=1)
    before = count_params(student)
    assert attach_hidden_projection(student, 32)
    assert count_params(student) == before  # counts describe the saved model, without the projection
    assert not attach_hidden_projection(tiny_family("bert", hidden=32), 32)  # same size: no projection
    w0 = student.kd_projection.weight.detach().clone()
    hist = _distill(student, tokenizer, ds, cache, tmp_path, DistillConfig(w_cos=1.0))
    model = hist["trainer"].model
    assert not torch.equal(model.kd_projection.weight, w0)  # the projection learned
    detach_hidden_projection(model)
    model.save_pretrained(tmp_path / "s")
    from safetensors.torch import load_file

    assert not [k for k in load_file(str(tmp_path / "s" / "model.safetensors")) if "kd_projection" in k]
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s")
    assert type(plain).__name__ == "MPNetForSequenceClassification"


@pytest.mark.parametrize("fuse", [False, True], ids=["plain", "fused"])
@pytest.mark.parametrize("family", FAMILIES)
def test_export_parity_per_family(family, fuse, tmp_path, tokenizer):
    pytest.importorskip("onnxruntime")
    from toxdistill.cli import main

    d = tmp_path / family
    tiny_family(family).save_pretrained(d)
    tokenizer.save_pretrained(d)
    (d / "toxdistill.json").write_text(json.dumps({"name": family, "label_names": LABELS, "max_length": 64}))
    assert (
        main(["export", str(d), "-o", str(tmp_path / "onnx"), *(["--target", "onnx-fp32-fused"] if fuse else [])]) == 0
    )
    rec = json.loads((tmp_path / "onnx" / "toxdistill.json").read_text())["export"]
    assert rec["parity"]["fp32"]["ok"] and rec["parity"]["fp32"]["max_abs_diff"] <= 1e-4
    # The optimizer fuses what it recognises in every family (LayerNorm at least), never breaking parity.
    assert bool(rec["fusion"]) == fuse and (not fuse or rec["fusion"]["fused_ops"])
    onnx = Predictor.load(tmp_path / "onnx")
    want = forward_inputs(tiny_family(family))
    # No token_type_ids input where the model has none (an exporter may also drop an unused one: DeBERTa-v2).
    assert {"input_ids", "attention_mask"} <= onnx.backend.inputs <= set(want)
    ref, _ = Predictor.load(d, backend="torch").logits(SAMPLE_TEXTS, 4)
    got, _ = onnx.logits(SAMPLE_TEXTS, 4)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


# ---------------------------------------------------------------- a given teacher's labels
class _Cfg:
    def __init__(self, id2label):
        self.id2label = id2label
        self.num_labels = len(id2label)


def test_label_order_by_name_map_and_generic_ids():
    assert label_order(_Cfg({0: "hate speech", 1: "offensive", 2: "neither"}), LABELS) == [0, 1, 2]
    assert label_order(_Cfg({0: "Neither", 1: "hate_speech", 2: "OFFENSIVE"}), LABELS) == [1, 2, 0]
    assert label_order(_Cfg({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}), LABELS) == [0, 1, 2]
    mapped = _Cfg({0: "normal", 1: "hateful", 2: "abusive"})
    assert label_order(mapped, LABELS, {"hateful": "hate speech", "abusive": "offensive", "normal": "neither"}) == [
        1,
        2,
        0,
    ]


@pytest.mark.parametrize(
    "id2label, label_map, msg",
    [
        ({0: "toxic", 1: "clean"}, None, "has 2 labels"),
        ({0: "hate speech", 1: "offensive", 2: "spam"}, None, "label 'spam' matches none"),
        ({0: "a", 1: "b", 2: "c"}, {"a": "hate speech", "b": "hate speech", "c": "neither"}, "two teacher labels"),
        ({0: "a", 1: "b", 2: "c"}, {"a": "toxic"}, "names 'toxic', not a data label"),
    ],
)
def test_label_order_refuses_what_cannot_be_mapped(id2label, label_map, msg):
    with pytest.raises(ToxdistillError, match=msg):
        label_order(_Cfg(id2label), LABELS, label_map)


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_relabel_reorders_the_head(family):
    model = tiny_family(family, id2label={0: "neither", 1: "hate speech", 2: "offensive"})
    with torch.no_grad():
        before = model(**_batch()).logits
    order = label_order(model.config, LABELS)
    assert order == [1, 2, 0]
    relabel(model, order, LABELS)
    with torch.no_grad():
        after = model(**_batch()).logits
    torch.testing.assert_close(after, before[:, order])
    assert model.config.id2label == dict(enumerate(LABELS))
