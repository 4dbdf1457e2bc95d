"""Batch files: read comments from an uploaded CSV or TXT, write the predictions back as CSV."""

from __future__ import annotations

import csv
import io
import re

import pandas as pd

from toxdistill.data.readers import detect_format, open_bytes, pick_column, read_chunks
from toxdistill.errors import ToxdistillError
from toxdistill.inference.scoring import LABELS_SEP

MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MAX_ROWS = 5000


class BatchError(ValueError):
    """The upload is unusable; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def read_texts(filename: str, data: bytes, column: str | None = None) -> tuple[list[str], str | None]:
    """The non-blank comments in the file, and the column they came from (None for plain text).

    Read by the one input reader (``data.readers``), so an upload is accepted or refused exactly as
    ``toxdistill predict`` would treat the same file.
    """
    if not data.strip():
        raise BatchError("the uploaded file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise BatchError(
            f"the file is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES // (1024 * 1024)} MB", 413
        )
    try:
        src = open_bytes(filename, data, what="upload")
        fmt = detect_format(src, "auto", column)
        texts: list[str] = []
        col = None
        for chunk, rows in read_chunks(src, fmt, column or None, MAX_ROWS + 1):
            texts.extend(t for t in chunk if t.strip())
            if col is None and fmt != "txt":
                cols = [str(c) for c in rows.columns] if isinstance(rows, pd.DataFrame) else list(rows[0])
                col = pick_column(cols, column or None, src.name)
            if len(texts) > MAX_ROWS:
                break
    except ToxdistillError as e:
        raise BatchError(str(e)) from None
    except RecursionError:  # a JSON line nested thousands deep
        raise BatchError("the file cannot be read: a line is nested too deeply") from None
    except ValueError as e:  # e.g. a JSON number of thousands of digits, which Python refuses to convert
        raise BatchError(
            f"the file cannot be read: {str(e).splitlines()[0][:200] if str(e) else 'bad value'}"
        ) from None
    if not texts:
        raise BatchError("no comments found in the file (all rows are blank)")
    if len(texts) > MAX_ROWS:
        raise BatchError(f"the file has more than {MAX_ROWS} comments; the limit is {MAX_ROWS} per upload", 413)
    return texts, col


# A cell starting with one of these runs as a formula when a moderator opens the download in a
# spreadsheet (CSV injection); uploaded texts are untrusted, so they are defused as OWASP advises.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_safe(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_csv(texts: list[str], results: list[dict], label_names: list[str]) -> str:
    """The browser download. Texts that a spreadsheet would run as formulas get a leading ``'``;
    ``toxdistill predict`` (a data pipeline, not a spreadsheet export) writes texts unchanged."""
    buf = io.StringIO()
    w = csv.writer(buf)
    multi = bool(results) and "labels" in results[0]  # a multi-label model: its decided labels in one cell
    w.writerow(["text", "labels" if multi else "label", *[f"p_{_slug(n)}" for n in label_names]])
    for t, r in zip(texts, results):
        decided = LABELS_SEP.join(r["labels"]) if multi else r["label"]
        w.writerow([_spreadsheet_safe(t), decided, *[f"{r['probabilities'][n]:.6f}" for n in label_names]])
    return buf.getvalue()


def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower() or "class"


def download_name(filename: str, model: str) -> str:
    stem = re.sub(r"[^0-9A-Za-z._-]+", "_", (filename or "comments").rsplit(".", 1)[0])[:60] or "comments"
    return f"{stem}-{_slug(model)}.csv"
