"""The README's study tables are the output of bench/study_table.py on the committed run folders, verbatim.

So every figure in them traces to a `results.json`, `significance.json` or `bench.json` under bench/results/,
and a re-run that changes those files without the README (or the reverse) fails here.
"""

from __future__ import annotations

from conftest import REPO, load_bench_script

STUDY = REPO / "bench" / "results" / "davidson-mpnet-base"
DEFAULT = REPO / "bench" / "results" / "davidson-minilm"


def _study_table():
    return load_bench_script("study_table")


def test_readme_three_way_table_is_the_committed_runs():
    readme = (REPO / "README.md").read_text()
    table = _study_table().table([STUDY, DEFAULT])
    assert table.count("\n") >= 12  # the reference rows, the study's and the default run's
    assert table in readme


def test_readme_study_speed_table_is_the_committed_bench():
    readme = (REPO / "README.md").read_text()
    speed = _study_table().speed_table(STUDY)
    assert "| teacher | 12 |" in speed  # the naive 12-layer teacher is the baseline row
    assert speed in readme
