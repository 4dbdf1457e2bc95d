"""``toxdistill check RUN``: robustness to evasive spelling, and fidelity to the teacher, on the test split."""

from __future__ import annotations

import argparse

from toxdistill.cli import options
from toxdistill.config import RobustnessConfig
from toxdistill.console import stderr_say
from toxdistill.data.perturb import HELDOUT_KINDS, KIND_GROUPS, KINDS, WORDS_PER_TEXT, check_kinds
from toxdistill.evaluation.robustness import format_robustness
from toxdistill.runs import run_folders_locked

NAME = "check"
HELP = "robustness and fidelity: every model under each perturbation of the test split"
NEEDS_TRAIN = True
DESCRIPTION = """\
Score every model of RUN on its test split, clean and under each label-preserving perturbation (leetspeak,
swapped or deleted letters, spaces inside words, words run together, repeated letters, homoglyphs, accents,
casing, punctuation, emoji, hashtags, @user/URL noise) and of the held-out family, written apart from the
generator that consistency training draws from (other separators inside words, zero-width characters, random
words, several edits a word, several kinds a text). Prints, per model and perturbation, macro F1, the focus
class's F1 and recall, their drop from clean text, the flip rate, and each student's top-1 agreement with the
teacher and mean total-variation distance; then, per model, the drop on the kinds it was trained on against
the kinds held out from it. Writes RUN/robustness.json and RUN/robustness.png.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder written by 'toxdistill run' (e.g. runs/davidson-minilm)")
    p.add_argument(
        "--kinds",
        default=None,
        metavar="A,B",
        help=f"perturbation kinds, or groups of them ({', '.join(KIND_GROUPS)}; held-out: "
        f"{','.join(HELDOUT_KINDS)}) (default: all: {','.join(KINDS)})",
    )
    p.add_argument("--models", default=None, metavar="A,B", help="only these models (the teacher is always scored)")
    p.add_argument("--seed", type=int, default=0, help="perturbation seed (default: 0)")
    p.add_argument(
        "--words", type=int, default=WORDS_PER_TEXT, help=f"words disguised per text (default: {WORDS_PER_TEXT})"
    )
    options.add_threads(p)
    options.add_batch_size(p)
    options.add_data(p)
    p.add_argument(
        "--split",
        default="test",
        choices=("test", "val"),
        help="test (the report's) or val (to decide a change on; writes robustness-val.json)",
    )
    p.add_argument("--seeds", action="store_true", help="also score the seed repeats of 'run --seeds N'")
    p.add_argument("--no-plot", action="store_true", help="skip robustness.png")


def main(a: argparse.Namespace) -> int:
    from toxdistill.pipeline.check import check_run  # heavy: torch, transformers and the models' code

    options.at_least(a, threads=1, batch_size=1, words=1)
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()] if a.kinds else None
    settings = RobustnessConfig(seed=a.seed, n_words=a.words)
    with run_folders_locked(a.run):  # it writes robustness*.json and plots into the run folder
        result = check_run(
            a.run,
            settings,
            plot=not a.no_plot,
            say=stderr_say(),
            kinds=check_kinds(kinds) if kinds else None,
            **options.forward(a, "models", "data", "threads", "batch_size", "split", "seeds"),
        )
    print(format_robustness(result))
    return 0
