"""The perturbation generator: deterministic, aimed at the words that carry the label, and label-preserving
(each kind's change can be undone to give the original words back, or is a one-letter typo)."""

from __future__ import annotations

import re
import unicodedata

import pytest

from toxdistill.data.perturb import (
    _HOMOGLYPH,
    _LEET,
    CHAR_KINDS,
    HELDOUT_KINDS,
    KINDS,
    TOKEN_KINDS,
    check_kinds,
    perturb,
    perturb_texts,
)
from toxdistill.errors import ToxdistillError

TEXT = "@user you are a stupid idiot and i hate you http"
_UNLEET = {v: k for k, v in _LEET.items() if k not in "lb"}  # 1 is i or l, 8 is b: undo to the first
_UNGLYPH = {v: k for k, v in _HOMOGLYPH.items()}


def words(text: str) -> list[str]:
    return text.split()


def changed_words(a: str, b: str) -> list[tuple[str, str]]:
    return [(x, y) for x, y in zip(words(a), words(b)) if x != y]


@pytest.mark.parametrize("kind", list(KINDS))
def test_same_inputs_give_the_same_output_and_the_seed_matters(kind):
    assert perturb(TEXT, kind, seed=3) == perturb(TEXT, kind, seed=3)
    many = {perturb(f"{TEXT} number {i}", kind, seed=s) for s in range(6) for i in range(3)}
    assert len(many) > 1


def test_the_output_does_not_depend_on_the_position_of_the_row():
    texts = [TEXT, "what a lovely sunny morning", TEXT]
    out = perturb_texts(texts, "leet", seed=1)
    assert out[0] == out[2] == perturb(TEXT, "leet", seed=1)


def test_copies_are_independent_perturbations():
    assert len({perturb(TEXT + " again and again", "swap", copy=c) for c in range(8)}) > 1


@pytest.mark.parametrize("kind", [k for k in CHAR_KINDS if k != "join"] + ["hashtag", *HELDOUT_KINDS])
def test_short_words_and_placeholders_are_never_touched(kind):
    out = perturb(TEXT, kind, seed=0)
    assert out.startswith("@user you are a ") and out.endswith(" you http")


def test_the_weighted_words_are_the_ones_hit():
    out = perturb(TEXT, "hashtag", weights={"idiot": 2.0, "hate": 1.0})
    assert changed_words(TEXT, out) == [("idiot", "#idiot"), ("hate", "#hate")]
    one = perturb(TEXT, "hashtag", weights={"stupid": 0.5}, n_words=1)
    assert changed_words(TEXT, one) == [("stupid", "#stupid")]


def test_rows_use_the_weights_of_their_own_class():
    w = [{"idiot": 1.0}, {"stupid": 1.0}]
    a, b = perturb_texts([TEXT, TEXT], "hashtag", labels=[0, 1], class_weights=w, n_words=1)
    assert "#idiot" in a and "#stupid" not in a
    assert "#stupid" in b and "#idiot" not in b


def test_a_text_without_eligible_words_comes_back_unchanged():
    for kind in CHAR_KINDS + HELDOUT_KINDS:
        assert perturb("i am ok", kind) == "i am ok"


def _undo(kind: str, word: str) -> str:
    if kind == "leet":
        return "".join(_UNLEET.get(c, c) for c in word)
    if kind == "spaces":
        return word.replace(" ", "")
    if kind == "repeat":
        return re.sub(r"(.)\1+", r"\1", word)
    if kind == "homoglyph":
        return "".join(_UNGLYPH.get(c, c) for c in word)
    if kind == "accent":
        return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
    if kind == "hashtag":
        return word.lstrip("#")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["leet", "repeat", "homoglyph", "accent", "hashtag"])
def test_undoing_the_change_gives_the_original_words(kind):
    text = "those idiots hate everyone here"  # no doubled letters, so 'repeat' can be undone exactly
    out = perturb(text, kind, seed=5)
    assert out != text
    assert [_undo(kind, w) for w in words(out)] == words(text)


def test_spaces_inside_a_word_can_be_read_back():
    out = perturb(TEXT, "spaces", weights={"idiot": 1.0}, n_words=1)
    assert "i d i o t" in out and _undo("spaces", out) == TEXT.replace(" ", "")


def test_join_removes_only_the_spaces_around_the_target_words():
    out = perturb(TEXT, "join", weights={"idiot": 1.0}, n_words=1)
    assert out == "@user you are a stupididiotand i hate you http"


@pytest.mark.parametrize("kind", ["swap", "delete"])
def test_typos_change_one_target_word_by_one_letter(kind):
    out = perturb(TEXT, kind, weights={"stupid": 1.0}, n_words=1)
    [(before, after)] = changed_words(TEXT, out)
    assert before == "stupid"
    assert after[0] == "s" and after[-1] == "d"  # first and last letters stay
    if kind == "swap":
        assert sorted(after) == sorted(before) and sum(a != b for a, b in zip(after, before)) == 2
    else:
        assert len(after) == len(before) - 1 and any(before[:i] + before[i + 1 :] == after for i in range(6))


def test_token_kinds_keep_every_word():
    for kind in TOKEN_KINDS:
        out = perturb(TEXT, kind, seed=2)
        kept = re.sub(r"[^a-z@ ]", " ", out.lower()).split()
        assert all(w in kept for w in words(TEXT)), kind


def test_unknown_kinds_get_the_list_of_valid_kinds():
    assert check_kinds(["leet", "emoji"]) == ["leet", "emoji"]
    with pytest.raises(ToxdistillError) as e:
        check_kinds(["leet", "leetspeak"])
    assert "'leetspeak'" in str(e.value) and all(k in str(e.value) for k in KINDS)


def test_a_group_name_stands_for_its_kinds_each_once():
    assert check_kinds(["mixed", "held-out", "leet"]) == ["mixed", *[k for k in HELDOUT_KINDS if k != "mixed"], "leet"]
    assert check_kinds(["char"]) == list(CHAR_KINDS)


def test_the_config_checks_the_same_kinds_the_generator_has():
    from toxdistill.files import CHAR_PERTURBATIONS, HELDOUT_PERTURBATIONS, PERTURBATIONS, TOKEN_PERTURBATIONS

    assert tuple(k for k in KINDS if k not in HELDOUT_KINDS) == PERTURBATIONS
    assert CHAR_KINDS == CHAR_PERTURBATIONS and TOKEN_KINDS == TOKEN_PERTURBATIONS
    # Consistency training's default (the training family's char kinds) never draws a held-out kind.
    assert not set(HELDOUT_KINDS) & set(CHAR_PERTURBATIONS + TOKEN_PERTURBATIONS)
    assert HELDOUT_KINDS == HELDOUT_PERTURBATIONS
