"""The teacher cache (training.teacher_cache): its keys, the cached teacher outputs of a run (built once by rank 0,
read by every student), the augmentation cache beside them, and the perturbed training copies made once."""

import os

import pytest
import torch
from safetensors.torch import load_file

from toxdistill.training import teacher_cache as cache_mod
from toxdistill.training.encoded import EncodedDataset
from toxdistill.training.teacher_cache import (
    TeacherCache,
    augment_cache_name,
    compute_teacher_outputs,
    load_or_build_teacher_cache,
    perturbed_ids,
    teacher_cache_key,
)

from conftest import tiny_bert, tiny_dataset


# ---------------------------------------------------------------- keys
def test_teacher_cache_key_changes_with_teacher_or_split(tmp_path):
    t = tmp_path / "teacher"
    t.mkdir()
    (t / "model.safetensors").write_bytes(b"a" * 10)
    k1 = teacher_cache_key(t, "split1", 128)
    assert k1 == teacher_cache_key(t, "split1", 128)
    assert k1 != teacher_cache_key(t, "split2", 128)
    assert k1 != teacher_cache_key(t, "split1", 64)
    (t / "model.safetensors").write_bytes(b"b" * 11)
    assert k1 != teacher_cache_key(t, "split1", 128)


def test_cache_keys_are_the_ones_existing_run_folders_hold(tmp_path):
    """Pinned: another key would make every run folder's teacher and augmentation caches stale, and recompute."""
    t = tmp_path / "teacher"
    t.mkdir()
    (t / "model.safetensors").write_bytes(b"a" * 10)
    (t / "extra.safetensors").write_bytes(b"bb" * 7)
    (t / "config.json").write_text("{}")  # not a weight file: not in the key
    for f in t.iterdir():
        os.utime(f, ns=(1_700_000_000_000_000_000, 1_700_000_000_123_456_789))
    key = teacher_cache_key(t, "0123456789abcdef", 128)
    assert key == "2ea44bd9bd0b9f93"
    name = augment_cache_name(key, 2, ["spaces", "leet"], 42, ["y o u", "h3llo"])
    assert name == "augment-2ea44bd9bd0b9f93-8733588aab60fc9e.safetensors"
    assert augment_cache_name(key, 2, ["spaces", "leet"], 42, ["y o u", "h3ll0"]) != name  # the copies' texts count


# ---------------------------------------------------------------- a run's cache
@pytest.fixture
def run_cache(tmp_path, tokenizer):
    """A saved tiny teacher and its run's ``TeacherCache``; ``loads`` counts how often the teacher is loaded."""
    teacher = tiny_bert(n_layers=2)
    tdir = tmp_path / "teacher"
    teacher.save_pretrained(tdir)
    loads = []

    def load():
        loads.append(1)
        return teacher, tokenizer

    cache = TeacherCache(tmp_path / "cache", tdir, "split", 32, load)
    return cache, teacher, loads


def test_the_teacher_outputs_are_computed_once_and_read_by_later_students(run_cache, tokenizer, monkeypatch):
    cache, teacher, loads = run_cache
    ds = tiny_dataset(20)
    logits, cls = cache.outputs(ds)
    want = compute_teacher_outputs(teacher, EncodedDataset(ds, tokenizer, 32), progress=False)
    assert torch.allclose(logits, want[0], atol=1e-6) and torch.allclose(cls, want[1], atol=1e-6)
    assert logits.shape == (20, 3) and cls.shape == (20, 32) and len(loads) == 1
    assert cache.teacher_file() == cache.folder / f"teacher-{cache.key()}.safetensors"
    assert torch.equal(load_file(str(cache.teacher_file()))["logits"], logits)

    def no_teacher(*a, **k):
        raise AssertionError("the cached outputs should have been read")

    monkeypatch.setattr(cache_mod, "compute_teacher_outputs", no_teacher)
    again = cache.outputs(ds)
    assert torch.equal(again[0], logits) and torch.equal(again[1], cls) and len(loads) == 1


def test_the_teacher_labels_the_transfer_set_once(run_cache):
    cache, _, loads = run_cache
    said: list[str] = []
    first = cache.transfer(["one text", "two texts"], "k1", ["a", "b", "c"], said.append)
    again = cache.transfer(["one text", "two texts"], "k1", ["a", "b", "c"], said.append)
    assert first.logits.shape == (2, 3) and first.texts == ["one text", "two texts"]
    assert torch.equal(first.logits, again.logits) and len(loads) == 1 and len(said) == 1
    cache.transfer(["other"], "k2", ["a", "b", "c"], said.append)  # other texts: a new file, the old one goes
    assert [f.name for f in cache.folder.glob("transfer-*")] == [f"transfer-{cache.key()}-k2.safetensors"]


