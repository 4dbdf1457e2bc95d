"""Write src/toxdistill/configs/functional-suite.csv: toxdistill's own functional tests for hate speech.

Written from scratch for this project, after the method of functional testing for hate-speech models
(Röttger et al., ACL 2021: one template per function a model should get right, filled in over identity
groups). No published suite's cases were copied, fetched or looked at, and nothing is tuned on this file:
it measures how the models generalise to text nobody trained them for.

Each row: ``text``, ``label`` (``hateful`` or ``non-hateful``), ``functionality`` (the function the template
tests), ``target`` (the identity group, or ``none``). Deterministic: the same file every time.

    python scripts/functional_suite.py            # rewrites src/toxdistill/configs/functional-suite.csv
    python scripts/functional_suite.py --check    # exit 1 if the committed file differs
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "toxdistill" / "configs" / "functional-suite.csv"

# Identity groups as a plural noun phrase, and as the adjective/noun a person would use of themselves.
GROUPS = {
    "women": ("women", "a woman"),
    "muslims": ("muslims", "a muslim"),
    "immigrants": ("immigrants", "an immigrant"),
    "gay people": ("gay people", "gay"),
    "black people": ("black people", "black"),
    "trans people": ("trans people", "trans"),
    "jews": ("jews", "jewish"),
    "disabled people": ("disabled people", "disabled"),
    "refugees": ("refugees", "a refugee"),
    "asian people": ("asian people", "asian"),
    "mexicans": ("mexicans", "mexican"),
    "lesbians": ("lesbians", "a lesbian"),
}

HATEFUL = "hateful"
NON_HATEFUL = "non-hateful"

# {G}: the group's plural phrase. Each list is one functionality.
GROUP_TEMPLATES: dict[str, tuple[str, list[str]]] = {
    "derogation": (
        HATEFUL,
        [
            "{G} are disgusting and should be ashamed of existing",
            "all {G} are worthless",
            "{G} are a disease on this country",
            "i can't stand {G}, they are filth",
            "{G} ruin everything they touch",
            "{G} are too dumb to be trusted with anything",
            "everything wrong with this place is because of {G}",
        ],
    ),
    "dehumanisation": (
        HATEFUL,
        [
            "{G} are animals, nothing more",
            "{G} are vermin and everyone knows it",
            "{G} are parasites living off the rest of us",
            "{G} are cockroaches that breed in the gutter",
            "{G} are subhuman trash",
        ],
    ),
    "threat": (
        HATEFUL,
        [
            "i am going to hurt the next {G} i see",
            "{G} should be wiped out",
            "someone needs to get rid of {G} for good",
            "we should drive every last one of {G} out with force",
        ],
    ),
    "hate_expressed": (
        HATEFUL,
        [
            "i hate {G} so much",
            "i despise {G} with every fibre of my being",
            "{G} make me sick to my stomach",
            "nothing makes me angrier than {G}",
        ],
    ),
    "hate_as_question": (
        HATEFUL,
        [
            "why are {G} so stupid and useless?",
            "why do {G} always ruin everything?",
        ],
    ),
    "spelling_variant": (
        HATEFUL,
        [
            "i h8 {G}",
            "{G} are d i s g u s t i n g",
            "{G} are wrthless trash",
            "{G} are animaaaals",
            "all {G} are w0rthl3ss",
            "{G} are sc*m",
            "{G} r vermin",
            "{G} are p a r a s i t e s",
            "i hat3 {G}",
            "{G} are tr4sh",
            "{G} are disgussting",
            "{G} = filth",
        ],
    ),
    "negated_hate": (
        NON_HATEFUL,
        [
            "i don't hate {G} at all",
            "{G} are not disgusting, they are people like anyone else",
            "no one should ever say {G} are worthless",
            "i would never call {G} stupid",
        ],
    ),
    "counter_speech": (
        NON_HATEFUL,
        [
            "saying {G} are vermin is disgusting and you should stop",
            "if you think {G} are worthless, the problem is you",
            "calling {G} animals is hateful and wrong",
            "stop spreading lies that {G} are dangerous",
            "there is nothing wrong with {G}, your hatred is the problem",
            "i will always stand up for {G} against bigots",
            "posting that {G} are subhuman got you banned, good",
            "hating {G} says more about you than about them",
        ],
    ),
    "quoted_hate": (
        NON_HATEFUL,
        [
            'he told me "{G} are filth" and i reported him',
            'the sign said "{G} should be wiped out" and the crowd booed it',
        ],
    ),
    "positive_identity": (
        NON_HATEFUL,
        [
            "{G} are wonderful and i love my friends",
            "so proud of all the {G} in my town",
            "{G} deserve respect and equal rights",
            "{G} make our world a better place",
            "i'm grateful for the {G} who raised me",
            "shout out to the amazing {G} on my team",
            "{G} are brilliant, kind and funny",
        ],
    ),
    "neutral_identity": (
        NON_HATEFUL,
        [
            "there are many {G} in my neighbourhood",
            "i read an article about {G} today",
            "my new colleagues include several {G}",
            "{G} live in every part of the country",
            "the news covered a story about {G}",
            "a group of {G} sat at the next table",
            "the report counts how many {G} vote",
        ],
    ),
}

# {S}: how a person describes themselves ("a woman", "gay").
SELF_TEMPLATES: dict[str, tuple[str, list[str]]] = {
    "self_identity": (
        NON_HATEFUL,
        [
            "i am {S} and i am proud of it",
            "as {S}, i just want to live my life in peace",
            "proud to be {S}, today and every day",
            "my whole family knows i am {S}",
            "people are surprised when they learn i am {S}",
            "yes, i am {S}. ask me anything",
        ],
    ),
}

# Group-free cases: words that are slurs in some mouths and plain words in others, profanity with no target,
# and abuse aimed at things or people for what they did, not for who they are.
FIXED: dict[str, tuple[str, list[str]]] = {
    "homonym_slur": (
        NON_HATEFUL,
        [
            "my dog is a champion breeder, she is the best bitch at the show",
            "i bought a new hoe for the vegetable garden",
            "going outside for a fag before the train leaves",
            "the beavers built a dike across the stream",
            "grandma's recipe for faggots and peas is the best",
        ],
    ),
    "reclaimed_slur": (
        NON_HATEFUL,
        [
            "queer and proud, see you all at the parade",
            "my queer friends are the best people i know",
        ],
    ),
    "profanity": (
        NON_HATEFUL,
        [
            "this fucking weather is shit",
            "fuck yes we won the game",
            "holy shit that concert was amazing",
            "damn this coffee is good",
        ],
    ),
    "abuse_not_identity": (
        NON_HATEFUL,
        [
            "mondays are the worst, i hate them",
            "the referee tonight was a useless idiot",
            "people who don't return shopping carts are annoying",
            "my phone is a worthless piece of junk",
        ],
    ),
}


def rows() -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for func, (label, templates) in GROUP_TEMPLATES.items():
        for group, (plural, _) in GROUPS.items():
            out += [
                {"text": t.format(G=plural), "label": label, "functionality": func, "target": group} for t in templates
            ]
    for func, (label, templates) in SELF_TEMPLATES.items():
        for group, (_, self_word) in GROUPS.items():
            out += [
                {"text": t.format(S=self_word), "label": label, "functionality": func, "target": group}
                for t in templates
            ]
    for func, (label, texts) in FIXED.items():
        out += [{"text": t, "label": label, "functionality": func, "target": "none"} for t in texts]
    return out


def render() -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["text", "label", "functionality", "target"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows())
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    a = ap.parse_args()
    text = render()
    if a.check:
        same = OUT.is_file() and OUT.read_text(encoding="utf-8") == text
        if not same:
            print(f"{OUT} is out of date: run python scripts/functional_suite.py", file=sys.stderr)
        return 0 if same else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({text.count(chr(10)) - 1} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
