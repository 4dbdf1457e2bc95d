"""Label-preserving perturbations: the spellings people use to slip hate past a filter, made on purpose.

One generator for the robustness report (``toxdistill check``), consistency distillation and the
teacher-labelled augmentation of deeper students. Every kind keeps the meaning, and so the label, of the text:
"h a t e", "1d10t", a dropped letter, words run together, an emoji more.

It is deterministic: the output depends only on (text, kind, seed, copy), through a sha256 of them, never on
the row's position or the process, so a cache of perturbed texts stays valid and two machines agree.

It hits the words that carry the label, not "the". With ``weights`` (for each class, a word's weight
towards it: e.g. the TF-IDF baseline's coefficients) it picks the row's words weighed most towards the row's
class; without them, or where no word of the row has a weight, any word of 4 or more letters, at random.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from toxdistill.errors import ToxdistillError

# Words a perturbation may touch: 4+ letters. Shorter ones ("the", "is", "a") carry little of the label,
# and the placeholders the cleaning leaves ("@user", "http") are not words anyone would disguise.
MIN_LETTERS = 4
# Words disguised per text: one or two words is what evasion looks like; more turns the text to noise.
WORDS_PER_TEXT = 2
_PLACEHOLDERS = {"user", "http", "https", "url", "rt"}

_LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7", "l": "1", "g": "9", "b": "8"}
# Cyrillic and Greek letters that render like Latin ones: a reader sees the word, a tokenizer does not.
_HOMOGLYPH = {
    "a": "а",
    "c": "с",
    "e": "е",
    "i": "і",
    "o": "о",
    "p": "р",
    "x": "х",
    "y": "у",
    "k": "к",
    "h": "һ",
    "s": "ѕ",
    "j": "ј",
}
_ACCENT = {"a": "á", "e": "é", "i": "í", "o": "ó", "u": "ü", "n": "ñ", "c": "ç", "y": "ý"}
_EMOJI = ("😂", "🤣", "😡", "🙄", "💯", "🔥", "😤", "👏")
_PUNCT = ("!!!", "...", "?!", "!!", "!?!", "..")
_TOKEN = re.compile(r"\S+|\s+")
_CORE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


@dataclass(frozen=True)
class Kind:
    name: str
    level: str  # "char" or "token"
    example: str  # what it does to one word or text, for the docs and --help
    word_op: Callable[[str, random.Random], str] | None = None  # the change to one target word's letters
    text_op: Callable[[list[str], list[int], random.Random], None] | None = None  # in place on the tokens


# ------------------------------------------------------------------ word-level operations
def _leet(w: str, rng: random.Random) -> str:
    spots = [i for i, c in enumerate(w) if c.lower() in _LEET]
    if not spots:
        return w
    keep = set(rng.sample(spots, max(1, (len(spots) * 2 + 2) // 3)))
    return "".join(_LEET[c.lower()] if i in keep else c for i, c in enumerate(w))


def _swap(w: str, rng: random.Random) -> str:
    # Neighbours inside the word: the first and last letters stay, as in most real typos.
    spots = [i for i in range(1, len(w) - 2) if w[i] != w[i + 1]]
    if not spots:
        return w
    i = rng.choice(spots)
    return w[:i] + w[i + 1] + w[i] + w[i + 2 :]


def _delete(w: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(w) - 1)
    return w[:i] + w[i + 1 :]


def _spaced(w: str, rng: random.Random) -> str:
    return " ".join(w)


def _repeat(w: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(w))
    return w[:i] + w[i] * rng.choice((2, 3, 4)) + w[i:]


def _mapped(table: Mapping[str, str]) -> Callable[[str, random.Random], str]:
    def op(w: str, rng: random.Random) -> str:
        spots = [i for i, c in enumerate(w) if c.lower() in table]
        if not spots:
            return w
        keep = set(rng.sample(spots, max(1, len(spots) // 2)))
        return "".join(table[c.lower()] if i in keep else c for i, c in enumerate(w))

    return op


def _hashtag(w: str, rng: random.Random) -> str:
    return "#" + w


# ------------------------------------------------------------------ text-level operations
def _join(tokens: list[str], targets: list[int], rng: random.Random) -> None:
    """Remove the spaces on both sides of each target word: "you stupid idiot" -> "youstupididiot"."""
    for t in targets:
        for j in (t - 1, t + 1):
            if 0 <= j < len(tokens) and tokens[j].isspace():
                tokens[j] = ""


def _upper(tokens: list[str], targets: list[int], rng: random.Random) -> None:
    for j, tok in enumerate(tokens):
        tokens[j] = tok.upper()


def _punct(tokens: list[str], targets: list[int], rng: random.Random) -> None:
    for t in targets:
        tokens[t] += rng.choice(_PUNCT)


def _emoji(tokens: list[str], targets: list[int], rng: random.Random) -> None:
    for t in targets:
        tokens[t] += " " + rng.choice(_EMOJI)
    tokens.append(" " + "".join(rng.choice(_EMOJI) for _ in range(rng.choice((1, 2, 3)))))


def _noise(tokens: list[str], targets: list[int], rng: random.Random) -> None:
    # What the cleaning leaves of mentions and links ("@user", "http"): the training data is full of both.
    tokens.insert(0, "@user " * rng.choice((1, 2)))
    tokens.append(" http")


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("leet", "char", "idiot → 1d10t", word_op=_leet),
        Kind("swap", "char", "stupid → sutpid", word_op=_swap),
        Kind("delete", "char", "stupid → stpid", word_op=_delete),
        Kind("spaces", "char", "hate → h a t e", word_op=_spaced),
        Kind("join", "char", "you stupid idiot → youstupididiot", text_op=_join),
        Kind("repeat", "char", "stupid → stuuupid", word_op=_repeat),
        Kind("homoglyph", "char", "idiot → іdіоt (Cyrillic і, о)", word_op=_mapped(_HOMOGLYPH)),
        Kind("accent", "char", "idiot → ídiót", word_op=_mapped(_ACCENT)),
        Kind("case", "token", "you idiot → YOU IDIOT", text_op=_upper),
        Kind("punct", "token", "idiot → idiot!!!", text_op=_punct),
        Kind("emoji", "token", "idiot → idiot 😂 … 🔥", text_op=_emoji),
        Kind("hashtag", "token", "idiot → #idiot", word_op=_hashtag),
        Kind("noise", "token", "text → @user text http", text_op=_noise),
    )
}
CHAR_KINDS = tuple(k for k, v in KINDS.items() if v.level == "char")
TOKEN_KINDS = tuple(k for k, v in KINDS.items() if v.level == "token")


def check_kinds(kinds: Sequence[str], where: str = "perturbation kind") -> list[str]:
    """The kinds as given, or one line naming the unknown one and every valid kind."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ToxdistillError(f"unknown {where} {unknown[0]!r}", f"valid kinds: {', '.join(KINDS)}")
    return list(kinds)