def test_a_new_teacher_builds_its_own_cache_and_the_old_one_goes(run_cache, tokenizer):
    cache, teacher, loads = run_cache
    ds = tiny_dataset(12)
    old = cache.teacher_file()
    cache.build(ds)
    tiny_bert(n_layers=2, seed=5).save_pretrained(cache.teacher_dir)  # retrained: new weights, new key
    assert cache.teacher_file() != old
    cache.build(ds, teacher, tokenizer)  # the given teacher's path: the model is at hand, not loaded
    assert sorted(cache.folder.iterdir()) == [cache.teacher_file()] and len(loads) == 1


def test_a_cache_file_of_other_rows_is_rebuilt(tmp_path, tokenizer):
    teacher = tiny_bert(n_layers=2)
    f = tmp_path / "teacher-x.safetensors"
    first = load_or_build_teacher_cache(f, teacher, EncodedDataset(tiny_dataset(8), tokenizer, 32))
    assert first[0].shape[0] == 8
    assert load_or_build_teacher_cache(f, teacher, EncodedDataset(tiny_dataset(10), tokenizer, 32))[0].shape[0] == 10
    assert load_file(str(f))["logits"].shape[0] == 10 and not list(tmp_path.glob(".*tmp"))


def test_augmentation_is_labelled_once_and_keyed_by_its_teacher(run_cache, tokenizer):
    cache, teacher, loads = run_cache
    ds = tiny_dataset(10)
    said = []
    aug = cache.augmentation(ds, 2, ["spaces", "leet"], 1, None, said.append)
    assert len(aug.texts) == 20 and aug.logits.shape == (20, 3) and aug.cls.shape == (20, 32)
    with torch.no_grad():  # the teacher on the copies themselves
        direct = teacher(**tokenizer(aug.texts, padding=True, truncation=True, max_length=32, return_tensors="pt"))
    assert torch.allclose(aug.logits, direct.logits, atol=1e-5)
    assert said == ["augmentation: the teacher labels 20 copies (2 per row, spaces, leet)"] and len(loads) == 1
    again = cache.augmentation(ds, 2, ["spaces", "leet"], 1, None, said.append)
    assert torch.equal(again.logits, aug.logits) and len(said) == 1 and len(loads) == 1
    tiny_bert(n_layers=2, seed=5).save_pretrained(cache.teacher_dir)
    cache.augmentation(ds, 2, ["spaces", "leet"], 1, None, said.append)
    assert [f.name.split("-")[1] for f in cache.folder.glob("augment-*")] == [cache.key()]  # the old teacher's went


# ---------------------------------------------------------------- perturbed training copies
def test_perturbed_copies_are_made_once_per_training_set_seed_and_aims(tokenizer, monkeypatch):
    from toxdistill.data.perturb import perturb_texts

    calls = []

    def counting(texts, kind, *a, **kw):
        calls.append(kind)
        return perturb_texts(texts, kind, *a, **kw)

    monkeypatch.setattr(cache_mod, "perturb_texts", counting)
    monkeypatch.setattr(cache_mod, "_PERTURBED", {})
    ds = tiny_dataset(24)
    enc = EncodedDataset(ds, tokenizer, 32)
    kinds = ["leet", "spaces"]
    labels = [int(y) for y in ds.labels]
    first = perturbed_ids(enc, ds, kinds, 3, None)
    assert first == [enc.encode(perturb_texts(ds.texts, k, 3, 0, labels, None)) for k in kinds]
    assert first != [enc.encode(ds.texts)] * 2  # the copies are perturbed
    assert calls == kinds
    # A second stage of the same run (a fresh EncodedDataset of the same rows): nothing perturbed again.
    assert perturbed_ids(EncodedDataset(ds, tokenizer, 32), ds, kinds, 3, None) is first
    assert calls == kinds
    # Another seed, other aims, another length or other rows: made again, and right for the new inputs.
    weights = [{"ok": 1.0}, {"word": 2.0}, {"text": 1.5}]
    for args in [
        (enc, ds, kinds, 4, None),
        (enc, ds, kinds, 3, weights),
        (EncodedDataset(ds, tokenizer, 8), ds, kinds, 3, None),
    ]:
        e, d, k, seed, w = args
        again = perturbed_ids(e, d, k, seed, w)
        assert again == [e.encode(perturb_texts(d.texts, kind, seed, 0, labels, w)) for kind in k]
    assert len(calls) == 4 * len(kinds)  # the first build and the three new inputs, each kind once
    other = tiny_dataset(20)
    assert len(perturbed_ids(EncodedDataset(other, tokenizer, 32), other, kinds, 3, None)[0]) == 20
