import json
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from toxdistill import config as config_module
from toxdistill.config import DEFAULT_CONFIG, CleanConfig, Config, TrainConfig, load_config
from toxdistill.config_docs import REGENERATE, config_models, render_config_docs
from toxdistill.errors import ToxdistillError
from toxdistill.files import BERT_LORA_TARGETS, CONFIG_FILE, META_FILE, MODELS_DIR

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", [DEFAULT_CONFIG, REPO / "configs" / "davidson-bert-base.yaml"], ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
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
    a = load_config(DEFAULT_CONFIG)
    b = load_config(DEFAULT_CONFIG, {"teacher.train.epochs": 1})
    assert b.teacher.train.epochs == 1
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == load_config(DEFAULT_CONFIG, {"output_dir": "x"}).fingerprint()


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


# The front-end (data.clean's nfkc ... squeeze_repeats) was adopted in the shipped config after consistency
# training: the shipped config without it.
def _frontend_off() -> dict:
    raw = yaml.safe_load((DEFAULT_CONFIG).read_text())
    assert set(raw["data"].pop("clean")) == set(CleanConfig.FRONTEND)  # the block holds the front-end alone
    return raw


# Consistency training (train.perturb) was adopted in three distill stages after those fingerprints were made;
# the shipped config without it (nor the front-end, adopted later) must still give every one of them.
def _consistency_off() -> dict:
    raw = _frontend_off()
    for st in raw["stages"]:
        if st.get("train", {}).pop("perturb", None) is not None and not st["train"]:
            del st["train"]
    return raw


def _fps(**overrides):
    cfg = load_config(None, {**_consistency_off(), **overrides})
    return {name: cfg.stage_fingerprint(name) for name in PINNED}


def test_adopting_consistency_training_changes_exactly_the_stages_that_use_it():
    shipped = load_config(None, _frontend_off())
    fps = {name: shipped.stage_fingerprint(name) for name in PINNED}
    # distill-lora starts from even, and its fingerprint holds its base's.
    assert {n for n in PINNED if fps[n] != PINNED[n]} == {"odd", "even", "even-llrd", "distill-lora"}
    assert all(shipped.stage_train(shipped.stages[k]).perturb == 0.5 for k in (0, 1, 2))


def test_fingerprints_are_stable_and_votes_count_only_where_they_train():
    assert _fps() == PINNED
    votes = ["hate_speech", "offensive_language", "neither"]
    assert _fps(**{"data.vote_cols": votes}) == PINNED  # named but unused: nothing to redo
    soft = _fps(**{"data.vote_cols": votes, "train.soft_labels": 0.5})
    changed = {n for n in PINNED if soft[n] != PINNED[n]}
    # Every stage: those without a train block take the run's, and those with one leave soft_labels to it.
    assert changed == set(PINNED) - {"teacher", "tfidf-lr"}
    # A stage that sets its own soft_labels keeps it: only the stages that inherit 0.5 change.
    own = _fps(**{"data.vote_cols": votes, "stages.2.train.soft_labels": 0.5})
    assert {n for n in PINNED if own[n] != PINNED[n]} == {"even-llrd"}
    other_cols = _fps(**{"data.vote_cols": ["a", "b", "c"], "train.soft_labels": 0.5})
    assert other_cols["odd"] != soft["odd"] and other_cols["teacher"] == PINNED["teacher"]
    teacher_soft = _fps(**{"data.vote_cols": votes, "teacher.train.soft_labels": 1.0})
    assert all(teacher_soft[n] != PINNED[n] for n in PINNED if n != "tfidf-lr")
    assert teacher_soft["tfidf-lr"] == PINNED["tfidf-lr"]


def test_adopting_the_frontend_changes_every_fingerprint_and_only_through_data_clean():
    shipped, before = load_config(DEFAULT_CONFIG), load_config(None, _frontend_off())
    assert all(getattr(shipped.data.clean, k) for k in CleanConfig.FRONTEND)
    assert shipped.model_copy(update={"data": before.data}) == before
    assert all(shipped.stage_fingerprint(n) != before.stage_fingerprint(n) for n in PINNED)


