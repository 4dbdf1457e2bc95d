"""Refresh the generated tables of the README and docs/ from the committed run folders: ``python bench/docs_tables.py``.

Each table sits between ``<!-- TAG -->`` and ``<!-- /TAG -->`` in its page; BLOCKS names the page, the tag and
what makes it (``toxdistill.evaluation.study`` on ``bench/results/``). ``--check`` writes nothing and exits 1
when a page's table differs from a fresh one (tests/test_readme_figures.py runs the same comparison).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from toxdistill.evaluation import study

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
FRONTIER = RESULTS / "davidson-minilm-default-avx512-epyc"  # the newest run of the default config
ENGINES = RESULTS / "engines-xeon"  # every engine per model of the default config, one bench
STUDY = RESULTS / "davidson-mpnet-base"  # the 12 → 6 study
MINILM = RESULTS / "davidson-minilm"  # the default config's earlier run, the study's same-split partner

BLOCKS: list[tuple[str, str, Callable[[], str]]] = [
    ("README.md", "FRONTIER", lambda: study.frontier_block(FRONTIER)),
    ("docs/results.md", "FRONTIER", lambda: study.frontier_block(FRONTIER)),
    ("docs/frontier.md", "FRONTIER", lambda: study.frontier_block(FRONTIER)),
    ("docs/benchmarks.md", "ENGINES", lambda: study.speed_caption_table(ENGINES)),
    ("docs/tables.md", "FRONTIER", lambda: study.frontier_block(FRONTIER)),
    ("docs/tables.md", "ENGINES", lambda: study.speed_caption_table(ENGINES)),
    ("docs/tables.md", "STUDY", lambda: study.table([STUDY, MINILM])),
    ("docs/tables.md", "STUDY-SPEED", lambda: study.speed_caption_table(STUDY)),
]


def stale(root: Path = REPO) -> list[str]:
    """The ``page: TAG`` of every block whose table is not what the committed files make now."""
    out = []
    for page, tag, make in BLOCKS:
        text = (root / page).read_text()
        if study.fill_block(text, tag, make()) != text:
            out.append(f"{page}: {tag}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/docs_tables.py", description=__doc__)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table is stale")
    a = ap.parse_args(argv)
    if a.check:
        bad = stale()
        print("\n".join(bad) or "every table matches the committed results")
        return 1 if bad else 0
    for page, tag, make in BLOCKS:
        path = REPO / page
        path.write_text(study.fill_block(path.read_text(), tag, make()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
