"""Batch files: read comments from an uploaded CSV or TXT, write the predictions back as CSV."""

from __future__ import annotations

import csv
import io
import re

MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MAX_ROWS = 5000
TEXT_COLUMNS = ("text", "tweet", "comment")


class BatchError(ValueError):
    """The upload is unusable; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Spreadsheet exports on Windows are often cp1252; latin-1 never fails and keeps ASCII intact.
        return data.decode("latin-1")


def read_texts(filename: str, data: bytes, column: str | None = None) -> tuple[list[str], str | None]:
    """The non-blank comments in the file, and the CSV column they came from (None for TXT)."""
    if not data.strip():
        raise BatchError("the uploaded file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise BatchError(
            f"the file is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES // (1024 * 1024)} MB", 413
        )
    text = decode(data)
    name = (filename or "").lower()
    if name.endswith(".txt") or (not name.endswith(".csv") and not column and "," not in text.split("\n", 1)[0]):
        texts, col = [line.strip() for line in text.splitlines()], None
    else:
        texts, col = _csv_column(text, column)
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise BatchError("no comments found in the file (all rows are blank)")
    if len(texts) > MAX_ROWS:
        raise BatchError(f"the file has {len(texts)} comments; the limit is {MAX_ROWS} per upload", 413)
    return texts, col


def _csv_column(text: str, column: str | None) -> tuple[list[str], str]:
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise BatchError(f"cannot read the CSV: {e}") from None
    header = [h.strip() for h in rows[0]] if rows else []
    if not header:
        raise BatchError("the CSV has no header row")
    if column:
        if column not in header:
            raise BatchError(f"the CSV has no column {column!r}; its columns are: {', '.join(header)}")
        idx = header.index(column)
    else:
        lower = [h.lower() for h in header]
        idx = next((lower.index(c) for c in TEXT_COLUMNS if c in lower), 0)
    return [r[idx] if idx < len(r) else "" for r in rows[1:]], header[idx]


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
    w.writerow(["text", "label", *[f"p_{_slug(n)}" for n in label_names]])
    for t, r in zip(texts, results):
        w.writerow([_spreadsheet_safe(t), r["label"], *[f"{r['probabilities'][n]:.6f}" for n in label_names]])
    return buf.getvalue()


def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower() or "class"


def download_name(filename: str, model: str) -> str:
    stem = re.sub(r"[^0-9A-Za-z._-]+", "_", (filename or "comments").rsplit(".", 1)[0])[:60] or "comments"
    return f"{stem}-{_slug(model)}.csv"