def test_leaving_out_lora_targets_keeps_old_fingerprints():
    """A config without lora.target_modules means "the family's defaults"; for BERT that is the list the old
    default (and the shipped configs) spelled out, so run folders made from such configs keep their stages."""
    raw = _frontend_off()
    assert "target_modules" not in raw["lora"] and load_config(None, raw).lora.target_modules is None
    raw["lora"]["target_modules"] = list(BERT_LORA_TARGETS)
    cfg = load_config(None, {**raw, "stages": _consistency_off()["stages"]})
    assert {name: cfg.stage_fingerprint(name) for name in PINNED} == PINNED


def test_pretrained_is_for_a_given_teacher_only():
    with pytest.raises(ToxdistillError, match="teacher.pretrained is for a given teacher"):
        load_config(None, {"teacher": {"model": "packaged:all-MiniLM-L6-v2", "pretrained": "x"}})
    cfg = load_config(None, {"teacher": {"model": "/t", "train": None, "pretrained": "/p"}, "stages": []})
    assert cfg.teacher.pretrained_model() == "/p"


def test_set_indexes_lists_and_rejects_bad_paths():
    cfg = load_config(DEFAULT_CONFIG, {"stages.2.train.lr": 3e-4})
    assert cfg.stages[2].train.lr == 3e-4
    for key, msg in (("stages.x.lr", "not an index"), ("stages.99.lr", "not an index"), ("seed.x", "holds a value")):
        with pytest.raises(ToxdistillError, match=msg):
            load_config(DEFAULT_CONFIG, {key: 1})


