"""Label-preserving perturbations: the spellings people use to slip hate past a filter, made on purpose.

One generator for the robustness report (``toxdistill check``), consistency distillation and the
teacher-labelled augmentation of deeper students. Every kind keeps the meaning, and so the label, of the text:
"h a t e", "1d10t", a dropped letter, words run together, an emoji more.

Two families. The training family (``CHAR_KINDS``, ``TOKEN_KINDS``) is what consistency training draws from.
The held-out family (``HELDOUT_KINDS``) is written apart from it, with its own edits: other separators inside a
word ("h.a.t.e"), zero-width characters, random words instead of the label-bearing ones, several edits stacked
on one word, several kinds in one text. No default stage trains on it, so a check on it measures whether
robustness transfers to spellings a model never saw, not whether it learnt this module's habits.

It is deterministic: the output depends only on (text, kind, seed, copy), through a sha256 of them, never on
the row's position or the process, so a cache of perturbed texts stays valid and two machines agree.

It hits the words that carry the label, not "the". With ``weights`` (for each class, a word's weight
towards it: e.g. the TF-IDF baseline's coefficients) it picks the row's words weighed most towards the row's
class; without them, or where no word of the row has a weight, any word of 4 or more letters, at random (the
held-out ``untargeted`` kind always picks at random).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    held_out: bool = False  # of the held-out family: never drawn by consistency training by default
    targeted: bool = True  # aimed at the label-bearing words; False: random words of 4+ letters


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


# ------------------------------------------------------------------ the held-out family's edits
# Written apart from the training family's: other substitutions (symbols, not only digits), one single edit at a
# time that can be stacked, and edits that keep to letters, so that a stack of them never undoes itself.
_SYMBOL = {"a": "@", "i": "!", "s": "$", "o": "0", "e": "3", "l": "|", "t": "+", "c": "("}
_SEPARATORS = (".", "-", "_")
# Invisible wherever the text is shown. The uncased BERT normalizer drops them (Unicode category Cf); byte-level
# and sentencepiece tokenizers keep them, and a TF-IDF tokenizer splits the word at them.
_ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\ufeff")
# Links the cleaning left raw (data.clean.normalize_urls off): a disguised link is not a disguised word.
_URL = re.compile(r"://|^\W*(https?:|www\.)", re.IGNORECASE)


def _between_letters(w: str) -> list[int]:
    return [i for i in range(1, len(w)) if w[i - 1].isalpha() and w[i].isalpha()]


def _symbols(w: str, rng: random.Random) -> str:
    spots = [i for i, c in enumerate(w) if c.lower() in _SYMBOL]
    if not spots:
        return w
    keep = set(rng.sample(spots, min(len(spots), rng.choice((1, 2)))))
    return "".join(_SYMBOL[c.lower()] if i in keep else c for i, c in enumerate(w))


def _gap(w: str, rng: random.Random) -> str:
    """One space inside the word: "stu pid" (or "$tu pid": a symbol of an earlier edit counts as a letter)."""
    spots = [i for i in range(1, len(w)) if not w[i - 1].isspace() and not w[i].isspace()]
    if not spots:
        return w
    i = rng.choice(spots)
    return w[:i] + " " + w[i:]


def _drop(w: str, rng: random.Random) -> str:
    """One inner letter out, a vowel where there is one ("stupd", "idot"). Never a letter beside its own double,
    so that a later doubling cannot put the word back as it was."""
    inner = [i for i in range(1, len(w) - 1) if w[i].isalpha() and w[i] != w[i - 1] and w[i] != w[i + 1]]
    pool = [i for i in inner if w[i].lower() in "aeiou"] or inner
    if not pool:
        return w
    i = rng.choice(pool)
    return w[:i] + w[i + 1 :]


def _double(w: str, rng: random.Random) -> str:
    letters = [i for i, c in enumerate(w) if c.isalpha()]
    if not letters:
        return w
    i = rng.choice(letters)
    return w[: i + 1] + w[i] + w[i + 1 :]


def _separate(w: str, rng: random.Random) -> str:
    return rng.choice(_SEPARATORS).join(w)


def _zero_width(w: str, rng: random.Random) -> str:
    spots = _between_letters(w)
    for i in sorted(rng.sample(spots, min(len(spots), rng.choice((1, 2)))), reverse=True):
        w = w[:i] + rng.choice(_ZERO_WIDTH) + w[i:]
    return w


# The edits that stack, in the order they are applied: a drop before a doubling (see _drop), letters replaced
# before a space splits the word.
_STACKABLE = (_drop, _double, _symbols, _gap)
# Every edit the held-out family has, for a text that mixes them.
_PALETTE = (_symbols, _gap, _drop, _double, _separate, _zero_width)


def _first_change(w: str, ops: Sequence[Callable[[str, random.Random], str]], rng: random.Random) -> str:
    """The first of ``ops`` (in the order given) that changes ``w``: a word without a letter _SYMBOL knows
    still gets an edit."""
    for op in ops:
        out = op(w, rng)
        if out != w:
            return out
    return w


def _one_edit(w: str, rng: random.Random) -> str:
    """One of leetspeak-like symbols, an inner space, a dropped or a doubled letter."""
    return _first_change(w, rng.sample(_STACKABLE, len(_STACKABLE)), rng)


def _stacked(w: str, rng: random.Random) -> str:
    """Two or three different edits on the same word: "stupid" → "$tupd", "idiot" → "!d iot"."""
    usable = [j for j, op in enumerate(_STACKABLE) if op is not _symbols or any(c.lower() in _SYMBOL for c in w)]
    chosen = set(rng.sample(usable, min(len(usable), rng.choice((2, 3)))))
    for j, op in enumerate(_STACKABLE):
        if j in chosen:
            w = op(w, rng)
    return w


def _mixed(tokens: list[str], targets: list[int], rng: random.Random) -> None:
    """Another edit for each target word, and one random word more with yet another: several kinds in one text."""
    words = list(targets)
    others = [i for i, tok in enumerate(tokens) if i not in words and not tok.isspace() and _held_out_eligible(tok)]
    if others:
        words.append(rng.choice(others))
    ops = rng.sample(_PALETTE, len(_PALETTE))
    for t in words:
        lead, core, trail = _CORE.match(tokens[t]).groups()  # type: ignore[union-attr]
        for j, op in enumerate(ops):
            edited = op(core, rng)
            if edited != core:
                tokens[t] = lead + edited + trail
                del ops[j]  # each word its own kind while there are kinds left
                break
        if not ops:
            ops = rng.sample(_PALETTE, len(_PALETTE))


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
        # The held-out family (see the module's docstring).
        Kind("separators", "char", "hate → h.a.t.e, h-a-t-e or h_a_t_e", word_op=_separate, held_out=True),
        Kind(
            "zero-width",
            "char",
            "hate → ha[U+200B]te (also U+200C, U+200D, U+FEFF)",
            word_op=_zero_width,
            held_out=True,
        ),
        Kind(
            "untargeted",
            "char",
            "random words of 4+ letters, one edit each: people → peo ple, those → th0se",
            word_op=_one_edit,
            held_out=True,
            targeted=False,
        ),
        Kind(
            "multi-edit", "char", "stupid → $tupd, idiot → !d iot (2–3 edits a word)", word_op=_stacked, held_out=True
        ),
        Kind(
            "mixed",
            "char",
            "you stupid idiot people → you $tupid i.d.i.o.t peopple (one edit a word, each another)",
            text_op=_mixed,
            held_out=True,
        ),
    )
}
# The training family: what consistency training draws from (train.perturb_kinds: null is CHAR_KINDS).
CHAR_KINDS = tuple(k for k, v in KINDS.items() if v.level == "char" and not v.held_out)
TOKEN_KINDS = tuple(k for k, v in KINDS.items() if v.level == "token" and not v.held_out)
HELDOUT_KINDS = tuple(k for k, v in KINDS.items() if v.held_out)
# Names for groups of kinds, wherever a list of kinds is given (``toxdistill check --kinds held-out``).
KIND_GROUPS = {"char": CHAR_KINDS, "token": TOKEN_KINDS, "held-out": HELDOUT_KINDS}


def check_kinds(kinds: Sequence[str], where: str = "perturbation kind") -> list[str]:
    """The kinds as given, a group's name (``KIND_GROUPS``) standing for its kinds, each once; or one line
    naming the unknown one and every valid kind."""
    unknown = [k for k in kinds if k not in KINDS and k not in KIND_GROUPS]
    if unknown:
        raise ToxdistillError(
            f"unknown {where} {unknown[0]!r}",
            f"valid kinds: {', '.join(KINDS)}; or a group: {', '.join(KIND_GROUPS)}",
        )
    return list(dict.fromkeys(x for k in kinds for x in KIND_GROUPS.get(k, (k,))))


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


def _held_out_eligible(token: str) -> bool:
    # Stricter than _eligible about raw links; _eligible stays as it is, so that the training family's texts
    # (and every cache of them) do not change.
    return _eligible(token) and not _URL.search(token)


def target_words(
    tokens: list[str],
    rng: random.Random,
    weights: Mapping[str, float] | None = None,
    n: int = WORDS_PER_TEXT,
    eligible: Callable[[str], bool] = _eligible,
) -> list[int]:
    """Indices of the tokens to disguise: the ``n`` eligible words weighed most towards the row's class
    (ties and words without a weight broken at random), or ``n`` random eligible words without weights."""
    cand = [i for i, tok in enumerate(tokens) if not tok.isspace() and eligible(tok)]
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
    eligible = _held_out_eligible if k.held_out else _eligible
    targets = target_words(tokens, rng, weights if k.targeted else None, n_words, eligible)
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


def aim_classes(labels: Iterable) -> list[int]:
    """The class per row whose words a perturbation aims at: the class id, or a multi-label row's first label on
    (0 where none is: no class words are known for a multi-label run, which trains no TF-IDF floor)."""
    return [next((k for k, v in enumerate(y) if v), 0) if hasattr(y, "__len__") else int(y) for y in labels]
