"""The tables of the README and docs/ are the output of ``toxdistill.evaluation.study`` on the committed run
folders under bench/results/, verbatim (bench/docs_tables.py lists them and refreshes them).

So every figure in them traces to a ``frontier.json``, ``best/selection.json``, ``results.json``,
``significance.json`` or ``bench.json``, and a re-run that changes those files without the pages (or the
reverse) fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from toxdistill.evaluation import study

from conftest import REPO, load_bench_script

DOCS = load_bench_script("docs_tables")


@pytest.mark.parametrize(("page", "tag"), [(page, tag) for page, tag, _ in DOCS.BLOCKS])
def test_each_generated_table_is_what_the_committed_files_make(page, tag):
    make = next(m for p, t, m in DOCS.BLOCKS if (p, t) == (page, tag))
    text = (REPO / page).read_text()
    assert f"<!-- {tag} -->\n{make()}\n<!-- /{tag} -->" in text, f"run python bench/docs_tables.py ({page}: {tag})"


def test_the_readme_shows_the_shipped_model_and_every_engine_is_in_the_docs():
    readme = (REPO / "README.md").read_text()
    shipped = study.read_frontier(DOCS.FRONTIER)[1]["selection"]["model"]
    assert f"| **{shipped}** (shipped: best/) |" in readme
    engines = (REPO / "docs" / "benchmarks.md").read_text()
    block = engines.split("<!-- ENGINES -->")[1]
    header = next(line for line in block.splitlines() if line.startswith("| model |"))
    for target in ("onnx-fp32", "onnx-int8", "onnx-int8-fused", "openvino-fp32", "openvino-bf16", "openvino-int8"):
        assert f" {target} |" in header


def test_a_stale_table_is_found(tmp_path):
    page, tag, make = DOCS.BLOCKS[0]
    (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
    for p, _t, _m in DOCS.BLOCKS:
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_text((REPO / p).read_text())
    assert DOCS.stale(tmp_path) == []
    row = next(line for line in make().splitlines() if line.startswith("| **"))  # the shipped model's row
    (tmp_path / page).write_text((REPO / page).read_text().replace(row, row.replace("×", "x", 1)))
    assert DOCS.stale(tmp_path) == [f"{page}: {tag}"]


def test_the_documented_command_prints_the_readme_table(tmp_path):
    """`python bench/study_table.py --frontier RUN -o FILE`, as the README gives it, prints and writes it."""
    out = tmp_path / "table.md"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, str(REPO / "bench" / "study_table.py"), "--frontier", str(DOCS.FRONTIER), "-o", str(out)]
    printed = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, cwd=tmp_path).stdout
    assert printed == out.read_text() == study.frontier_block(DOCS.FRONTIER) + "\n"
