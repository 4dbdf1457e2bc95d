"""``toxdistill predict``: score a CSV, JSONL, text or Parquet input (or stdin) with a model, in bounded memory.

The command parses and reports; the runners do the work: ``inference.score_file`` in this process
(``--runner local``) and ``inference.ray_scoring`` on a Ray cluster (``--runner ray``). Both write through the
one writer of scored files (``inference.scored_output``), so they write the same files.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

from toxdistill.cli import options
from toxdistill.data.readers import MAX_LINE_BYTES
from toxdistill.errors import ToxdistillError
from toxdistill.inference.ray_scoring import predict_ray, require_ray
from toxdistill.inference.score_file import ScoreOptions, score_file

NAME = "predict"
HELP = "score a CSV / JSONL / text / Parquet input (or stdin) with a model; streams, so any size works"
DESCRIPTION = """\
Score every text in INPUT with MODEL_DIR (a model folder or an ONNX export) and write the rows in input order
with label, label_id, p_<class> and truncated columns (a multi-label model: labels, the decided labels joined
by | in CSV and Parquet, a list in JSONL, then p_<label> and truncated). INPUT is a CSV (text column: --text-col, else a column
named text, tweet or comment), JSONL (one object per line; field --text-col or text), Parquet (a .parquet
file, a folder of them or a quoted glob like 'shards/*.parquet'), plain text (one text per line; blank lines
skipped) or - for stdin. The output is CSV, JSONL when -o ends with .jsonl, or Parquet when it ends with
.parquet; it appears only when complete.

--runner ray scores on a Ray cluster (pip install 'toxdistill[ray]'; see docs/scoring.md). Its output file
is written by the same writer as --runner local's: the same rows, columns and format (with --batch-size 1 and
--threads 1, the same bytes; other batches can move a probability's last digit). Its -o may also be a folder
(a name without suffix, or ending in /), which gets Parquet shards with a row_id column (0..N-1 in input
order).

A line of the input longer than --max-line-bytes (default 1 MiB) is refused with its line number, before it
is read whole. Interrupted (Ctrl-C, SIGTERM) or failing, predict removes its temporary .part file and leaves an
existing output as it was; a .part left by a killed predict (SIGKILL) is removed by the next predict writing
the same output. There is no resume: a stopped predict starts over.
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
    p.add_argument(
        "--max-line-bytes",
        type=int,
        default=MAX_LINE_BYTES,
        metavar="N",
        help=f"refuse an input line longer than N bytes, before reading it whole (default: {MAX_LINE_BYTES}, 1 MiB: "
        "hundreds of times what a model reads of a text, which keeps a file without line breaks from filling "
        "memory)",
    )
    options.add_threads(p)
    options.add_backend(p)
    p.add_argument("--no-clean", action="store_true", help="score texts as given, without the run's data.clean steps")
    p.add_argument(
        "--progress", default="auto", choices=["auto", "on", "off"], help="progress bar on stderr (auto: on a terminal)"
    )
    p.add_argument(
        "--runner",
        default="local",
        choices=["local", "ray"],
        help="where the scoring runs: local: this process (default); ray: a Ray cluster through Ray Data "
        "(docs/scoring.md)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="--runner ray: the cluster, e.g. auto, HOST:6379 or ray://HOST:10001 "
        "(default: $RAY_ADDRESS, a cluster started on this machine, else a new local instance)",
    )
    p.add_argument(
        "--actors",
        type=int,
        default=None,
        help="--runner ray: scoring actors; each loads the model once and runs --threads threads (there: default 1). "
        "Default: the cluster's CPUs / threads",
    )


class Terminated(BaseException):
    """SIGTERM, raised where predict is: a BaseException so that it unwinds like Ctrl-C, through every clean-up."""


@contextlib.contextmanager
def _terminate_unwinds() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler stopping the job) unwinds predict like Ctrl-C instead of ending the process
    on the spot, so the writer removes its .part file. A handler can only be set in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(a: argparse.Namespace) -> int:
    options.at_least(a, batch_size=1, chunk_size=1, threads=1, actors=1, max_line_bytes=1)
    try:
        with _terminate_unwinds():
            return _score(a)
    except (KeyboardInterrupt, Terminated) as e:
        why = "interrupted" if isinstance(e, KeyboardInterrupt) else "stopped (SIGTERM)"
        print(f"toxdistill: predict {why}; {a.output} was not written (an existing one is unchanged)", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else 128 + signal.SIGTERM


def _score(a: argparse.Namespace) -> int:
    opts = ScoreOptions(
        text_col=a.text_col,
        fmt=a.format,
        batch_size=a.batch_size,
        chunk_size=a.chunk_size,
        threads=a.threads,
        backend=a.backend,
        clean=not a.no_clean,
        progress=a.progress == "on" or (a.progress == "auto" and sys.stderr.isatty()),
        max_line_bytes=a.max_line_bytes,
    )
    if a.runner == "ray":
        return _main_ray(a, opts)
    if a.address is not None or a.actors is not None:
        raise ToxdistillError("--address and --actors apply to --runner ray only", "add --runner ray or drop them")
    s = score_file(a.model_dir, a.input, a.output, opts)
    note = f"; {s.truncated} truncated to {s.max_length} tokens" if s.truncated else ""
    cleaned = " (cleaned as in training)" if s.cleaned else ""
    print(f"toxdistill: wrote {s.rows} predictions{cleaned} to {s.output} ({s.backend} backend{note})", file=sys.stderr)
    return 0


def _main_ray(a: argparse.Namespace, opts: ScoreOptions) -> int:
    require_ray()  # without Ray: the install hint, before anything else is checked
    s = predict_ray(
        a.model_dir, a.input, a.output, opts, address=a.address, actors=a.actors, verbose=getattr(a, "verbose", False)
    )
    cleaned = " (cleaned as in training)" if s.cleaned else ""
    print(
        f"toxdistill: wrote {s.rows} predictions{cleaned} to {s.output} "
        f"(ray runner, {s.actors} actor{'s' if s.actors != 1 else ''}, {s.backend} backend)",
        file=sys.stderr,
    )
    return 0