def test_set_on_a_stage_without_a_train_block_merges_onto_the_run_train(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(
        "train: {epochs: 2, class_weights: sqrt-balanced}\nstages: [{name: a, kind: distill, layers: odd}, "
        "{name: b, kind: distill, layers: even}]\n"
    )
    cfg = load_config(f, {"stages.0.train.lr": 3e-4})
    assert cfg.stage_train(cfg.stages[0]) == cfg.train.model_copy(update={"lr": 3e-4})
    assert cfg.stage_train(cfg.stages[1]) is cfg.train


def test_a_stage_train_block_is_merged_onto_the_run_train():
    run = {"train": {"epochs": 4, "lr": 1e-4, "class_weights": "sqrt-balanced", "grad_accum": 2}}
    stage = {"name": "s", "kind": "lora", "train": {"lr": 1e-3, "class_weights": None}}
    st_train = load_config(None, {**run, "stages": [stage]}).stages[0].train
    # Keys the stage gives win, an explicit null included; the rest are the run's, not TrainConfig's defaults.
    assert (st_train.lr, st_train.class_weights) == (1e-3, None)
    assert (st_train.epochs, st_train.grad_accum) == (4, 2)
    assert TrainConfig().epochs != 4 and TrainConfig().grad_accum != 2


def _spelled_out(raw: dict) -> dict:
    """``raw`` with every stage's train block repeating the run's keys, as the configs did before the merge."""
    out = json.loads(json.dumps(raw))
    for st in out["stages"]:
        if st.get("train") is not None:
            st["train"] = {**out["train"], **st["train"]}
    return out


@pytest.mark.parametrize(
    "path",
    [DEFAULT_CONFIG, REPO / "configs" / "davidson-bert-base.yaml", REPO / "configs" / "davidson-mpnet-base.yaml"],
    ids=lambda p: p.name,
)
def test_leaving_run_train_keys_to_the_merge_keeps_fingerprints_and_saved_config(path):
    raw = yaml.safe_load(path.read_text())
    assert any(set(raw["train"]) - set(st.get("train") or raw["train"]) for st in raw["stages"])  # relies on it
    slim, full = load_config(None, raw), load_config(None, _spelled_out(raw))
    names = ["teacher", "tfidf-lr", *(s.name for s in slim.stages)]
    assert [slim.stage_fingerprint(n) for n in names] == [full.stage_fingerprint(n) for n in names]
    assert slim.to_yaml() == full.to_yaml()


# The BERT config has no committed run folder: these are its fingerprints as computed from the file before its
# stages left the run's train keys and the LoRA targets to the defaults (d5fcd68).
PINNED_BERT = {
    "teacher": "6965e53586396209",
    "tfidf-lr": "97d6091d0e415e00",
    "odd": "ac1ca1e96009e5cb",
    "even": "532ba25d66d59a71",
    "even-llrd": "65d49400d3c2a38f",
    "lora-teacher": "7d98f28b3cdb469b",
    "lora-student": "13319b61be47648d",
    "distill-lora": "c286860506dc940d",
}


def test_bert_base_config_keeps_its_fingerprints():
    cfg = load_config(REPO / "configs" / "davidson-bert-base.yaml")
    assert {n: cfg.stage_fingerprint(n) for n in PINNED_BERT} == PINNED_BERT


RUN_FOLDERS = sorted(p.parent for p in (REPO / "bench" / "results").glob(f"*/{CONFIG_FILE}"))


def _recorded(run_dir: Path) -> dict[str, str]:
    metas = (json.loads(p.read_text()) for p in sorted((run_dir / MODELS_DIR).glob(f"*/{META_FILE}")))
    return {m["name"]: m["fingerprint"] for m in metas}


@pytest.mark.parametrize("run_dir", RUN_FOLDERS, ids=lambda p: p.name)
def test_committed_run_folders_keep_their_fingerprints(run_dir):
    """Each model a committed run trained records its stage's fingerprint: the run's saved config.yaml must still
    give it, or every such folder would refuse its finished stages."""
    recorded = _recorded(run_dir)
    cfg = load_config(run_dir / CONFIG_FILE)
    assert len(recorded) > 2 and {n: cfg.stage_fingerprint(n) for n in recorded} == recorded


@pytest.mark.parametrize("run_dir", RUN_FOLDERS, ids=lambda p: p.name)
def test_shipped_configs_give_their_run_folders_fingerprints(run_dir):
    recorded = _recorded(run_dir)
    made_with = load_config(run_dir / CONFIG_FILE)
    shipped = DEFAULT_CONFIG if made_with.name == "davidson-minilm" else REPO / "configs" / f"{made_with.name}.yaml"
    # Consistency training was adopted in the default config after its first committed run was made.
    adopted = any(made_with.stage_train(st).perturb > 0 for st in made_with.stages)
    front = any(getattr(made_with.data.clean, k) for k in CleanConfig.FRONTEND)  # adopted later still
    if made_with.name == "davidson-minilm" and not adopted:
        cfg = load_config(None, _consistency_off())
    elif made_with.name == "davidson-minilm" and not front:
        cfg = load_config(None, _frontend_off())
    else:
        cfg = load_config(shipped)
    assert {n: cfg.stage_fingerprint(n) for n in recorded} == recorded


def test_every_config_model_and_field_is_documented():
    models = {
        obj
        for obj in vars(config_module).values()
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == config_module.__name__
    }
    documented = set(config_models())
    assert documented == models - {config_module._Strict} and Config in documented
    missing = [f"{m.__name__}.{k}" for m in documented for k, f in m.model_fields.items() if not f.description]
    assert not missing, f"fields without a description (the string under the field): {missing}"


def test_docs_config_md_is_generated_from_the_schema():
    committed = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    assert committed == render_config_docs(), f"docs/config.md differs from the schema: run `{REGENERATE}`"


def test_the_default_config_is_the_schema_defaults():
    """Config() is the default run: the packaged YAML sets every key to the schema's default, so that a key left
    out of any config, docs/config.md and the default run agree."""
    shipped = load_config(None).model_dump(mode="json")
    assert shipped == load_config(DEFAULT_CONFIG).model_dump(mode="json")
    defaults = Config().model_dump(mode="json")
    # The one exception: the front-end, on in the shipped config and off in the schema (a model recorded
    # without its keys was trained without it).
    front = {k: shipped["data"]["clean"].pop(k) for k in CleanConfig.FRONTEND}
    assert all(front.values())
    assert shipped == defaults
    assert [es.path for es in Config().eval_sets] == [str(DEFAULT_CONFIG.parent / "functional-suite.csv")]


def _run_config(monkeypatch, capsys, argv: list[str]) -> tuple[int, Config | None, str]:
    """What `toxdistill run ARGV` would train (the pipeline replaced by a catch), its exit code and stderr."""
    from toxdistill.cli import main
    from toxdistill.pipeline import plan

    seen: list[Config] = []
    monkeypatch.setattr(plan, "run", lambda cfg, **kw: seen.append(cfg))
    code = main(["run", *argv])
    return code, (seen[0] if seen else None), capsys.readouterr().err


def test_run_without_config_trains_the_same_run_from_any_folder(tmp_path, monkeypatch, capsys):
    # A folder with its own configs/davidson-minilm.yaml and functional-suite.csv: neither may be picked up.
    decoy = tmp_path / "decoy"
    (decoy / "configs").mkdir(parents=True)
    (decoy / "configs" / "davidson-minilm.yaml").write_text("name: decoy\nstages: []\n")
    (decoy / "configs" / "functional-suite.csv").write_text("text,label\nx,hateful\n")
    (decoy / "functional-suite.csv").write_text("text,label\nx,hateful\n")
    (tmp_path / "empty").mkdir()
    seen = []
    for folder in (tmp_path / "empty", decoy, REPO):
        monkeypatch.chdir(folder)
        code, cfg, err = _run_config(monkeypatch, capsys, [])
        assert code == 0 and cfg is not None, err
        seen.append(cfg.to_yaml())
        code, cfg, err = _run_config(monkeypatch, capsys, ["--config", str(DEFAULT_CONFIG)])
        assert code == 0 and cfg is not None, err
        assert cfg.eval_sets[0].path == str(DEFAULT_CONFIG.parent / "functional-suite.csv")
    assert seen[0] == seen[1] == seen[2] == load_config(DEFAULT_CONFIG).to_yaml()


def test_enable_and_disable_switch_stages_by_name(monkeypatch, capsys):
    code, cfg, err = _run_config(
        monkeypatch, capsys, ["--enable", "even-llrd", "--disable", "odd", "--disable", "even"]
    )
    assert code == 0, err
    enabled = {s.name: s.enabled for s in cfg.stages}
    assert enabled["even-llrd"] and not enabled["odd"] and not enabled["even"] and not enabled["lora-teacher"]
    # Switching a stage is not a change of its training: its fingerprint stays.
    assert cfg.stage_fingerprint("even-llrd") == load_config(None).stage_fingerprint("even-llrd")
    for argv, needle in (
        (["--enable", "nope"], "--enable nope: no stage of that name — the config's stages: odd, even, even-llrd,"),
        (["--disable", "odd", "--enable", "odd"], "both name stage 'odd'"),
    ):
        code, cfg, err = _run_config(monkeypatch, capsys, argv)
        assert code == 2 and cfg is None
        lines = err.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], err


def test_an_unknown_stage_name_lists_the_known_ones(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("stages: [{name: a, kind: distill, layers: odd}, {name: b, kind: distill, layers: even}]\n")
    with pytest.raises(ToxdistillError, match="no stage of that name") as e:
        load_config(f, disable=["c"])
    assert e.value.fix == "the config's stages: a, b"
    assert [s.enabled for s in load_config(f, disable=["b"]).stages] == [True, False]


def test_set_indexes_the_default_configs_stages_without_a_config():
    cfg = load_config(None, {"stages.2.enabled": True, "stages.0.train.lr": 3e-4})
    assert (cfg.stages[2].name, cfg.stages[2].enabled) == ("even-llrd", True)
    assert cfg.stage_train(cfg.stages[0]).lr == 3e-4 and cfg.stage_train(cfg.stages[0]).perturb == 0.5
