"""``toxdistill predict``: score a CSV, JSONL or text file (or stdin) in bounded memory.

Input is read in chunks by the one reader (``data.readers``), each chunk is scored by the
one ``Predictor`` (length-sorted batches, input order kept) and appended to a temporary file next to the
output. Only a complete run is renamed onto ``-o``; an error leaves any existing output untouched.

``--engine ray`` hands the same work to Ray Data (``inference.distributed``); both engines compute the
prediction columns with ``prediction_frame`` below.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from toxdistill.cli import options
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
from toxdistill.inference.predict import prediction_frame, prediction_prefix

NAME = "predict"
HELP = "score a CSV / JSONL / text / Parquet input (or stdin) with a model; streams, so any size works"
DESCRIPTION = """\
Score every text in INPUT with MODEL_DIR (a model folder or an ONNX export) and write the rows in input order
with label, label_id, p_<class> and truncated columns. INPUT is a CSV (text column: --text-col, else a column
named text, tweet or comment), JSONL (one object per line; field --text-col or text), Parquet (a .parquet
file, a folder of them or a quoted glob like 'shards/*.parquet'), plain text (one text per line; blank lines
skipped) or - for stdin. The output is CSV, JSONL when -o ends with .jsonl, or Parquet when it ends with
.parquet; it appears only when complete.

--engine ray scores on a Ray cluster (pip install 'toxdistill[ray]'; see docs/scoring.md) and adds a row_id
column (0..N-1 in input order). Its -o may also be a folder (a name without suffix, or ending in /), which
gets Parquet shards.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="MODEL_DIR", help="model folder, e.g. runs/<name>/models/odd or an export")
    p.add_argument(
        "input",
        metavar="INPUT",
        help="input file (.csv, .tsv, .jsonl, .txt, .parquet), a folder or glob of .parquet shards, or - for stdin",
    )
    p.add_argument("-o", "--output", required=True, help="output file (.csv, .jsonl or .parquet)")
    p.add_argument("--text-col", default=None, help="CSV column / JSONL field holding the text")
    p.add_argument(
        "--format",
        default="auto",
        choices=["auto", "csv", "tsv", "jsonl", "txt"],
        help="input format (default: from the suffix)",
    )
    options.add_batch_size(p)
    p.add_argument(
        "--chunk-size", type=int, default=8192, help="rows read, scored and written at a time (default: 8192)"
    )
    options.add_threads(p)
    options.add_backend(p)
    p.add_argument("--no-clean", action="store_true", help="score texts as given, without the run's data.clean steps")
    p.add_argument(
        "--progress", default="auto", choices=["auto", "on", "off"], help="progress bar on stderr (auto: on a terminal)"
    )
    p.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="local: this process (default); ray: a Ray cluster through Ray Data (docs/scoring.md)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="--engine ray: the cluster, e.g. auto, HOST:6379 or ray://HOST:10001 "
        "(default: $RAY_ADDRESS, a cluster started on this machine, else a new local instance)",
    )
    p.add_argument(
        "--actors",
        type=int,
        default=None,
        help="--engine ray: scoring actors; each loads the model once and runs --threads threads (there: default 1). "
        "Default: the cluster's CPUs / threads",
    )


# ------------------------------------------------------------------ output (shared by both engines)
def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


class _Output:
    """Appends scored chunks to the temporary output file: CSV, JSONL or Parquet (from the -o suffix).

    CSV and Parquet keep the first chunk's columns (and Parquet its types); JSONL objects may vary.
    """

    def __init__(self, tmp: str, fd: int, kind: str):
        self.kind, self.tmp = kind, tmp
        self.columns: list | None = None
        self.parquet: Any = None  # pyarrow's ParquetWriter, made from the first chunk
        self.schema: Any = None
        self.f: Any = None
        if kind == "parquet":
            os.close(fd)  # pyarrow opens the path itself
        else:
            self.f = os.fdopen(fd, "w", encoding="utf-8", newline="")

    def write(self, left, preds) -> None:
        import pandas as pd

        if self.kind == "jsonl":
            lefts = left if isinstance(left, list) else left.to_dict("records")
            for row, p in zip(lefts, preds.to_dict("records")):
                self.f.write(json.dumps({**row, **p}, ensure_ascii=False, default=_json_default) + "\n")
            return
        if isinstance(left, list):
            left = pd.DataFrame.from_records(left)
        frame = pd.concat([left, preds], axis=1)
        first = self.columns is None
        if not first:
            frame = frame.reindex(columns=self.columns)
        self.columns = list(frame.columns)
        if self.kind == "csv":
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


