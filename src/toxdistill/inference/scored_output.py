"""What ``toxdistill predict`` writes, for both runners: the scored columns, the output check and the one writer.

``--runner local`` (``inference.score_file``) and ``--runner ray`` (``inference.ray_scoring``) compute the
prediction columns with ``prediction_frame`` and write a scored file through ``ScoredWriter`` alone, chunk by
chunk as the one reader (``data.readers``) gives the input. The same input and options therefore give the same
bytes (CSV, JSONL) or the same table (Parquet) whichever runner scored it.

A scored file appears only when complete: ``ScoredWriter`` writes a temporary file beside the output
(``.<output>.<pid>-<id>.part``, with the permissions the umask gives) and renames it onto the output in
``publish``; an error, Ctrl-C or SIGTERM (see ``cli.predict``) removes it and leaves any existing output
untouched, and the next writer of the same output removes one that a killed process left.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toxdistill.data.readers import parquet_writer, rows_frame
from toxdistill.errors import ToxdistillError
from toxdistill.inference.scoring import LABELS_SEP, Scorer, is_multi_label_scorer
from toxdistill.io import json_default, new_temp_file, recover_partial_writes

# Output file formats by suffix; any other name is written as CSV.
FILE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
FOLDER = "folder"  # the Ray runner's other output: a folder of Parquet shards


# ------------------------------------------------------------------ the scored columns
LABELS_COLUMN = "labels"  # a multi-label row's decided labels: names joined by LABELS_SEP (JSONL: a list)


def output_columns(label_names: list[str], multi_label: bool = False) -> list[str]:
    """The prediction columns: ``label``, ``label_id`` (a multi-label model: ``labels``), ``p_<class>``, ``truncated``."""
    decided = [LABELS_COLUMN] if multi_label else ["label", "label_id"]
    return [*decided, *[f"p_{n.replace(' ', '_')}" for n in label_names], "truncated"]


def prediction_prefix(input_columns: Iterable[str], label_names: list[str], multi_label: bool = False) -> str:
    """Input columns named like ours (a gold 'label', say) are kept; ours then get the prefix ``pred_``."""
    return "pred_" if set(map(str, input_columns)) & set(output_columns(label_names, multi_label)) else ""


def prediction_frame(scorer: Scorer, texts: list[str], batch_size: int, clean: bool):
    """The prediction columns for ``texts`` (input order) and how many were truncated: what ``predict``
    writes beside the input columns, with either runner. A multi-label model's ``labels`` column holds the
    decided names joined by ``LABELS_SEP`` (the writer makes a list of them in JSONL)."""
    import pandas as pd

    logits, truncated = scorer.logits(scorer.prepare(texts) if clean else texts, batch_size)
    probs = scorer.probabilities(logits)
    ids = scorer.decide(logits)
    multi = is_multi_label_scorer(scorer)
    cols = output_columns(scorer.label_names, multi)
    names = np.asarray(scorer.label_names, dtype=object)
    if multi:
        out = {cols[0]: np.array([LABELS_SEP.join(names[row]) for row in ids], dtype=object)}
    else:
        out = {cols[0]: names[ids], cols[1]: ids.astype(np.int64)}
    for k, c in enumerate(cols[len(out) : -1]):
        out[c] = np.round(probs[:, k].astype(np.float64), 6)
    out[cols[-1]] = truncated
    return pd.DataFrame(out), int(truncated.sum())


# ------------------------------------------------------------------ the output path
def file_format(path: Path) -> str:
    """The output file's format from its suffix: ``csv``, ``jsonl`` or ``parquet``."""
    return FILE_FORMATS.get(Path(path).suffix.lower(), "csv")


def check_output(path: Path, fmt: str, inputs: Sequence[Path] = (), folders: bool = False) -> None:
    """Refuse, before any work, an output that cannot be written or must not be replaced.

    ``fmt`` is a file format or ``folder`` (Parquet shards); ``inputs`` are resolved input paths the output
    must not be or hold; ``folders`` says whether the runner could write a folder instead (the fix says so).
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


# ------------------------------------------------------------------ the one writer
class ScoredWriter:
    """The one writer of a scored file (CSV, JSONL or Parquet), for both runners.

    ``write`` takes one chunk as the reader gave it (``data.readers.read_chunks`` / ``read_parquet``) and its
    prediction columns. JSONL input objects are written back unchanged to JSONL (they may vary) and flattened
    for CSV and Parquet, which keep the first chunk's columns (and Parquet its types). The predictions get the
    prefix ``pred_`` when the first chunk has a column named like one of them.

    Use as a context manager: without ``publish`` (an error), the temporary file goes and the output stays as
    it was.
    """

    def __init__(self, path: Path, fmt: str, label_names: list[str], multi_label: bool = False):
        self.path, self.fmt, self.label_names, self.multi_label = Path(path), fmt, label_names, multi_label
        try:
            # A .part of this output left by a predict that was killed (SIGKILL, a power cut) goes now; one that a
            # live predict is still writing stays (io.recover_partial_writes).
            recover_partial_writes(self.path.parent, self.path.name)
            fd, self.tmp = new_temp_file(self.path, "part")  # the umask's permissions, as a plain open gives
        except OSError as e:
            raise ToxdistillError(
                f"cannot write to output folder {self.path.parent}: {e.strerror}",
                "check its permissions or pick another -o",
            ) from None
        self.rows = 0
        self.prefix: str | None = None  # decided by the first chunk's columns
        self.columns: list | None = None  # CSV and Parquet: the first chunk's
        self.parquet: Any = None  # pyarrow's ParquetWriter, made from the first chunk
        self.schema: Any = None
        self.f: Any = None
        self.published = False
        if fmt == "parquet":
            os.close(fd)  # pyarrow opens the path itself
        else:
            self.f = os.fdopen(fd, "w", encoding="utf-8", newline="")

    def __enter__(self) -> ScoredWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.published:
            with contextlib.suppress(Exception):
                self._close()
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)

    def write(self, in_fmt: str, rows: Any, preds: Any) -> None:
        """Append one chunk: ``rows`` in the reader's form for ``in_fmt``, ``preds`` from ``prediction_frame``."""
        left = rows if in_fmt == "jsonl" else rows_frame(in_fmt, rows)
        if self.prefix is None:
            names = set().union(*map(set, rows)) if in_fmt == "jsonl" else left.columns
            self.prefix = prediction_prefix(names, self.label_names, self.multi_label)
        preds = preds.set_axis([self.prefix + str(c) for c in preds.columns], axis=1)
        self.rows += len(preds)
        if self.fmt == "jsonl":
            lefts = left if isinstance(left, list) else left.to_dict("records")
            records = preds.to_dict("records")
            if self.multi_label:
                key = self.prefix + LABELS_COLUMN
                records = [{**p, key: p[key].split(LABELS_SEP) if p[key] else []} for p in records]
            for row, p in zip(lefts, records):
                self.f.write(json.dumps({**row, **p}, ensure_ascii=False, default=json_default) + "\n")
            return
        self._write_frame(rows_frame("jsonl", left) if isinstance(left, list) else left, preds)

    def _write_frame(self, left: Any, preds: Any) -> None:
        import pandas as pd

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

    def publish(self) -> None:
        """Flush the complete file to disk and rename it onto the output."""
        self._close()
        os.replace(self.tmp, self.path)
        self.published = True

    def _close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
            self.parquet = None
        if self.f is not None and not self.f.closed:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
