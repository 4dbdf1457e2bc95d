from pathlib import Path

import pytest

from toxdistill.config import load_config
from toxdistill.errors import ToxdistillError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["davidson-minilm.yaml", "davidson-bert-base.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "configs" / name)
    kinds = {s.kind for s in cfg.stages}
    assert {"distill", "lora", "distill-lora"} <= kinds
    assert any(s.train and s.train.layer_lr_decay for s in cfg.stages)  # an llrd row


@pytest.mark.parametrize(
    "yaml_text,msg",
    [
        ("teacher: [unclosed", "not valid YAML"),
        ("no_such_key: 1", "unknown key"),
        ("seed: abc", "seed"),
        ("stages: [{name: s, kind: distill}]", "needs 'layers'"),
        ("stages: [{name: s, kind: distill-lora, base: nope}]", "not a distill stage"),
        ("lora: {r: 0}", "lora.r: Input should be greater than 0"),
        ("train: {layer_lr_decay: 1.5}", "layer_lr_decay"),
        ("stages: [{name: ../x, kind: lora}]", "stage name"),
        ("- a\n- b", "mapping"),
        ("teacher: {train: {soft_labels: 1.0}}", "needs data.vote_cols"),
        ("stages: [{name: s, kind: lora, train: {soft_labels: 0.5}}]", "needs data.vote_cols"),
        ("data: {vote_cols: [a, b]}", "2 columns for 3 label_names"),
        ("data: {vote_cols: [a, b, c]}\ntrain: {soft_labels: 1.5}", "soft_labels"),
    ],
)
def test_bad_configs(tmp_path, yaml_text, msg):
    p = tmp_path / "c.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ToxdistillError, match=msg):
        load_config(p)


def test_overrides_and_fingerprint():
    a = load_config(REPO / "configs" / "davidson-minilm.yaml")
    b = load_config(REPO / "configs" / "davidson-minilm.yaml", {"teacher.train.epochs": 1})
    assert b.teacher.train.epochs == 1
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == load_config(REPO / "configs" / "davidson-minilm.yaml", {"output_dir": "x"}).fingerprint()


# Fingerprints of the shipped offline config, as every release since run folders existed computed them.
# If this changes, every user's run folder refuses its finished stages: change it on purpose or not at all.
PINNED = {
    "teacher": "728ee54ead509477",
    "tfidf-lr": "97d6091d0e415e00",
    "odd": "f155772078230b27",
    "even": "c5cc984ce6fbbf80",
    "even-llrd": "c139979ae28312c1",
    "lora-teacher": "0cd7a6c99239f8bf",
    "lora-student": "beda61564ba25e26",
    "distill-lora": "3c98b981d122f5fb",
}


def _fps(**overrides):
    cfg = load_config(REPO / "configs" / "davidson-minilm.yaml", overrides)
    return {name: cfg.stage_fingerprint(name) for name in PINNED}


def test_fingerprints_are_stable_and_votes_count_only_where_they_train():
    assert _fps() == PINNED
    votes = ["hate_speech", "offensive_language", "neither"]
    assert _fps(**{"data.vote_cols": votes}) == PINNED  # named but unused: nothing to redo
    soft = _fps(**{"data.vote_cols": votes, "train.soft_labels": 0.5})
    changed = {n for n in PINNED if soft[n] != PINNED[n]}
    # The stages that take the run-wide train block, and distill-lora, whose base is the even student.
    assert changed == {"odd", "even", "distill-lora"}
    other_cols = _fps(**{"data.vote_cols": ["a", "b", "c"], "train.soft_labels": 0.5})
    assert other_cols["odd"] != soft["odd"] and other_cols["teacher"] == PINNED["teacher"]
    teacher_soft = _fps(**{"data.vote_cols": votes, "teacher.train.soft_labels": 1.0})
    assert all(teacher_soft[n] != PINNED[n] for n in PINNED if n != "tfidf-lr")
    assert teacher_soft["tfidf-lr"] == PINNED["tfidf-lr"]


def test_leaving_out_lora_targets_keeps_old_fingerprints():
    """A config without lora.target_modules now means "the family's defaults"; for BERT that is the list the
    old default spelled out, so run folders made from such configs keep their finished stages."""
    import yaml

    raw = yaml.safe_load((REPO / "configs" / "davidson-minilm.yaml").read_text())
    del raw["lora"]["target_modules"]
    cfg = load_config(None, {k: v for k, v in raw.items()})
    assert cfg.lora.target_modules is None
    assert {name: cfg.stage_fingerprint(name) for name in PINNED} == PINNED


def test_pretrained_is_for_a_given_teacher_only():
    with pytest.raises(ToxdistillError, match="teacher.pretrained is for a given teacher"):
        load_config(None, {"teacher": {"model": "packaged:all-MiniLM-L6-v2", "pretrained": "x"}})
    cfg = load_config(None, {"teacher": {"model": "/t", "train": None, "pretrained": "/p"}, "stages": []})
    assert cfg.teacher.pretrained_model() == "/p"


def test_set_indexes_lists_and_rejects_bad_paths():
    cfg = load_config(REPO / "configs" / "davidson-minilm.yaml", {"stages.2.train.lr": 3e-4})
    assert cfg.stages[2].train.lr == 3e-4
    for key, msg in (("stages.x.lr", "not an index"), ("stages.99.lr", "not an index"), ("seed.x", "holds a value")):
        with pytest.raises(ToxdistillError, match=msg):
            load_config(REPO / "configs" / "davidson-minilm.yaml", {key: 1})