def _check_output(path: Path) -> None:
    parent = path.parent
    if path.is_dir():
        raise ToxdistillError(f"output {path} is a folder", "give a file name, e.g. -o predictions.csv")
    if not parent.is_dir():
        raise ToxdistillError(f"output folder {parent} does not exist", "create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ToxdistillError(f"cannot write to output folder {parent}", "check its permissions or pick another -o")
    if path.exists() and not os.access(path, os.W_OK):
        raise ToxdistillError(f"output {path} is not writable", "check its permissions or pick another -o")


def main(a: argparse.Namespace) -> int:

    options.at_least(a, batch_size=1, chunk_size=1, threads=1, actors=1)
    if a.engine == "ray":
        return _main_ray(a)
    if a.address is not None or a.actors is not None:
        raise ToxdistillError("--address and --actors apply to --engine ray only", "add --engine ray or drop them")
    out_path = Path(a.output)
    _check_output(out_path)
    suffix = out_path.suffix.lower()
    out_kind = "jsonl" if suffix in {".jsonl", ".ndjson"} else "parquet" if suffix == ".parquet" else "csv"
    if out_kind == "parquet":
        require_parquet()  # a missing pyarrow fails now, not after the input was read
    # Check the input before loading the model: a typo should fail in a second.
    with contextlib.ExitStack() as stack:
        shards = parquet_shards(a.input)
        if shards is not None:
            fmt, name = "parquet", f"input {a.input}"
            chunks = read_parquet(shards, a.text_col, a.chunk_size)
        else:
            src = stack.enter_context(contextlib.closing(open_input(a.input)))
            fmt = detect_format(src, a.format, a.text_col)
            chunks = read_chunks(src, fmt, a.text_col, a.chunk_size)
            name = f"{src.what} {src.name}"
        first = next(chunks, None)  # fails now on a bad header / missing column / bad first line
        if first is None:
            raise ToxdistillError(f"{name} has no texts", "give a file with at least one text")

        from toxdistill.inference.predict import Predictor

        pred = Predictor.load(a.model_dir, backend=a.backend, threads=a.threads)
        clean = not a.no_clean and pred.clean_config is not None

        try:
            fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".part")
        except OSError as e:
            raise ToxdistillError(
                f"cannot write to output folder {out_path.parent}: {e.strerror}",
                "check its permissions or pick another -o",
            ) from None
        n = n_trunc = 0
        bar = None
        out = _Output(tmp, fd, out_kind)
        try:
            if a.progress != "off":
                from tqdm.auto import tqdm

                bar = tqdm(
                    desc="predict",
                    unit=" rows",
                    unit_scale=True,
                    disable=None if a.progress == "auto" else False,
                    file=sys.stderr,
                )
            prefix = None
            for texts, rows in _chain(first, chunks):
                preds, t = prediction_frame(pred, texts, a.batch_size, clean)
                # JSONL objects as read, written back unchanged (JSONL output) or flattened (CSV, Parquet)
                left = rows if fmt == "jsonl" else rows_frame(fmt, rows)
                if prefix is None:
                    names = left.columns if hasattr(left, "columns") else set().union(*map(set, rows))
                    prefix = prediction_prefix(names, pred.label_names)
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
    note = f"; {n_trunc} truncated to {pred.max_length} tokens" if n_trunc else ""
    cleaned = " (cleaned as in training)" if clean else ""
    print(
        f"toxdistill: wrote {n} predictions{cleaned} to {out_path} ({pred.backend_name} backend{note})", file=sys.stderr
    )
    return 0


def _main_ray(a: argparse.Namespace) -> int:
    from toxdistill.inference.distributed import predict_ray, require_ray

    require_ray()  # without Ray: the install hint, before anything else is checked
    s = predict_ray(
        a.model_dir,
        a.input,
        a.output,
        text_col=a.text_col,
        fmt=a.format,
        batch_size=a.batch_size,
        chunk_size=a.chunk_size,
        threads=a.threads,
        backend=a.backend,
        clean=not a.no_clean,
        address=a.address,
        actors=a.actors,
        progress=a.progress == "on" or (a.progress == "auto" and sys.stderr.isatty()),
        verbose=getattr(a, "verbose", False),
    )
    cleaned = " (cleaned as in training)" if s.cleaned else ""
    print(
        f"toxdistill: wrote {s.rows} predictions{cleaned} to {s.output} "
        f"(ray engine, {s.actors} actor{'s' if s.actors != 1 else ''}, {s.backend} backend)",
        file=sys.stderr,
    )
    return 0


def _chain(first, rest):
    yield first
    yield from rest
