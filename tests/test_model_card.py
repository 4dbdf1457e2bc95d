"""The model card's plain-Python snippet cleans texts exactly as toxdistill does (``data.dataset.clean_text``):
its ``clean`` is rendered from the cleaner's own patterns, for every combination of the switches."""

from __future__ import annotations

import itertools

import pytest

from toxdistill.config import CleanConfig
from toxdistill.data.dataset import clean_text
from toxdistill.pipeline.model_card import CardFacts, plain_snippet

# What the cleaner handles, and its edges: entities (double-escaped too), URLs of both kinds, mentions, a
# leading RT (with and without colon, after spaces), runs of mixed whitespace, emoji and other scripts.
AWKWARD = [
    "RT @someone: so &amp; so &#128514; http://t.co/abc end",
    "  RT   @a_b_c:   look www.example.com/x?y=1&z=2  ",
    "rt not a retweet; RTS neither; RT",
    "&amp;#8220;double-escaped&amp;#8221; &lt;b&gt;bold&lt;/b&gt; &nbsp;&unknown;",
    "https://a.b/c,https://d.e @x@y email@example.com @ alone",
    "tabs\tand\nnewlines\r\n\u00a0no-break\u2003em-space",
    "emoji 👩\u200d👩\u200d👧 ❤️ and العربية @مستخدم and 日本語 http://例え.jp/パス",
    "",
    "   ",
    "RT:",
]
SWITCHES = ("unescape_html", "normalize_mentions", "normalize_urls", "strip_rt", "collapse_whitespace")


def _facts(clean: dict) -> CardFacts:
    meta = {"clean": clean, "export": {"file": "model.onnx", "engine": "onnx"}, "max_length": 64}
    return CardFacts(
        run_name="r", folder="best", run_folder="runs/r", meta=meta, row={}, selection={}, bench={},
        teacher_row=None, teacher_model="t", data_source="file", data_name=None, label_names=["a", "b"],
        focus_class="a", split_sizes={}, test_support=[], seed=0, ci={}, n_boot=0,
    )  # fmt: skip


def _snippet_clean(clean: dict):
    """The ``clean`` function as the card prints it, executed: the snippet's lines from ``def clean`` to the
    first blank line, beside the snippet's own imports."""
    lines = plain_snippet(_facts(clean)).splitlines()
    start = lines.index("def clean(text):")
    end = lines.index("", start)
    scope: dict = {}
    exec("\n".join(["import html", "import re", *lines[start:end]]), scope)  # noqa: S102 - our own snippet
    return scope["clean"]


@pytest.mark.parametrize("on", list(itertools.product([False, True], repeat=len(SWITCHES))))
def test_the_snippets_clean_is_clean_text(on):
    cfg = CleanConfig(**dict(zip(SWITCHES, on)))
    clean = _snippet_clean(cfg.model_dump())
    assert [clean(t) for t in AWKWARD] == [clean_text(t, cfg) for t in AWKWARD]


def test_the_default_cleaning_changes_the_awkward_texts():
    """The comparison above is not vacuous: the default steps really rewrite these texts."""
    clean = _snippet_clean(CleanConfig().model_dump())
    assert clean(AWKWARD[0]) == "RT @user: so & so 😂 http end"
    assert clean(AWKWARD[1]) == "RT @user: look http"
    assert sum(clean(t) != t for t in AWKWARD) >= 7


def test_a_cnn_student_is_described_as_one():
    from toxdistill.pipeline.model_card import _what

    f = _facts(CleanConfig().model_dump())
    f.meta.update(kind="student", arch="cnn", layers=None)
    f.teacher_row = {"layers": 6}
    text = _what(f)
    assert "without attention" in text and "0-layer" not in text and "`t`" in text


def test_a_multi_label_card_lists_each_labels_scores_and_its_own_tolerance():
    from toxdistill.pipeline.model_card import _metrics, _rule

    f = _facts(CleanConfig().model_dump())
    f.meta.update(
        task="multi_label",
        metrics={
            "roc_auc_per_label": {"a": 0.81, "b": 0.97},
            "pr_auc_per_label": {"a": 0.55, "b": 0.99},
            "tuned": {"f1_per_class": {"a": 0.6, "b": 0.96}},
        },
    )
    f.row = {"val": {"pr_auc_macro": 0.771}, "test": {"pr_auc_macro": 0.79}}
    f.teacher_row = {"val": {"pr_auc_macro": 0.783}, "test": {"pr_auc_macro": 0.801}}
    f.split_sizes = {"test": 10}
    table = _metrics(f)
    assert "| a | 0.810 | 0.550 | 0.600 |" in table and "| b | 0.970 | 0.990 | 0.960 |" in table
    assert "| test | 0.790 | 0.801 |" in table
    f.selection = {"criteria": {"max_drop_f1_weighted": 0.01, "max_drop_pr_auc_macro": 0.01}}
    rule = _rule(f)
    assert "1.0 points of macro PR AUC" in rule and "weighted F1" not in rule
