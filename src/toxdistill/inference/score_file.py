"""Bulk scoring in this process (``toxdistill predict --runner local``): a CSV, JSONL, text or Parquet input, in
bounded memory.

Input is read in chunks by the one reader (``data.readers``, through ``input_chunks``), each chunk is scored by
the model the one loader (``predict.load_scorer``) gives (length-sorted batches, input order kept) and written
by the one writer of scored files (``scored_output.ScoredWriter``), which publishes only a complete output.

The Ray runner (``inference.ray_scoring``) does the same work on a cluster, reads the input through
``input_chunks`` again to write it, and returns a ``ScoreSummary`` too.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toxdistill.data.readers import (
    MAX_LINE_BYTES,
    detect_format,
    open_input,
    parquet_shards,
    read_chunks,
    read_parquet,
    require_parquet,
)
from toxdistill.errors import ToxdistillError
from toxdistill.inference.predict import load_scorer
from toxdistill.inference.scored_output import ScoredWriter, check_output, file_format, prediction_frame
from toxdistill.inference.scoring import Scorer, is_multi_label_scorer


@dataclass(frozen=True)
class ScoreOptions:
    """How an input is read and scored: the same for both runners (``predict``'s shared flags)."""

    text_col: str | None = None  # the CSV column / JSONL field; None: text, tweet or comment
    fmt: str = "auto"  # the input's format (csv, tsv, jsonl, txt); auto: from the suffix
    batch_size: int = 64
    chunk_size: int = 8192  # rows read, scored and written at a time
    threads: int | None = None
    backend: str = "auto"  # auto, torch or onnx
    clean: bool = True  # clean texts as the model's training data was, where that is known
    progress: bool = False  # a progress bar on stderr
    max_line_bytes: int | None = MAX_LINE_BYTES  # a longer input line is refused (see data.readers); None: any


@dataclass
class ScoreSummary:
    """What a scoring run wrote, for the command's last line."""

    rows: int
    output: Path
    backend: str
    cleaned: bool
    truncated: int = 0
    max_length: int | None = None
    actors: int | None = None  # the Ray runner's scoring actors


# ------------------------------------------------------------------ the input, for both runners
Chunks = Iterator[tuple[list[str], Any]]


@contextlib.contextmanager
def input_chunks(input_spec: str, opts: ScoreOptions, stdin_copy: Path | None = None) -> Iterator[tuple[str, Chunks]]:
    """``input_spec`` (a file, Parquet shards or ``-`` for stdin) read by the one reader in chunks of
    ``opts.chunk_size`` (texts, rows): its format and the chunks. The first chunk is read now, so a bad header,
    a missing column or an input without texts fails before any model loads. ``stdin_copy`` is a file holding
    what stdin gave, for a second reading (the Ray runner's)."""
    with contextlib.ExitStack() as stack:
        shards = parquet_shards(input_spec)
        if shards is not None:
            in_fmt, name = "parquet", f"input {input_spec}"
            chunks = read_parquet(shards, opts.text_col, opts.chunk_size)
        else:
            src = stack.enter_context(
                contextlib.closing(open_input(stdin_copy or input_spec, max_line_bytes=opts.max_line_bytes))
            )
            if stdin_copy is not None:
                src.name = "<stdin>"  # messages name what the user gave
            in_fmt = detect_format(src, opts.fmt, opts.text_col)
            chunks = read_chunks(src, in_fmt, opts.text_col, opts.chunk_size)
            name = f"{src.what} {src.name}"
        first = next(chunks, None)
        if first is None:
            raise ToxdistillError(f"{name} has no texts", "give a file with at least one text")
        yield in_fmt, itertools.chain([first], chunks)


# ------------------------------------------------------------------ the local runner
def score_file(
    model_dir: str | Path, input_spec: str, output: str | Path, opts: ScoreOptions | None = None
) -> ScoreSummary:
    """Score every text of ``input_spec`` (a file, Parquet shards or ``-`` for stdin) into ``output`` (CSV,
    JSONL or Parquet, from its suffix), ``opts.chunk_size`` rows at a time."""
    opts = opts or ScoreOptions()
    out_path = Path(output)
    out_fmt = file_format(out_path)
    check_output(out_path, out_fmt)
    if out_fmt == "parquet":
        require_parquet()  # a missing pyarrow fails now, not after the input was read
    # The input is checked before the model loads: a typo should fail in a second.
    with input_chunks(input_spec, opts) as (in_fmt, chunks):
        scorer = load_scorer(Path(model_dir), opts.threads, opts.backend)
        cleaned = opts.clean and scorer.clean_config is not None
        n, n_trunc = _write_scored(scorer, chunks, in_fmt, out_path, out_fmt, opts, cleaned)
    return ScoreSummary(n, out_path, scorer.backend_name, cleaned, n_trunc, scorer.max_length)


def _write_scored(
    scorer: Scorer, chunks: Chunks, in_fmt: str, out_path: Path, out_fmt: str, opts: ScoreOptions, clean: bool
) -> tuple[int, int]:
    """Score each chunk and write it through the one writer, published once complete: (rows, truncated)."""
    n_trunc = 0
    bar = None
    try:
        if opts.progress:
            from tqdm.auto import tqdm

            bar = tqdm(desc="predict", unit=" rows", unit_scale=True, file=sys.stderr)
        with ScoredWriter(out_path, out_fmt, scorer.label_names, is_multi_label_scorer(scorer)) as out:
            for texts, rows in chunks:
                preds, t = prediction_frame(scorer, texts, opts.batch_size, clean)
                out.write(in_fmt, rows, preds)
                n_trunc += t
                if bar is not None:
                    bar.update(len(preds))
            out.publish()
    finally:
        if bar is not None:
            bar.close()
    return out.rows, n_trunc
