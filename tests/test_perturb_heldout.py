"""The held-out family of perturbations: each kind changes a text as its name says, deterministically, never
touches links or @user, and stays apart from what consistency training draws from."""

from __future__ import annotations

import re
from itertools import combinations, product

import pytest

from toxdistill.data.perturb import _SYMBOL, HELDOUT_KINDS, perturb

ZERO_WIDTH = "\u200b\u200c\u200d\ufeff"
# One eligible word only ("moron"): whatever a word-level kind does, it does to that word.
ONE = "you are a moron"


def tail(out: str, prefix: str = "you are a ") -> str:
    assert out.startswith(prefix)
    return out[len(prefix) :]


def edits(a: str, b: str) -> set[str]:
    """The single edits of the held-out family that turn word ``a`` into ``b`` (empty: none does)."""
    found = set()
    if len(a) == len(b):
        diff = [(x, y) for x, y in zip(a, b) if x != y]
        if diff and all(_SYMBOL.get(x.lower()) == y for x, y in diff):
            found.add("symbols")
    if len(b) == len(a) + 1:
        for i in range(1, len(b)):
            if b[:i] + b[i + 1 :] == a:
                if b[i] == " " and 0 < i < len(b) - 1:
                    found.add("gap")
                if b[i] == b[i - 1]:
                    found.add("double")
    if len(b) == len(a) - 1 and any(a[:i] + a[i + 1 :] == b for i in range(1, len(a) - 1)):
        found.add("drop")
    if len(b) == 2 * len(a) - 1 and any(b == sep.join(a) for sep in ".-_"):
        found.add("separate")
    if b != a and b.translate({ord(c): None for c in ZERO_WIDTH}) == a:
        found.add("zero-width")
    return found


def test_separators_join_every_letter_with_a_dot_a_dash_or_an_underscore():
    seps = set()
    for seed in range(12):
        word = tail(perturb(ONE, "separators", seed=seed))
        m = re.fullmatch(r"m([.\-_])o\1r\1o\1n", word)
        assert m, word
        seps.add(m.group(1))
    assert seps == {".", "-", "_"}


def test_zero_width_hides_invisible_characters_between_letters():
    for seed in range(8):
        word = tail(perturb(ONE, "zero-width", seed=seed))
        assert word != "moron" and word.translate({ord(c): None for c in ZERO_WIDTH}) == "moron"
        assert word[0] == "m" and word[-1] == "n"  # inside the word, not at its edges
        assert 1 <= sum(c in ZERO_WIDTH for c in word) <= 2


def aligned(words: list[str], out: str) -> list[tuple[str, str]]:
    """Each of ``words`` with what became of it in ``out``: itself or one edit of it (an inner space splits a
    word in two, so every way of cutting ``out`` into as many pieces is tried)."""
    parts = out.split(" ")
    for inner in combinations(range(1, len(parts)), len(words) - 1):
        cut = (0, *inner, len(parts))
        pieces = [" ".join(parts[i:j]) for i, j in zip(cut, cut[1:])]
        if all(a == b or edits(a, b) for a, b in zip(words, pieces)):
            return list(zip(words, pieces))
    raise AssertionError(f"not one edit a word: {out!r}")


def test_untargeted_picks_random_words_not_the_weighted_ones_and_edits_each_once():
    text = "those idiots hate every single person here"
    hit = set()
    for seed in range(12):
        out = perturb(text, "untargeted", seed=seed, weights={"idiots": 5.0}, n_words=1)
        changed = [(a, b) for a, b in aligned(text.split(), out) if a != b]
        assert len(changed) == 1, out
        a, b = changed[0]
        assert edits(a, b) & {"symbols", "gap", "drop", "double"}, (a, b)
        hit.add(a)
    assert len(hit) > 2  # the weighted word is no magnet


def test_multi_edit_stacks_two_or_three_edits_on_one_word():
    for seed in range(12):
        word = tail(perturb(ONE, "multi-edit", seed=seed))
        assert word != "moron"
        assert not edits("moron", word), word  # no single edit gets there
        letters = re.sub(r"[^a-z]", "", word.replace("0", "o"))
        assert abs(len(letters) - len("moron")) <= 2  # still the word: a letter out or in, at most twice


def test_mixed_gives_each_word_its_own_edit_and_one_word_more():
    text = "stupid idiots hate"
    for seed in range(10):
        out = perturb(text, "mixed", seed=seed, weights={"stupid": 1.0, "idiots": 1.0}, n_words=2)
        kinds = [edits(a, b) for a, b in aligned(text.split(), out)]
        assert all(kinds), out  # the 2 weighted words and 1 more, each edited
        assert any(len(set(pick)) == 3 for pick in product(*kinds)), (out, kinds)  # each by another kind


@pytest.mark.parametrize("kind", HELDOUT_KINDS)
def test_links_mentions_and_placeholders_are_left_alone(kind):
    text = "@user RT http://t.co/AbCdEf those idiots www.example.com hate http"
    for seed in range(4):
        out = perturb(text, kind, seed=seed)
        assert out != text
        assert out.startswith("@user RT http://t.co/AbCdEf ") and out.endswith(" http")
        assert " www.example.com " in out


@pytest.mark.parametrize("kind", HELDOUT_KINDS)
def test_deterministic_given_the_seed_and_copy(kind):
    text = "those idiots hate everyone in this whole town"
    assert perturb(text, kind, seed=9, copy=2) == perturb(text, kind, seed=9, copy=2)
    assert len({perturb(text, kind, seed=9, copy=c) for c in range(6)}) > 1
