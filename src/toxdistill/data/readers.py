"""The one input reader: CSV, TSV, JSONL and plain text, from a path, stdin or uploaded bytes.

`run` and `evaluate` (labelled data), `predict` (any size, streamed in chunks) and the server's batch upload
all read through here, so they accept the same files and refuse the same ones with the same words:

- **Encoding**: UTF-8 only (a BOM is fine). Anything else is refused with a one-line error naming the fix,
  rather than guessed: a wrong guess silently changes the texts that get scored.
- **Format**: from the suffix (``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``/``.json``, ``.txt``), else a first
  line starting with ``{`` is JSONL, a named column means CSV, and anything else is one text per line.
- **Text column**: the one named (``--text-col``), else the first of ``text``, ``tweet``, ``comment`` (any
  case). No silent fallback to another column: a file without one is refused, listing its columns.
- **Plain text**: one text per line, kept as written (only the line break goes), blank lines skipped.
- **Any text is safe**: JSON can carry lone surrogates (``"\\ud800"``), which no UTF-8 writer or tokenizer
  accepts. ``safe_text`` replaces each with U+FFFD (valid surrogate pairs become their character).
- **Bounded lines**: a line (CSV, JSONL or text; between two line breaks) longer than ``MAX_LINE_BYTES`` (1 MiB;
  ``predict --max-line-bytes``) is refused with a one-line error naming its line number, as soon as the reader
  has read that much of it: the bytes are counted as they are read, so memory stays bounded however long the
  line is, and no output ever gets a copy of it.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toxdistill.errors import ToxdistillError

TEXT_COLUMNS = ("text", "tweet", "comment")
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
FORMATS = ("csv", "tsv", "jsonl", "txt")
HEAD_BYTES = 1 << 16
# The longest line read, in bytes. 1 MiB holds ~200k words: hundreds of times what a model reads of a text (the
# tokenizer truncates at max_length, 512 tokens at most), so no real comment is refused, while a file without
# line breaks (a binary dump, a minified JSON array) fails after 1 MiB instead of filling memory with a line read
# whole, then copied into the output. The server's uploads (2 MB at most) get the same limit.
MAX_LINE_BYTES = 1 << 20
_BREAK = re.compile(rb"\r\n|\r|\n")


def safe_text(text: str) -> str:
    """``text`` with every code point that UTF-8 cannot encode (a lone surrogate) replaced by U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def safe_obj(obj: Any) -> Any:
    """``safe_text`` on every string in a JSON-like value (keys included)."""
    if isinstance(obj, str):
        return safe_text(obj)
    if isinstance(obj, dict):
        return {safe_text(str(k)): safe_obj(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [safe_obj(v) for v in obj]
    return obj


class _Prefixed(io.RawIOBase):
    """A byte stream that replays ``head`` (already read, to sniff the input) and then reads the rest, counting
    line lengths as the bytes go by: a line over ``max_line`` bytes ends the read with a one-line error."""

    def __init__(self, head: bytes, rest, max_line: int | None = MAX_LINE_BYTES):
        self.head, self.rest, self.max_line = head, rest, max_line
        self.source: Source | None = None  # set once opened: the error names it as the caller may rename it
        self.line = 1  # the line the next byte belongs to
        self.run = 0  # bytes of that line so far
        self.after_cr = False  # the last block ended in \r: a \n that starts the next one is the same break

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self.rest is not None and self.rest is not getattr(sys.stdin, "buffer", None):
            self.rest.close()
        super().close()

    def readinto(self, b) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
        elif self.rest is None:
            return 0
        else:
            data = self.rest.read1(len(b)) if hasattr(self.rest, "read1") else self.rest.read(len(b))
            n = len(data)
            b[:n] = data
        if self.max_line is not None and n:
            self._count(bytes(b[:n]), self.max_line)
        return n

    def _count(self, data: bytes, limit: int) -> None:
        """Advance the line count over ``data``; raise once a line is longer than ``limit`` bytes."""
        if self.after_cr and data.startswith(b"\n"):
            data = data[1:]
        self.after_cr = data.endswith(b"\r")
        first = min((i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0), default=-1)
        if first < 0:
            self._grow(len(data))
            return
        self._grow(first)
        last = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if last - first > limit:  # a whole line within this block may be too long: look at each (rare)
            pos = first
            for m in _BREAK.finditer(data, first):
                self._grow(m.start() - pos)
                self.line, self.run, pos = self.line + 1, 0, m.end()
        else:
            self.line += data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
        self.run = len(data) - last - 1
        self._grow(0)

    def _grow(self, n: int) -> None:
        self.run += n
        if self.max_line is not None and self.run > self.max_line:
            what, name = (self.source.what, self.source.name) if self.source else ("input", "")
            fix = "split it into shorter texts" + (" or raise --max-line-bytes" if what == "input" else "")
            raise ToxdistillError(f"{what} {name} line {self.line} is longer than {_size(self.max_line)}", fix)


def _size(n: int) -> str:
    """``n`` bytes as the limit is usually given: 1 MiB, 64 KiB or 300 bytes."""
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


@dataclass
class Source:
    """An opened input: its name for messages, its first bytes, and a byte stream from the start."""

    name: str
    suffix: str
    head: bytes
    stream: io.BufferedReader
    what: str = "input"  # "input" or "data file": how messages name it

    def close(self) -> None:
        self.stream.close()


def _checked(name: str, suffix: str, head: bytes, raw, what: str, max_line: int | None) -> Source:
    if not head.strip():
        raise ToxdistillError(f"{what} {name} is empty", "give a file with at least one text")
    if b"\x00" in head:
        raise ToxdistillError(f"{what} {name} looks binary (it has NUL bytes)", "give a UTF-8 CSV, JSONL or text file")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # a multi-byte character cut at the end of the sniffed block is fine
            raise ToxdistillError(
                f"{what} {name} is not UTF-8 text", "re-encode it as UTF-8 (iconv -t utf-8)"
            ) from None
    stream = _Prefixed(head, raw, max_line)
    src = Source(name, suffix, head, io.BufferedReader(stream, buffer_size=HEAD_BYTES), what)
    stream.source = src
    return src


def open_input(spec: str | Path, what: str = "input", max_line_bytes: int | None = MAX_LINE_BYTES) -> Source:
    """A file path, or ``-`` for stdin; lines longer than ``max_line_bytes`` are refused (None: no limit)."""
    if str(spec) == "-":
        raw = getattr(sys.stdin, "buffer", None)
        if raw is None:  # a text stream (tests, embedding): encode it
            raw = io.BytesIO(sys.stdin.read().encode("utf-8"))
        return _checked("<stdin>", "", raw.read(HEAD_BYTES), raw, what, max_line_bytes)
    path = Path(spec)
    if path.is_dir():
        raise ToxdistillError(f"{what} {path} is a folder", "give a file")
    if not path.is_file():
        raise ToxdistillError(f"{what} not found: {path}", "check the path")
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed through Source.close
    except OSError as e:
        raise ToxdistillError(f"cannot read {path}: {e.strerror}", "check its permissions") from None
    return _checked(str(path), path.suffix.lower(), raw.read(HEAD_BYTES), raw, what, max_line_bytes)


def open_bytes(filename: str, data: bytes, what: str = "upload", max_line_bytes: int | None = MAX_LINE_BYTES) -> Source:
    """Bytes already in memory (an upload), named by the file name the client gave."""
    raw = io.BytesIO(data)
    head = raw.read(HEAD_BYTES)
    return _checked(filename or "upload", Path(filename or "").suffix.lower(), head, raw, what, max_line_bytes)


def detect_format(src: Source, fmt: str = "auto", text_col: str | None = None) -> str:
    if fmt != "auto":
        return fmt
    if src.suffix in (".csv", ".tsv"):
        return src.suffix[1:]
    if src.suffix in JSONL_SUFFIXES:
        return "jsonl"
    if src.suffix == ".txt":
        return "txt"
    first = src.head.lstrip().split(b"\n", 1)[0].strip()
    if first.startswith(b"{"):
        return "jsonl"
    return "csv" if text_col else "txt"


def pick_column(columns: list[str], wanted: str | None, name: str, what: str = "column") -> str:
    """``wanted`` if given, else the first of ``TEXT_COLUMNS`` (exact name first, then any case)."""
    shown = ", ".join(map(str, columns[:8])) + (" …" if len(columns) > 8 else "")
    if wanted is not None:
        if wanted not in columns:
            raise ToxdistillError(f"{name} has no {what} {wanted!r} ({what}s: {shown})", "pass the right --text-col")
        return wanted
    for c in TEXT_COLUMNS:
        if c in columns:
            return c
    lower = {str(c).lower(): c for c in columns}
    for c in TEXT_COLUMNS:
        if c in lower:
            return lower[c]
    raise ToxdistillError(f"{name} has no 'text', 'tweet' or 'comment' {what} ({what}s: {shown})", "name the column")


def read_chunks(
    src: Source, fmt: str, text_col: str | None = None, chunk: int = 8192, as_strings: bool = True
) -> Iterator[tuple[list[str], Any]]:
    """Chunks of (texts, rows): rows are a DataFrame (CSV/TSV), a list of dicts (JSONL) or the texts (TXT).

    ``as_strings`` keeps every CSV cell exactly as in the file (``predict`` writes them back); without it
    pandas infers types and reads empty cells as missing (labelled data).
    """
    if fmt in ("csv", "tsv"):
        return _read_csv(src, "\t" if fmt == "tsv" else ",", text_col, chunk, as_strings)
    if fmt == "jsonl":
        return _read_jsonl(src, text_col, chunk)
    if fmt == "txt":
        if text_col:
            raise ToxdistillError(
                f"a text column does not apply to plain text {src.what} {src.name}", "use a .csv or .jsonl file"
            )
        return _read_txt(src, chunk)
    raise ToxdistillError(f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")


def read_frame(path: str | Path, fmt: str = "auto", what: str = "data file"):
    """A whole labelled file as one DataFrame (every column; types inferred), for ``run`` and ``evaluate``."""
    import pandas as pd

    src = open_input(path, what)
    try:
        fmt = detect_format(src, fmt)
        fmt = fmt if fmt in ("jsonl", "tsv") else "csv"  # labelled data has columns: whatever its suffix, CSV
        parts = [r if isinstance(r, pd.DataFrame) else pd.DataFrame.from_records(r) for _, r in _all_rows(src, fmt)]
    finally:
        src.close()
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if df.empty:
        raise ToxdistillError(f"{what} {path} has no rows", "give a file with at least one labelled row")
    return df


def rows_frame(fmt: str, rows: Any):
    """One chunk's input rows (as ``read_chunks`` or ``read_parquet`` give them) as a DataFrame indexed 0..n-1:
    the columns that ``predict`` writes back beside its scores."""
    import pandas as pd

    if fmt == "jsonl":
        return pd.DataFrame.from_records(rows)
    if fmt == "txt":
        return pd.DataFrame({"text": rows})
    return rows.reset_index(drop=True)


def _all_rows(src: Source, fmt: str):
    # Any column will do: labelled files name theirs in the config, which the caller checks. One chunk, so
    # pandas infers each column's type from all of it (a chunk of digit-only texts stays text).
    if fmt in ("csv", "tsv"):
        yield from _read_csv(src, "\t" if fmt == "tsv" else ",", None, None, as_strings=False, any_column=True)
    else:
        yield from _read_jsonl(src, None, None, any_field=True)


def _read_csv(
    src: Source, sep: str, text_col: str | None, chunk: int | None, as_strings: bool, any_column: bool = False
) -> Iterator[tuple[list[str], Any]]:
    import pandas as pd

    text = io.TextIOWrapper(src.stream, encoding="utf-8-sig", newline="")
    fmt_name = "TSV" if sep == "\t" else "CSV"
    try:
        opts: dict[str, Any] = {"dtype": str, "keep_default_na": False, "na_filter": False} if as_strings else {}
        reader = (
            [pd.read_csv(text, sep=sep, **opts)]
            if chunk is None
            else pd.read_csv(text, sep=sep, chunksize=chunk, **opts)
        )
        col = None
        rows = 0
        for df in reader:
            if col is None and not any_column:
                col = pick_column([str(c) for c in df.columns], text_col, f"{src.what} {src.name}")
            if len(df):
                rows += len(df)
                yield ([] if col is None else df[col].tolist()), df
        if not rows:
            raise ToxdistillError(
                f"{src.what} {src.name} has a header but no rows", "give a file with at least one row"
            )
    except UnicodeDecodeError:
        raise ToxdistillError(
            f"{src.what} {src.name} is not UTF-8 text", "re-encode it as UTF-8 (iconv -t utf-8)"
        ) from None
    except pd.errors.EmptyDataError:
        raise ToxdistillError(f"{src.what} {src.name} is empty", "give a file with a header and rows") from None
    except (pd.errors.ParserError, ValueError) as e:
        first = (str(e).splitlines() or [e.__class__.__name__])[0]
        raise ToxdistillError(f"{src.what} {src.name} is not valid {fmt_name}: {first}", "check the format") from None


def _lines(src: Source) -> Iterator[tuple[int, str]]:
    text = io.TextIOWrapper(src.stream, encoding="utf-8-sig", newline=None)
    lineno = 0
    try:
        for lineno, line in enumerate(text, 1):  # noqa: B007 - lineno is used in the error below
            yield lineno, line.rstrip("\n")
    except UnicodeDecodeError:
        raise ToxdistillError(
            f"{src.what} {src.name} is not UTF-8 text (near line {lineno + 1})", "re-encode it as UTF-8"
        ) from None


def as_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v)


def _read_jsonl(
    src: Source, text_col: str | None, chunk: int | None, any_field: bool = False
) -> Iterator[tuple[list[str], list[dict]]]:
    rows: list[dict] = []
    field = text_col
    name = f"{src.what} {src.name}"
    for lineno, line in _lines(src):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ToxdistillError(
                f"{name} line {lineno} is not valid JSON ({e.msg})", "give one JSON object per line"
            ) from None
        except (RecursionError, ValueError):
            # Valid JSON that Python will not hold: nesting deeper than its recursion limit, or an integer of more
            # digits than int() converts (sys.get_int_max_str_digits).
            raise ToxdistillError(
                f"{name} line {lineno} is nested too deeply or holds a number too long to read",
                "give one flat JSON object per line",
            ) from None
        if not isinstance(obj, dict):
            raise ToxdistillError(
                f"{name} line {lineno} is not a JSON object", 'give one object per line, e.g. {"text": "..."}'
            )
        obj = safe_obj(obj)
        if not any_field:
            if field is None:
                field = pick_column(list(obj), None, f"{name} line {lineno}", "field")
            elif field not in obj:
                raise ToxdistillError(f"{name} line {lineno} has no field {field!r}", "pass the right --text-col")
        rows.append(obj)
        if chunk is not None and len(rows) >= chunk:
            yield ([] if field is None else [as_text(r[field]) for r in rows]), rows
            rows = []
    if rows:
        yield ([] if field is None else [as_text(r[field]) for r in rows]), rows


def _read_txt(src: Source, chunk: int) -> Iterator[tuple[list[str], list[str]]]:
    rows: list[str] = []
    for _, line in _lines(src):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        rows.append(line)
        if len(rows) >= chunk:
            yield rows, rows
            rows = []
    if rows:
        yield rows, rows


# ---------------------------------------------------------------- Parquet (optional: pip install 'toxdistill[parquet]')
def require_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ToxdistillError(
            "Parquet needs pyarrow, which is not installed", "pip install 'toxdistill[parquet]'"
        ) from None
    return pq


def parquet_shards(spec: str | Path, what: str = "input") -> list[Path] | None:
    """The Parquet files ``spec`` names: a ``.parquet`` file, a folder of them, or a glob such as
    ``shards/*.parquet`` (read in sorted order, so the output order is the input's). None if not Parquet."""
    import glob

    s = str(spec)
    if s == "-":
        return None
    if any(c in s for c in "*?["):
        files = sorted(Path(f) for f in glob.glob(s))
        if not files:
            raise ToxdistillError(f"no files match {s}", "check the pattern, e.g. 'shards/*.parquet'")
        other = [f for f in files if f.suffix.lower() != ".parquet"]
        if other:
            raise ToxdistillError(f"{other[0]} matches {s} but is not a .parquet file", "narrow the pattern")
        return files
    p = Path(s)
    if p.is_dir():
        files = sorted(p.glob("*.parquet"))
        if not files:
            raise ToxdistillError(
                f"{what} folder {p} holds no .parquet files", "give a file, or a folder of Parquet shards"
            )
        return files
    if p.suffix.lower() == ".parquet":
        if not p.is_file():
            raise ToxdistillError(f"{what} not found: {p}", "check the path")
        return [p]
    return None


def open_parquet(path: str | Path, what: str = "input") -> Any:
    """A ``pyarrow.parquet.ParquetFile`` (its footer read), or one line saying the file is not Parquet."""
    import pyarrow as pa

    pq = require_parquet()
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise ToxdistillError(
            f"{what} {path} is not a readable Parquet file ({str(e).splitlines()[0][:100]})", "check the file"
        ) from None


def read_parquet(
    paths: list[Path], text_col: str | None = None, chunk: int = 8192, what: str = "input"
) -> Iterator[tuple[list[str], Any]]:
    """Chunks of (texts, DataFrame) from each shard in turn, row groups streamed, never a whole shard at once."""
    for path in paths:
        f = open_parquet(path, what)
        col = pick_column(list(f.schema_arrow.names), text_col, f"{what} {path}")
        for batch in f.iter_batches(batch_size=chunk):
            df = batch.to_pandas()
            if len(df):
                yield [safe_text(as_text(v)) for v in df[col]], df


def parquet_writer(path: str | Path, first: Any):
    """A ``pyarrow.parquet.ParquetWriter`` for frames shaped like ``first`` (its schema fixes every chunk's)."""
    import pyarrow as pa

    pq = require_parquet()
    schema = pa.Table.from_pandas(first, preserve_index=False).schema
    return pq.ParquetWriter(str(path), schema), schema
