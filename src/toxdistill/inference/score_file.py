"""Bulk scoring in this process (``toxdistill predict``): a CSV, JSONL, text or Parquet input, in bounded memory.

Input is read in chunks by the one reader (``data.readers``), each chunk is scored by the model the one loader
(``predict.load_scorer``) gives (length-sorted batches, input order kept) and appended to a temporary file next
to the output. Only a complete run is renamed onto the output; an error leaves any existing output untouched.

The Ray engine (``inference.ray_scoring``) does the same work on a cluster. Both check the output path with
``check_output``, compute the prediction columns with ``prediction_frame`` and return a ``ScoreSummary``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toxdistill.data.readers import (
    detect_format,
    open_input,
    parquet_shards,
    parquet_writer,
    read_chunks,
    read_parquet,
    require_parquet,
    rows_frame,
)
from toxdistill.errors import ToxdistillError
from toxdistill.inference.predict import load_scorer
from toxdistill.inference.scoring import Scorer
from toxdistill.io import json_default

# Output file formats by suffix; any other name is written as CSV.
FILE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
FOLDER = "folder"  # the Ray engine's other output: a folder of Parquet shards


# ------------------------------------------------------------------ the scored columns (both engines)
def output_columns(label_names: list[str]) -> list[str]:
    return ["label", "label_id", *[f"p_{n.replace(' ', '_')}" for n in label_names], "truncated"]


def prediction_prefix(input_columns: Iterable[str], label_names: list[str]) -> str:
    """Input columns named like ours (a gold 'label', say) are kept; ours then get the prefix ``pred_``."""
    return "pred_" if set(map(str, input_columns)) & set(output_columns(label_names)) else ""


def prediction_frame(scorer: Scorer, texts: list[str], batch_size: int, clean: bool):
    """The prediction columns for ``texts`` (input order) and how many were truncated: what ``predict``
    writes beside the input columns, with either engine."""
    import pandas as pd

    logits, truncated = scorer.logits(scorer.prepare(texts) if clean else texts, batch_size)
    probs = scorer.probabilities(logits)
    ids = scorer.decide(logits)
    cols = output_columns(scorer.label_names)
    out = {cols[0]: np.asarray(scorer.label_names, dtype=object)[ids], cols[1]: ids.astype(np.int64)}
    for k, c in enumerate(cols[2:-1]):
        out[c] = np.round(probs[:, k].astype(np.float64), 6)
    out[cols[-1]] = truncated
    return pd.DataFrame(out), int(truncated.sum())


# ------------------------------------------------------------------ the output (both engines)
def file_format(path: Path) -> str:
    """The output file's format from its suffix: ``csv``, ``jsonl`` or ``parquet``."""
    return FILE_FORMATS.get(Path(path).suffix.lower(), "csv")


def check_output(path: Path, fmt: str, inputs: Sequence[Path] = (), folders: bool = False) -> None:
    """Refuse, before any work, an output that cannot be written or must not be replaced.

    ``fmt`` is a file format or ``folder`` (Parquet shards); ``inputs`` are resolved input paths the output
    must not be or hold; ``folders`` says whether the engine could write a folder instead (the fix says so).
    """
    parent = path.parent
    if not parent.is_dir():
        raise ToxdistillError(f"output folder {parent} does not exist", "create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ToxdistillError(f"cannot write to output folder {parent}", "check its permissions or pick another -o")
    here = path.resolve()
    if any(here == p or here in p.parents for p in inputs):
        raise ToxdistillError(f"output {path} is or holds the input", "write the scores somewhere else")
    if fmt != FOLDER:
        if path.is_dir():
            fix = (
                "give a file name, or a folder for Parquet shards"
                if folders
                else "give a file name, e.g. -o predictions.csv"
            )
            raise ToxdistillError(f"output {path} is a folder", fix)
        if path.exists() and not os.access(path, os.W_OK):
            raise ToxdistillError(f"output {path} is not writable", "check its permissions or pick another -o")
        return
    if path.exists() and not path.is_dir():
        raise ToxdistillError(f"output {path} is a file", "give a folder for Parquet shards, or a .csv/.jsonl name")
    # An existing folder is replaced whole: only when it holds nothing but Parquet shards (an earlier output).
    other = [p for p in path.iterdir() if p.suffix != ".parquet"] if path.is_dir() else []
    if other:
        raise ToxdistillError(
            f"output folder {path} holds other files than Parquet shards ({other[0].name})",
            "give a new or empty folder",
        )


class OutputWriter:
    """Appends scored chunks to the temporary output file: CSV, JSONL or Parquet.

    CSV and Parquet keep the first chunk's columns (and Parquet its types); JSONL objects may vary.
    """

    def __init__(self, tmp: str, fd: int, fmt: str):
        self.fmt, self.tmp = fmt, tmp
        self.columns: list | None = None
        self.parquet: Any = None  # pyarrow's ParquetWriter, made from the first chunk
        self.schema: Any = None
        self.f: Any = None
        if fmt == "parquet":
            os.close(fd)  # pyarrow opens the path itself
        else:
            self.f = os.fdopen(fd, "w", encoding="utf-8", newline="")

    def write(self, left, preds) -> None:
        import pandas as pd

        if self.fmt == "jsonl":
            lefts = left if isinstance(left, list) else left.to_dict("records")
            for row, p in zip(lefts, preds.to_dict("records")):
                self.f.write(json.dumps({**row, **p}, ensure_ascii=False, default=json_default) + "\n")
            return
        if isinstance(left, list):
            left = pd.DataFrame.from_records(left)
        frame = pd.concat([left, preds], axis=1)
        first = self.columns is None
        if not first:
            frame = frame.reindex(columns=self.columns)
        self.columns = list(frame.columns)
        if self.fmt == "csv":
            frame.to_csv(self.f, index=False, header=first, lineterminator="\n")
            return
        import pyarrow as pa

        if self.parquet is None:
            self.parquet, self.schema = parquet_writer(self.tmp, frame)
        try:
            self.parquet.write_table(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False))
        except (pa.ArrowException, ValueError) as e:
            raise ToxdistillError(
                f"a later chunk does not fit the Parquet columns of the first ({str(e).splitlines()[0][:100]})",
                "give rows of one shape, or write CSV/JSONL",
            ) from None

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        if self.f is not None:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()


