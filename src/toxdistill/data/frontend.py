"""The front-end: undo the disguised spellings people use to slip a word past a filter ("h a t e", "h.a.t.e",
zero-width characters, Cyrillic look-alikes, "sh1t", "fuuuuck"), before the tokenizer sees the text.

Each step is one function of a text, switched on by its own ``data.clean`` key (``dataset.FRONTEND_STEPS``), so
it runs wherever ``clean_text`` does: training, evaluation, check, predict, serving and the exports.

Standard library only, and no import from toxdistill: the model card's plain-Python snippet prints this
module's source as it is (``model_card.frontend_source``), so that a user with transformers alone cleans
exactly as toxdistill does. The confusables table is data (``confusables.json`` beside this file, generated from Unicode's
confusables by ``scripts/make_confusables.py``); a model folder carries a copy that the snippet reads.
"""

import json
import re
import unicodedata
from pathlib import Path

CONFUSABLES_FILE = "confusables.json"

# Characters that render as nothing: zero-width space, non-joiner and joiner, word joiner and the invisible
# operators, the byte-order mark, the soft hyphen, the combining grapheme joiner, the Mongolian vowel separator,
# the Hangul fillers and the bidirectional marks. Inside a word they split it for the tokenizer and not for the
# reader. Emoji sequences joined by U+200D fall apart into their emoji, which a tokenizer sees alike.
ZERO_WIDTH = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)

# A word for the confusables fold: letters and digits of any script.
WORD = re.compile(r"[^\W_]+")

# Three or more single letters, each alone between separators: "h a t e", "h.a.t.e", "h - a - t - e". A letter
# counts as single when no letter or digit touches it. A separator is up to three of space, . - _ * and the
# middle dot ("h . a . t . e"), the same one all along the run: "e.g. U.S.A." is two runs, not "egUSA".
SPELLED = re.compile(r"(?<![^\W_])[^\W\d_]([\s.\-_*\u00b7]{1,3})[^\W\d_](?![^\W_])(?:\1[^\W\d_](?![^\W_]))+")
_SPELLED_SEP = re.compile(r"[\s.\-_*\u00b7]+")
# The words that are one letter long in English: a spaced-out run that starts with one of them, and still has
# three letters after it, keeps it as a word ("a b i t c h" -> "a bitch", "I h a t e" -> "I hate").
ONE_LETTER_WORDS = ("a", "A", "I")

# A letter written three or more times in a row, in a word with other letters too; two stay ("fuuuuck" -> "fuuck"):
# English words double letters, never triple them, and two keep "good" apart from "god". A word of one letter
# alone ("xxx", "www", "zzz") is left as it is: it is a word, not a stretched one.
REPEATED = re.compile(r"([^\W\d_])\1{2,}")
LETTERS = re.compile(r"[^\W\d_]+")

# Leetspeak: digits and symbols standing for letters, in words that mix them with letters.
LEET_DIGITS = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "a", "9": "g"}
# Digits are read as letters only in a word where a group of them sits between letters ("sh1t", "1d10t", "h3ll0"):
# a number beside a word ("Part3", "A1", "4ever", "5am", "3rd", "12pck", "covid19") is left as it is. The one
# exception is "8" for "ate" at the end of a word ("h8", "l8", "gr8").
INNER_DIGITS = re.compile(r"[^\W\d_]\d+[^\W\d_]")
# Symbols count only with a letter or digit after them (a trailing "!" is punctuation) and with one before them
# or at the start of the word ("$tupid", but not the last "!" of "nice!!!!cant"); those that open or join text
# ("@" of a mention or an e-mail, "|", "+", "(") only between two.
LEET_SYMBOLS_LEADING = {"$": "s", "!": "i"}
LEET_SYMBOLS_INNER = {"@": "a", "|": "l", "+": "t", "(": "c"}
LEET_RUN = re.compile(r"(?:[^\W_]|[@$!|+(])+")
# A letter beside a digit or a symbol (an "@" before a letter is a mention): a text without one has nothing to
# decode, and most texts are passed at the cost of this one search.
LEET_HINT = re.compile(r"[^\W\d_][\d@$!|+(]|[\d$!|+(][^\W\d_]")


def nfkc(text):
    """Unicode NFKC: full-width, mathematical and circled letters, ligatures and superscripts become plain ones."""
    return unicodedata.normalize("NFKC", text)


def strip_zero_width(text):
    return ZERO_WIDTH.sub("", text)


def load_confusables(path):
    """The fold table, character -> Latin letter, from a ``confusables.json`` (``"fold"``)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["fold"]


def fold_confusables(text, table):
    """Letters of other scripts that look like Latin ones ("іdіоt" with Cyrillic і and о) become the Latin letter,
    in words that also hold a Latin letter. A word written in one script ("пора") is left alone."""
    if text.isascii():  # most texts: nothing to fold, and this costs next to nothing
        return text

    def fold(m):
        word = m.group(0)
        if not any(c in table for c in word) or not any("a" <= c.lower() <= "z" for c in word):
            return word
        return "".join(table.get(c, c) for c in word)

    return WORD.sub(fold, text)


def join_spelled(text):
    """Runs of three or more single letters become one word: "h a t e", "h.a.t.e" and "h-a-t-e" -> "hate"."""

    def join(m):
        run = m.group(0)
        letters = _SPELLED_SEP.split(run)
        if run[0] in ONE_LETTER_WORDS and run[1].isspace() and len(letters) >= 4:
            return run[0] + " " + "".join(letters[1:])
        return "".join(letters)

    return SPELLED.sub(join, text)


def squeeze_repeats(text):
    if not REPEATED.search(text):
        return text

    def squeeze(m):
        word = m.group(0)
        return word if len(set(word.lower())) == 1 else REPEATED.sub(lambda r: r.group(0)[:2], word)

    return LETTERS.sub(squeeze, text)


def decode_leet(text):
    """Digits and symbols inside words that mix them with letters become letters: "sh1t" -> "shit", "b!tch" ->
    "bitch", "$tupid" -> "stupid", "h8" -> "hate". Numbers ("2017", "$5", "5am", "Part3") are left alone."""
    return LEET_RUN.sub(_decode_run, text) if LEET_HINT.search(text) else text


def _decode_run(m):
    run = m.group(0)
    if run.isalpha() or run.startswith("@") or not any(c.isalpha() for c in run):
        return run
    digits = INNER_DIGITS.search(run) is not None
    out = []
    for i, c in enumerate(run):
        before = i > 0 and run[i - 1].isalnum()
        after = i + 1 < len(run) and run[i + 1].isalnum()
        if c == "8" and before and not after and run[i - 1].isalpha():
            out.append("ate")
        elif c in LEET_DIGITS and digits:
            out.append(LEET_DIGITS[c])
        elif c in LEET_SYMBOLS_LEADING and after and (before or i == 0):
            out.append(LEET_SYMBOLS_LEADING[c])
        elif c in LEET_SYMBOLS_INNER and after and before:
            out.append(LEET_SYMBOLS_INNER[c])
        else:
            out.append(c)
    return "".join(out)
