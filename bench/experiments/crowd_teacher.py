"""A crowd as the teacher: Davidson's per-tweet annotator counts written as a scores file (``teacher.scores``),
p_<class> = the class's votes / all votes, for the run in bench/results/crowd-teacher-avx512-epyc.

    python bench/experiments/crowd_teacher.py /work/shared/data/davidson/labeled_data.csv -o ~/toxdistill-data/crowd-scores.csv

The file holds the data's tweets, so it is written outside the repository (never commit data rows). Its text
column is the data's own (tweet), raw: the run cleans it as it cleans the data, and matches rows by text.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

# Davidson's vote columns in the order of data.label_names (hate speech, offensive, neither).
VOTES = {"hate_speech": "p_hate_speech", "offensive_language": "p_offensive", "neither": "p_neither"}


def crowd_scores(data: Path) -> pd.DataFrame:
    """Each tweet with its crowd's vote shares; a tweet whose counts do not add up to ``count`` is left out."""
    df = pd.read_csv(data)
    counts = df[list(VOTES)].astype(float)
    total = counts.sum(axis=1)
    ok = (total > 0) & (total == df["count"])
    shares = counts[ok].div(total[ok], axis=0).rename(columns=VOTES)
    return pd.concat([df.loc[ok, ["tweet"]], shares], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="Davidson's labeled_data.csv")
    ap.add_argument("-o", "--output", type=Path, required=True, help="the scores file to write (outside the repo)")
    args = ap.parse_args()
    out = crowd_scores(args.data)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.output, index=False)
    print(f"wrote {len(out):,} tweets' crowd scores to {args.output}")


if __name__ == "__main__":
    main()
