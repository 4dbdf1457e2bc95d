"""The transfer set (``data.unlabelled``): texts without labels, which the teacher labels once and the students
learn from with the distillation terms only.

The files are read by the one reader (``data.readers``), streamed in chunks, any format ``predict`` takes, and
cleaned as the labelled rows are (``data.clean``, the front-end included). A text equal to a validation or test
text after cleaning is dropped: the students would otherwise learn the teacher's answer on text they are then
scored on. So is one equal to a training text (it has a label already) or to an earlier unlabelled one.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from toxdistill.config import DataConfig
from toxdistill.data.dataset import clean_text
from toxdistill.data.readers import detect_format, open_input, parquet_shards, read_chunks, read_parquet
from toxdistill.errors import ToxdistillError

WHAT = "unlabelled file"


@dataclass(frozen=True)
class TransferTexts:
    """The transfer set's cleaned texts, in file order, and what was left out."""

    texts: list[str]
    key: str
    """sha256 of the texts as kept: the teacher's outputs on them are cached under it."""
    overlap: int
    """Texts dropped as equal to a validation or test text."""
    repeated: int
    """Texts dropped as equal to a training text or to an earlier unlabelled one; empty ones are not counted."""


def _key(texts: list[str]) -> str:
    """sha256 of the texts, in order: the transfer cache's key for them."""
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()[:16]


def _chunks(path: str, text_col: str | None) -> Iterator[list[str]]:
    shards = parquet_shards(path, WHAT)
    if shards is not None:
        for texts, _ in read_parquet(shards, text_col, what=WHAT):
            yield texts
        return
    with contextlib.closing(open_input(path, WHAT)) as src:
        fmt = detect_format(src, "auto", text_col)
        for texts, _ in read_chunks(src, fmt, text_col if fmt != "txt" else None):
            yield texts


def read_unlabelled(cfg: DataConfig, train: Iterable[str], held_out: Iterable[str]) -> TransferTexts:
    """``cfg.unlabelled``'s texts, cleaned by ``cfg.clean``; ``train`` and ``held_out`` are the split's cleaned
    training texts and its validation and test texts."""
    evaluation = set(held_out)
    seen = set(train)
    kept: list[str] = []
    overlap = repeated = 0
    for path in cfg.unlabelled:
        for chunk in _chunks(path, cfg.unlabelled_text_col):
            for raw in chunk:
                text = clean_text(raw, cfg.clean) if isinstance(raw, str) else ""
                if not text:
                    continue
                if text in evaluation:
                    overlap += 1
                elif text in seen:
                    repeated += 1
                else:
                    seen.add(text)
                    kept.append(text)
    if not kept:
        raise ToxdistillError(
            f"data.unlabelled holds no text that is not already in the labelled data "
            f"({overlap} in validation or test, {repeated} repeated)",
            "give files of other texts, or remove data.unlabelled",
        )
    return TransferTexts(kept, _key(kept), overlap, repeated)


def cut_transfer(t: TransferTexts, n: int) -> TransferTexts:
    """The first ``n`` texts of ``t``, keyed anew."""
    return TransferTexts(t.texts[:n], _key(t.texts[:n]), t.overlap, t.repeated)


def describe(t: TransferTexts) -> str:
    left: list[str] = []
    if t.overlap:
        left.append(f"{t.overlap:,} equal to a validation or test text")
    if t.repeated:
        left.append(f"{t.repeated:,} repeated")
    return f"{len(t.texts):,} texts" + (f" ({', '.join(left)} left out)" if left else "")
