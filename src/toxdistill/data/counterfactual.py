"""Counterfactual augmentation after Dixon et al. (2018): harmless sentences about identity groups, labelled with the
data's harmless class, added to the training rows (``data.counterfactual``).

Why: in the Davidson tweets the names of identity groups occur mostly in hateful and offensive rows, so a model
learns the name itself as a sign of hate and flags "i am a proud gay man". Sentences that mention the same groups
in everyday, harmless ways break that link. The templates here are written for training only; the functional
suite (``scripts/functional_suite.py``) has its own, disjoint ones (tests/test_counterfactual.py checks that no
four-word sequence is shared), so the suite stays a test of what the augmentation teaches, not of memory.

The identity terms also tell whether a text mentions a group at all (``mentions_identity``), for per-group
scoring.
"""

from __future__ import annotations

import re

import numpy as np

from toxdistill.data.dataset import Dataset

# Per group: the plural ("{P}"), how a person names themselves ("{S}": "i'm {S}") and the adjective ("{A}").
GROUPS: dict[str, tuple[str, str, str]] = {
    "women": ("women", "a woman", "female"),
    "muslims": ("muslims", "a muslim", "muslim"),
    "immigrants": ("immigrants", "an immigrant", "immigrant"),
    "gay people": ("gay people", "gay", "gay"),
    "black people": ("black people", "black", "black"),
    "trans people": ("trans people", "trans", "trans"),
    "jews": ("jews", "jewish", "jewish"),
    "disabled people": ("disabled people", "disabled", "disabled"),
    "refugees": ("refugees", "a refugee", "refugee"),
    "asian people": ("asian people", "asian", "asian"),
    "mexicans": ("mexicans", "mexican", "mexican"),
    "lesbians": ("lesbians", "a lesbian", "lesbian"),
    "christians": ("christians", "a christian", "christian"),
    "arabs": ("arabs", "an arab", "arab"),
}

# Everyday sentences: news, neighbours, work, school, celebrations. No insult, no slur, no negated insult:
# the augmentation teaches that a group's name is not a sign of hate, and nothing about hateful wording.
TEMPLATES: tuple[str, ...] = (
    "{P} in our city organised a food drive for the homeless",
    "we had a lovely dinner with {P} from the community centre",
    "the museum opened an exhibit on the history of {P}",
    "{P} have contributed a great deal to science and art",
    "a documentary about {P} won an award last night",
    "our school welcomes {P} and everyone else",
    "{P} and their families came to the summer festival",
    "the survey asked {P} about their working conditions",
    "happy to see {P} represented in the new tv series",
    "the library hosts a monthly meetup for {P}",
    "several {P} spoke at the town hall meeting on tuesday",
    "thank you to all {P} who volunteered this weekend",
    "{P} are as varied as any other group of people",
    "i'm {S} and i work as a nurse",
    "being {S} is part of who i am",
    "hi everyone, i'm {S} and new to this forum",
    "my sister is {S} and she just graduated",
    "our new coach is {S} and really good at the job",
    "my {A} neighbour helped me fix my bike",
    "the {A} community here runs a great youth club",
    "she wrote a book about growing up {A}",
    "we celebrated with our {A} friends all weekend",
    "a {A} couple opened a bakery down the street",
    "the {A} students' society is hosting a quiz tonight",
)

# Sentences that fit one group only (its holidays, its events).
FIXED: tuple[str, ...] = (
    "muslims around the world are celebrating eid with their families",
    "ramadan mubarak to all my muslim friends",
    "jewish families light candles for hanukkah",
    "the jewish community centre on our street held an open day",
    "the pride march drew thousands of gay and lesbian people",
    "women's football is growing fast this season",
    "the women's choir sang at the wedding",
    "a disabled runner won the city marathon today",
    "black history month starts with a talk at the library",
    "the refugee family next door invited us for tea",
    "lunar new year celebrations filled the street with asian food stalls",
    "christians gathered at the church for the easter service",
    "mexican independence day is celebrated with music and food",
    "trans athletes shared their stories on the podcast",
    "the mosque opened its doors to muslim and non-muslim visitors on saturday",
)


def counterfactual_texts() -> list[str]:
    """Every template over every group, then the fixed sentences: the pool the augmentation draws from, in a fixed
    order."""
    out = [t.format(P=p, S=s, A=a) for t in TEMPLATES for p, s, a in GROUPS.values()]
    return out + list(FIXED)


def draw_counterfactuals(n: int, seed: int) -> list[str]:
    """``n`` sentences of the pool in a seeded order; past the pool's size it starts over in another order, so a
    large share repeats each sentence about equally often."""
    pool = counterfactual_texts()
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        out += [pool[i] for i in rng.permutation(len(pool))]
    return out[:n]


def with_counterfactuals(train: Dataset, share: float, label: int, seed: int) -> Dataset:
    """``train`` followed by ``round(share · len(train))`` counterfactual rows of class ``label``. Their ids are
    negative (-1, -2, ...), so they never clash with a source row's id; their votes, where the data has votes, all
    go to ``label``."""
    texts = draw_counterfactuals(int(round(share * len(train))), seed)
    n = len(texts)
    votes = None
    if train.votes is not None:
        extra = np.zeros((n, train.votes.shape[1]), dtype=train.votes.dtype)
        extra[:, label] = 1
        votes = np.concatenate([train.votes, extra])
    return Dataset(
        ids=np.concatenate([train.ids, -np.arange(1, n + 1, dtype=np.asarray(train.ids).dtype)]),
        texts=list(train.texts) + texts,
        labels=np.concatenate([train.labels, np.full(n, label, dtype=np.asarray(train.labels).dtype)]),
        label_names=train.label_names,
        source_sha256=train.source_sha256,
        votes=votes,
    )


# Words that name a group (plural, singular, adjective): a text with any of them mentions an identity group.
# Word-bounded, case-blind. Slurs are left out on purpose: the question is whether a group's plain name alone
# moves the model.
IDENTITY_TERMS: tuple[str, ...] = tuple(
    sorted(
        {w for p, s, a in GROUPS.values() for w in (p.split()[0], s.split()[-1], a)}
        | {"woman", "girls", "girl", "lady", "ladies", "islam", "jew", "gays", "lesbian", "homosexual", "queer"}
        | {"blacks", "african", "asians", "chinese", "mexican", "latino", "latinos", "arab", "muslim", "christian"}
    )
)
_IDENTITY = re.compile(r"\b(?:" + "|".join(map(re.escape, IDENTITY_TERMS)) + r")\b", re.IGNORECASE)


def mentions_identity(text: str) -> bool:
    """Whether ``text`` names an identity group (``IDENTITY_TERMS``, whole words, any case)."""
    return _IDENTITY.search(text) is not None