@dataclass(frozen=True)
class ScoreOptions:
    """How an input is read and scored: the same for both engines (``predict``'s shared flags)."""

    text_col: str | None = None  # the CSV column / JSONL field; None: text, tweet or comment
    fmt: str = "auto"  # the input's format (csv, tsv, jsonl, txt); auto: from the suffix
    batch_size: int = 64
    chunk_size: int = 8192  # rows read, scored and written at a time
    threads: int | None = None
    backend: str = "auto"  # auto, torch or onnx
    clean: bool = True  # clean texts as the model's training data was, where that is known
    progress: bool = False  # a progress bar on stderr


@dataclass
class ScoreSummary:
    """What a scoring run wrote, for the command's last line."""

    rows: int
    output: Path
    backend: str
    cleaned: bool
    truncated: int = 0
    max_length: int | None = None
    actors: int | None = None  # the Ray engine's scoring actors


# ------------------------------------------------------------------ the local engine
def score_file(
    model_dir: str | Path, input_spec: str, output: str | Path, opts: ScoreOptions | None = None
) -> ScoreSummary:
    """Score every text of ``input_spec`` (a file, Parquet shards or ``-`` for stdin) into ``output`` (CSV,
    JSONL or Parquet, from its suffix), ``opts.chunk_size`` rows at a time."""
    opts = opts or ScoreOptions()
    text_col = opts.text_col
    out_path = Path(output)
    out_fmt = file_format(out_path)
    check_output(out_path, out_fmt)
    if out_fmt == "parquet":
        require_parquet()  # a missing pyarrow fails now, not after the input was read
    # Check the input before loading the model: a typo should fail in a second.
    with contextlib.ExitStack() as stack:
        shards = parquet_shards(input_spec)
        if shards is not None:
            in_fmt, name = "parquet", f"input {input_spec}"
            chunks = read_parquet(shards, text_col, opts.chunk_size)
        else:
            src = stack.enter_context(contextlib.closing(open_input(input_spec)))
            in_fmt = detect_format(src, opts.fmt, text_col)
            chunks = read_chunks(src, in_fmt, text_col, opts.chunk_size)
            name = f"{src.what} {src.name}"
        first = next(chunks, None)  # fails now on a bad header / missing column / bad first line
        if first is None:
            raise ToxdistillError(f"{name} has no texts", "give a file with at least one text")
        scorer = load_scorer(Path(model_dir), opts.threads, opts.backend)
        cleaned = opts.clean and scorer.clean_config is not None
        n, n_trunc = _write_scored(
            scorer,
            itertools.chain([first], chunks),
            in_fmt,
            out_path,
            out_fmt,
            opts.batch_size,
            cleaned,
            opts.progress,
            name,
        )
    return ScoreSummary(n, out_path, scorer.backend_name, cleaned, n_trunc, scorer.max_length)


def _write_scored(
    scorer: Scorer,
    chunks: Iterator[tuple[list[str], Any]],
    in_fmt: str,
    out_path: Path,
    out_fmt: str,
    batch_size: int,
    clean: bool,
    progress: bool,
    name: str,
) -> tuple[int, int]:
    """Score each chunk into a temporary file beside ``out_path``, renamed onto it once complete: (rows, truncated)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".part")
    except OSError as e:
        raise ToxdistillError(
            f"cannot write to output folder {out_path.parent}: {e.strerror}",
            "check its permissions or pick another -o",
        ) from None
    n = n_trunc = 0
    bar = None
    out = OutputWriter(tmp, fd, out_fmt)
    try:
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(desc="predict", unit=" rows", unit_scale=True, file=sys.stderr)
        prefix = None
        for texts, rows in chunks:
            preds, t = prediction_frame(scorer, texts, batch_size, clean)
            # JSONL objects as read, written back unchanged (JSONL output) or flattened (CSV, Parquet)
            left = rows if in_fmt == "jsonl" else rows_frame(in_fmt, rows)
            if prefix is None:
                names = left.columns if hasattr(left, "columns") else set().union(*map(set, rows))
                prefix = prediction_prefix(names, scorer.label_names)
            preds.columns = [prefix + c for c in preds.columns]
            out.write(left, preds)
            n += len(preds)
            n_trunc += t
            if bar is not None:
                bar.update(len(preds))
        if n == 0:
            raise ToxdistillError(f"{name} has no texts", "give a file with at least one text")
        out.close()
        if bar is not None:
            bar.close()
            bar = None
        os.replace(tmp, out_path)
    except BaseException:
        if bar is not None:
            bar.close()
        with contextlib.suppress(Exception):
            out.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return n, n_trunc
