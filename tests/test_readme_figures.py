"""The README's short table and the full tables of docs/tables.md are the output of bench/study_table.py
(``toxdistill.evaluation.study``) on the committed run folders, verbatim.

So every figure in them traces to a `results.json`, `significance.json` or `bench.json` under bench/results/,
and a re-run that changes those files without the README (or the reverse) fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys

from toxdistill.evaluation import study

from conftest import REPO

STUDY = REPO / "bench" / "results" / "davidson-mpnet-base"
DEFAULT = REPO / "bench" / "results" / "davidson-minilm"


TABLES = REPO / "docs" / "tables.md"


def test_readme_summary_table_is_the_committed_runs():
    readme = (REPO / "README.md").read_text()
    summary = study.summary_table([DEFAULT, STUDY])
    assert summary.count("\n") >= 8 and "| davidson-minilm | teacher | 6 |" in summary
    assert summary in readme


def test_the_three_way_table_is_the_committed_runs():
    readme = TABLES.read_text()
    table = study.table([STUDY, DEFAULT])
    assert table.count("\n") >= 12  # the reference rows, the study's and the default run's
    assert table in readme


def test_the_study_speed_table_is_the_committed_bench():
    readme = TABLES.read_text()
    speed = study.speed_table(STUDY)
    assert "| teacher | 12 |" in speed  # the naive 12-layer teacher is the baseline row
    assert speed in readme


def test_the_documented_command_prints_those_tables(tmp_path):
    """`python bench/study_table.py STUDY DEFAULT -o FILE`, as docs/study.md gives it, prints and writes them."""
    out = tmp_path / "table.md"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, str(REPO / "bench" / "study_table.py"), str(STUDY), str(DEFAULT), "-o", str(out)]
    printed = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, cwd=tmp_path).stdout
    assert printed == out.read_text()
    assert study.table([STUDY, DEFAULT]) in printed and study.speed_table(STUDY) in printed