def _rng(text: str, kind: str, seed: int, copy: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x1f{kind}\x1f{copy}\x1f{text}".encode("utf-8", "surrogatepass")).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def _eligible(token: str) -> bool:
    core = _CORE.match(token).group(2)  # type: ignore[union-attr]
    return (
        not token.startswith("@")
        and sum(c.isalpha() for c in core) >= MIN_LETTERS
        and core.lower() not in _PLACEHOLDERS
    )


def target_words(
    tokens: list[str], rng: random.Random, weights: Mapping[str, float] | None = None, n: int = WORDS_PER_TEXT
) -> list[int]:
    """Indices of the tokens to disguise: the ``n`` eligible words weighed most towards the row's class
    (ties and words without a weight broken at random), or ``n`` random eligible words without weights."""
    cand = [i for i, tok in enumerate(tokens) if not tok.isspace() and _eligible(tok)]
    if not cand:
        return []
    order = rng.sample(cand, len(cand))
    if weights:
        scored = [(weights.get(_CORE.match(tokens[i]).group(2).lower(), 0.0), i) for i in order]  # type: ignore[union-attr]
        if any(w > 0 for w, _ in scored):
            ranked = [i for w, i in sorted(scored, key=lambda x: -x[0]) if w > 0]
            order = ranked + [i for i in order if i not in ranked]
    return sorted(order[:n])


def perturb(
    text: str,
    kind: str,
    seed: int = 0,
    copy: int = 0,
    weights: Mapping[str, float] | None = None,
    n_words: int = WORDS_PER_TEXT,
) -> str:
    """``text`` with perturbation ``kind`` applied to its target words (see ``target_words``).

    ``copy`` numbers independent perturbed copies of one text (augmentation makes K of them). A text with no
    eligible word comes back unchanged by the word-level kinds."""
    k = KINDS[kind]
    rng = _rng(text, kind, seed, copy)
    tokens = _TOKEN.findall(text)
    targets = target_words(tokens, rng, weights, n_words)
    if k.word_op is not None:
        for t in targets:
            lead, core, trail = _CORE.match(tokens[t]).groups()  # type: ignore[union-attr]
            tokens[t] = lead + k.word_op(core, rng) + trail
    if k.text_op is not None:
        k.text_op(tokens, targets, rng)
    return "".join(tokens)


def perturb_texts(
    texts: Sequence[str],
    kind: str,
    seed: int = 0,
    copy: int = 0,
    labels: Sequence[int] | None = None,
    class_weights: Sequence[Mapping[str, float]] | None = None,
    n_words: int = WORDS_PER_TEXT,
) -> list[str]:
    """Every text perturbed with ``kind``; with ``labels`` and per-class ``class_weights``, each row's target
    words are those weighed most towards its own class."""
    if class_weights is not None and labels is None:
        raise ValueError("class_weights needs the rows' labels")
    out = []
    for i, t in enumerate(texts):
        w = class_weights[int(labels[i])] if class_weights is not None and labels is not None else None
        out.append(perturb(t, kind, seed, copy, w, n_words))
    return out
