"""Counterfactual augmentation (data.counterfactual): the training templates render, share no wording with the
functional suite, add rows of the harmless class to the training rows alone, reach the teacher cache, and change
nothing while off."""

import importlib.util
import re

import numpy as np
import pytest

from toxdistill.config import Config, DataConfig, load_config
from toxdistill.data import counterfactual as cf
from toxdistill.data.split import Split, make_or_load_split
from toxdistill.errors import ToxdistillError
from toxdistill.training.teacher_cache import TeacherCache

from conftest import LABELS, REPO, tiny_bert, tiny_dataset


def _suite_script():
    spec = importlib.util.spec_from_file_location("functional_suite", REPO / "scripts" / "functional_suite.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _grams(template: str, n: int = 4) -> set[tuple[str, ...]]:
    """Word n-grams of a template, every group placeholder one and the same word."""
    words = re.findall(r"[a-z0-9'*=<>]+", re.sub(r"\{[A-Z]\}", " <group> ", template.lower()))
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_the_templates_render_into_distinct_sentences_that_each_name_a_group():
    pool = cf.counterfactual_texts()
    assert len(pool) == len(cf.TEMPLATES) * len(cf.GROUPS) + len(cf.FIXED)
    assert len(set(pool)) == len(pool) and not any("{" in t or "}" in t for t in pool)
    assert all(cf.mentions_identity(t) for t in pool)
    assert not cf.mentions_identity("mondays are the worst") and cf.mentions_identity("I am a proud GAY man")
    assert not cf.mentions_identity("the blackbird sang")  # whole words only


def test_the_training_templates_share_no_wording_with_the_functional_suite():
    suite = _suite_script()
    suite_templates = [t for d in (suite.GROUP_TEMPLATES, suite.SELF_TEMPLATES) for _, ts in d.values() for t in ts]
    suite_templates += [t for _, ts in suite.FIXED.values() for t in ts]
    ours = [*cf.TEMPLATES, *cf.FIXED]
    shared = set().union(*map(_grams, ours)) & set().union(*map(_grams, suite_templates))
    assert not shared, f"four-word sequences in both the training templates and the suite: {sorted(shared)[:5]}"
    suite_texts = {r["text"] for r in suite.rows()}
    assert len(suite_texts) > 800 and not suite_texts & set(cf.counterfactual_texts())


def test_the_overlap_check_can_fail():
    assert _grams("{G} are wonderful and i love my friends") & _grams("so {P} are wonderful and i love it")


def test_the_switch_adds_neither_rows_to_training_alone(tmp_path):
    ds = tiny_dataset(200)
    off = make_or_load_split(ds, tmp_path / "a.json", DataConfig(), 42)
    on = make_or_load_split(ds, tmp_path / "b.json", DataConfig(counterfactual=0.25), 42)
    n = len(off.train)
    assert len(on.train) == n + round(0.25 * n)
    assert on.train.texts[:n] == off.train.texts and np.array_equal(on.train.ids[:n], off.train.ids)
    extra = slice(n, None)
    assert set(on.train.labels[extra]) == {LABELS.index("neither")} and (on.train.ids[extra] < 0).all()
    assert set(on.train.texts[extra]) <= set(cf.counterfactual_texts())
    assert on.val.texts == off.val.texts and on.test.texts == off.test.texts
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()  # split.json: source ids only
    again = make_or_load_split(ds, tmp_path / "b.json", DataConfig(counterfactual=0.25), 42)  # the saved split
    assert again.train.texts == on.train.texts and again.fingerprint() == on.fingerprint() != off.fingerprint()


def test_a_large_share_repeats_the_pool_evenly_and_votes_follow_the_label():
    n = 2 * len(cf.counterfactual_texts()) + 3
    drawn = cf.draw_counterfactuals(n, 0)
    counts = np.unique(drawn, return_counts=True)[1]
    assert len(drawn) == n and set(counts) <= {2, 3}
    ds = tiny_dataset(10)
    ds.votes = np.full((10, 3), 1 / 3)
    out = cf.with_counterfactuals(ds, 0.5, 1, 0)
    assert out.votes is not None and out.votes.shape == (15, 3) and (out.votes[10:] == [0, 1, 0]).all()


def test_the_teacher_cache_covers_the_added_rows(tmp_path, tokenizer):
    ds = tiny_dataset(40)
    train = cf.with_counterfactuals(ds, 0.5, 2, 0)
    plain, augmented = (Split(t, ds, ds).fingerprint() for t in (ds, train))
    teacher = tiny_bert(n_layers=2)
    teacher.save_pretrained(tmp_path / "teacher")

    def cache(split_fp):
        return TeacherCache(tmp_path / "cache", tmp_path / "teacher", split_fp, 32, lambda: (teacher, tokenizer))

    logits, cls = cache(augmented).outputs(train)
    assert logits.shape == (60, 3) and cls.shape[0] == 60
    assert cache(augmented).key() != cache(plain).key()  # a cache of the plain rows is never read for these


def test_off_by_default_changes_no_fingerprint_and_on_changes_every_one():
    default = Config()
    assert default.data.counterfactual == 0 and load_config().data.counterfactual == 0
    renamed = Config.model_validate({"data": {"counterfactual_class": "offensive"}})  # off: the class is unused
    assert renamed.fingerprint() == default.fingerprint()
    assert renamed.stage_fingerprint("tfidf-lr") == default.stage_fingerprint("tfidf-lr")
    on = load_config(overrides={"data.counterfactual": 0.1})
    assert on.fingerprint() != default.fingerprint()
    assert on.stage_fingerprint("even") != default.stage_fingerprint("even")
    assert on.stage_fingerprint("tfidf-lr") != default.stage_fingerprint("tfidf-lr")


def test_an_unknown_counterfactual_class_is_refused():
    with pytest.raises(ToxdistillError, match="counterfactual_class"):
        load_config(overrides={"data.counterfactual": 0.1, "data.counterfactual_class": "harmless"})


def test_each_model_folder_records_the_rows_it_trained_on_only_where_the_switch_is_on():
    from types import SimpleNamespace

    from toxdistill.pipeline.stages import _counterfactual_record

    ds = tiny_dataset(40)
    on = SimpleNamespace(
        cfg=load_config(overrides={"data.counterfactual": 0.25}),
        split=Split(cf.with_counterfactuals(ds, 0.25, 2, 0), ds, ds),
    )
    assert _counterfactual_record(on) == {"counterfactual": {"share": 0.25, "class": "neither", "rows": 10}}
    assert _counterfactual_record(SimpleNamespace(cfg=Config(), split=Split(ds, ds, ds))) == {}
