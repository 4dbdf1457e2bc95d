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
        ("lora: {r: 0}", "r must be > 0"),
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


def test_new_settings_at_their_default_keep_old_fingerprints():
    """Run folders made before data.vote_cols / train.soft_labels existed must keep their finished stages."""
    from toxdistill.config import _hash

    cfg = load_config(REPO / "configs" / "davidson-minilm.yaml")
    before = cfg.model_dump(mode="json", include={"data", "seed", "teacher"})
    del before["data"]["vote_cols"], before["teacher"]["train"]["soft_labels"]
    assert cfg.fingerprint() == _hash(before)
    votes = load_config(REPO / "configs" / "davidson-minilm.yaml", {"data.vote_cols": ["a", "b", "c"]})
    assert votes.fingerprint() != cfg.fingerprint()
    soft = load_config(
        REPO / "configs" / "davidson-minilm.yaml", {"data.vote_cols": ["a", "b", "c"], "train.soft_labels": 0.5}
    )
    assert soft.fingerprint() == votes.fingerprint()  # a student setting: only the stages change
    assert soft.stage_fingerprint("odd") != votes.stage_fingerprint("odd")
