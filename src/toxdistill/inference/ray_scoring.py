"""``toxdistill predict --runner ray``: score Parquet shards or a CSV/JSONL/text file on a Ray cluster.

Ray Data does the work; this module only plans it and checks the result:

- **Row ids are fixed before Ray runs.** The driver reads the Parquet footers (rows per file and per row group),
  so every (file, row group) has a global offset and a row's id is ``offset + its index in the row group``.
  The same input gives the same ids however Ray schedules, splits or retries the work (ids made from task or
  block numbers, like Spark's ``monotonically_increasing_id``, change when a task is retried).
- **One path for every input.** CSV, JSONL and text are streamed through the one reader
  (``data.readers.read_chunks``) into temporary Parquet shards first, then take the Parquet path. For an
  output file only the texts are staged (and stdin is copied first, to be read twice).
- **One writer.** An output file is written by the one writer of scored files
  (``scored_output.ScoredWriter``) from the input read again through the same reader as ``--runner local``
  (``score_file.input_chunks``) and the scores in row-id order: the same bytes as ``--runner local`` writes.
  A folder output gets the scored shards as Ray wrote them, each row with its ``row_id``.
- **Ray Data schedules.** Read tasks over ``from_items`` work items, a fixed pool of scoring actors
  (``ScoringActor``) that load the model once each through the one loader (``predict.load_scorer``), and
  ``write_parquet``. Its map tasks are retried when a worker dies, and its actor pools restart a dead actor and
  retry its tasks: ``max_restarts=-1`` and ``max_task_retries=-1`` are Ray Data's own
  defaults for actor pools (Ray 2.60 deprecates passing them as extra ``map_batches`` arguments).
- **Nothing is published unchecked.** Everything is written next to the output under a temporary name. Only
  after the driver has read back the ``row_id`` column and found every id 0..N-1 exactly once (and, for a
  file, read the input again to the same N rows) is it renamed onto the output; an error leaves no partial
  output and any existing output untouched.

The paths (model, input, output) must be the same on every node: a shared filesystem on a real cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toxdistill.data.readers import (
    as_text,
    open_input,
    open_parquet,
    parquet_shards,
    pick_column,
    require_parquet,
    rows_frame,
    safe_text,
)
from toxdistill.errors import ToxdistillError
from toxdistill.inference.predict import load_scorer
from toxdistill.inference.score_file import ScoreOptions, ScoreSummary, input_chunks
from toxdistill.inference.scored_output import (
    FOLDER,
    ScoredWriter,
    check_output,
    file_format,
    prediction_frame,
    prediction_prefix,
)
from toxdistill.inference.scoring import is_multi_label_scorer
from toxdistill.io import atomic_dir, new_temp_dir, recover_partial_writes

ROW_ID = "row_id"
INSTALL_HINT = "pip install 'toxdistill[ray]'"


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or a one-line error naming the install command."""
    try:
        import ray
        import ray.data  # noqa: F401 - ray without its data extra has no Ray Data
    except ImportError:
        raise ToxdistillError("--runner ray needs Ray Data, which is not installed", INSTALL_HINT) from None
    return ray


# ------------------------------------------------------------------ plan (driver)
@dataclass(frozen=True)
class RowGroup:
    """One unit of work: a Parquet row group and the global row id of its first row."""

    path: str
    row_group: int
    offset: int
    rows: int


@dataclass
class ScoringPlan:
    """The whole job as the driver planned it: every work item, the row count and the input's columns."""

    items: list[RowGroup]
    rows: int
    text_col: str
    columns: list[str]
    bytes: int  # uncompressed, as the footers say: what sizes Ray Data's blocks


def plan_parquet(shards: list[Path], text_col: str | None) -> ScoringPlan:
    """Work items with global offsets, from the footers only (no data pages are read).

    All shards must share one schema: Ray writes each block as it comes, and shards of different columns
    could not be merged into one file or read back as one data set.
    """
    items: list[RowGroup] = []
    offset = size = 0
    schema: Any = None
    first: Path | None = None
    col = ""
    for path in shards:
        meta = open_parquet(path).metadata
        this = meta.schema.to_arrow_schema()
        if schema is None:
            schema, first = this, path
            col = pick_column(list(this.names), text_col, f"input {path}")
            if ROW_ID in this.names:
                raise ToxdistillError(
                    f"input {path} already has a {ROW_ID!r} column, which --runner ray adds", "rename or drop it"
                )
        elif not this.equals(schema, check_metadata=False):
            raise ToxdistillError(f"input {path} has other columns or types than {first}", "give shards of one schema")
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if n:
                items.append(RowGroup(str(Path(path).resolve()), g, offset, n))
                offset += n
                size += meta.row_group(g).total_byte_size
    return ScoringPlan(items, offset, col, list(schema.names) if schema is not None else [], size)


def copy_stdin(folder: Path) -> Path:
    """What stdin gives, copied into ``folder`` (checked as any input is): an output file reads the input twice."""
    src = open_input("-")
    dest = folder / "stdin"
    try:
        with open(dest, "wb") as f:
            shutil.copyfileobj(src.stream, f)
    finally:
        src.close()
    return dest


def stage_text_input(
    spec: str, opts: ScoreOptions, folder: Path, texts_only: bool, stdin_copy: Path | None = None
) -> list[Path]:
    """Stream a CSV/JSONL/text input through the one reader into Parquet shards, one per chunk.

    Memory stays at one chunk. ``texts_only`` stages a ``text`` column of the texts as the reader gives them
    (enough for an output file, which takes the other columns from the input itself); else the first chunk's
    columns and types fix every shard's (as ``predict`` does for a Parquet output), so all shards share one
    schema.
    """
    import pyarrow as pa

    pq = require_parquet()
    folder.mkdir()
    files: list[Path] = []
    schema: Any = None
    columns: list[str] = []
    with input_chunks(spec, opts, stdin_copy) as (fmt, chunks):
        for k, (texts, rows) in enumerate(chunks):
            if texts_only:
                table = pa.table({"text": pa.array(texts, pa.string())})
            else:
                df = rows_frame(fmt, rows)
                if schema is None:
                    columns = [str(c) for c in df.columns]
                else:
                    df = df.reindex(columns=columns)  # JSONL objects may vary; the first chunk's fields are kept
                table = _as_table(df, schema, spec)
                schema = table.schema
            files.append(folder / f"part-{k:06d}.parquet")
            pq.write_table(table, files[-1])
    return files


def _as_table(df: Any, schema: Any, spec: str) -> Any:
    import pyarrow as pa

    try:
        return pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError) as e:
        name = "<stdin>" if spec == "-" else spec
        raise ToxdistillError(
            f"input {name} cannot be stored as Parquet ({str(e).splitlines()[0][:100]})",
            "give fields of one type in every row, or use --runner local",
        ) from None


# ------------------------------------------------------------------ work (Ray workers)
def read_row_groups(items: dict[str, np.ndarray], chunk: int) -> Iterator[Any]:
    """Ray Data task: the rows of each work item, in pieces of ``chunk``, with ``row_id`` as the first column."""
    import pyarrow as pa

    pq = require_parquet()
    for path, g, offset, rows in zip(items["path"], items["row_group"], items["offset"], items["rows"]):
        f = pq.ParquetFile(str(path))
        start = int(offset)
        for batch in f.iter_batches(batch_size=chunk, row_groups=[int(g)]):
            table = pa.Table.from_batches([batch])
            ids = pa.array(np.arange(start, start + table.num_rows, dtype=np.int64))
            start += table.num_rows
            yield table.add_column(0, ROW_ID, ids)
        if start != int(offset) + int(rows):  # the file changed after it was planned: the ids would be wrong
            raise ToxdistillError(f"input {path} changed while it was scored", "do not write to the input meanwhile")


class ScoringActor:
    """Ray Data actor: loads the model once (``predict.load_scorer``), then scores batches (Arrow tables) into
    the output columns.

    The prediction columns come from ``scored_output.prediction_frame``, the same code as ``--runner local``.
    """

    def __init__(
        self,
        model_dir: str,
        backend: str,
        threads: int | None,
        text_col: str,
        batch_size: int,
        clean: bool,
        prefix: str,
        keep_input: bool = True,
    ):
        self.scorer = load_scorer(Path(model_dir), threads, backend)
        self.clean = clean and self.scorer.clean_config is not None
        self.text_col, self.batch_size, self.prefix = text_col, batch_size, prefix
        self.keep_input = keep_input  # False for an output file: the writer takes the input from the input

    def __call__(self, table: Any) -> Any:
        import pyarrow as pa

        texts = [safe_text(as_text(v)) for v in table.column(self.text_col).to_pylist()]
        preds, _ = prediction_frame(self.scorer, texts, self.batch_size, self.clean)
        if not self.keep_input:
            table = table.select([ROW_ID])
        for name in preds.columns:
            table = table.append_column(self.prefix + name, pa.array(preds[name].to_numpy()))
        return table


# ------------------------------------------------------------------ check and merge (driver)
@dataclass(frozen=True)
class RowRange:
    """Consecutive row ids ``first..first+length-1`` at ``start`` in one row group of one output shard."""

    first: int
    file: int
    row_group: int
    start: int
    length: int


def check_row_ids(files: list[Path], n: int) -> list[RowRange]:
    """Read back only the ``row_id`` column: every id 0..n-1 must be there exactly once.

    Returns the ranges of consecutive ids, in id order, which is all a merge into one file needs.
    """
    pq = require_parquet()
    seen = np.zeros(n, dtype=bool)
    ranges: list[RowRange] = []
    for k, path in enumerate(files):
        f = pq.ParquetFile(path)
        for g in range(f.metadata.num_row_groups):
            ids = f.read_row_group(g, columns=[ROW_ID]).column(0).to_numpy()
            if len(ids) == 0:
                continue
            if ids.min() < 0 or ids.max() >= n:
                raise ToxdistillError(f"the Ray job wrote row ids outside 0..{n - 1}", "rerun; nothing was written")
            if seen[ids].any() or len(np.unique(ids)) != len(ids):
                raise ToxdistillError("the Ray job wrote some rows twice", "rerun; nothing was written")
            seen[ids] = True
            starts = np.concatenate([[0], np.flatnonzero(np.diff(ids) != 1) + 1, [len(ids)]])
            ranges += [RowRange(int(ids[a]), k, g, int(a), int(b - a)) for a, b in zip(starts[:-1], starts[1:])]
    missing = n - int(seen.sum())
    if missing:
        raise ToxdistillError(f"the Ray job lost {missing} of {n} rows", "rerun; nothing was written")
    return sorted(ranges, key=lambda r: r.first)


def scores_in_order(files: list[Path], ranges: list[RowRange]) -> Iterator[Any]:
    """The shards' prediction columns (Arrow tables, ``row_id`` dropped) in row-id order, a range at a time."""
    pq = require_parquet()
    readers = [pq.ParquetFile(f) for f in files]
    cached: tuple[tuple[int, int], Any] | None = None
    for r in ranges:
        if cached is None or cached[0] != (r.file, r.row_group):
            cached = ((r.file, r.row_group), readers[r.file].read_row_group(r.row_group))
        yield cached[1].slice(r.start, r.length).drop_columns([ROW_ID])


def merge(scores: Iterator[Any], in_fmt: str, chunks: Iterator[tuple[list[str], Any]], out: ScoredWriter) -> None:
    """Write each input chunk, as the one reader gives it again, with its rows' scores (``scores_in_order``)
    through the one writer: what ``--runner local`` writes for the same chunks."""
    import pyarrow as pa

    pending: list[Any] = []
    have = 0
    for _, rows in chunks:
        while have < len(rows):
            piece = next(scores, None)
            if piece is None:
                break
            pending.append(piece)
            have += piece.num_rows
        if have < len(rows):
            raise _input_changed()
        table = pa.concat_tables(pending)
        out.write(in_fmt, rows, table.slice(0, len(rows)).to_pandas())
        pending, have = [table.slice(len(rows))], have - len(rows)
    if have or next(scores, None) is not None:
        raise _input_changed()


def _input_changed() -> ToxdistillError:
    return ToxdistillError("the input changed while it was scored", "do not write to the input meanwhile; rerun")


# ------------------------------------------------------------------ the command
def output_format(path: Path, spec: str) -> str:
    """``folder`` (Parquet shards) for a folder, a path ending in ``/`` or without suffix; else the file's format."""
    if path.is_dir() or spec.endswith(("/", os.sep)) or not path.suffix:
        return FOLDER
    return file_format(path)  # as --runner local: any other name is CSV


def _check_reachable(address: str | None, flag: str) -> None:
    """A HOST:PORT (or ray://HOST:PORT) that nothing answers on fails now: ray.init would retry it for ever."""
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ToxdistillError(f"{flag} {address} is not HOST:PORT", f"e.g. {flag} 10.0.0.5:6379, or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as e:
        raise ToxdistillError(
            f"cannot reach a Ray cluster at {address} ({e.strerror or e.__class__.__name__})",
            f"start it with 'ray start --head', or check {flag}",
        ) from None


def connect(ray: Any, address: str | None, verbose: bool, flag: str = "--address") -> bool:
    """Join the cluster (or start a local instance); True when this call started Ray, so it must stop it.
    ``flag``: the option that gave ``address``, named in the one-line errors."""
    _check_reachable(address, flag)
    if ray.is_initialized():  # the caller's own session (tests, a notebook): use it and leave it running
        return False
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=verbose,  # worker logs repeat what the one-line error says
            logging_level=logging.INFO if verbose else logging.ERROR,
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ToxdistillError(
            f"cannot connect to Ray at {address or 'the default address'}: {str(e).splitlines()[0][:160]}",
            f"start it with 'ray start --head', or check {flag}",
        ) from None
    if not verbose:  # Ray Data's plan, progress and error reports: the one-line error says it, -v shows them
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    return True


def _user_error(e: BaseException) -> ToxdistillError:
    """A Ray failure as one line: our own error from a worker as it was raised, anything else by its root cause."""
    chain: list[BaseException] = []
    x: Any = e
    while isinstance(x, BaseException) and all(x is not c for c in chain):
        chain.append(x)
        x = getattr(x, "cause", None) or x.__cause__  # RayTaskError keeps the worker's exception in .cause
    for x in chain:
        if isinstance(x, ToxdistillError) and hasattr(x, "problem"):
            return ToxdistillError(x.problem, x.fix)
    root = chain[-1]
    first = (str(root).strip().splitlines() or [""])[0].strip()
    return ToxdistillError(
        f"the Ray job failed: {root.__class__.__name__}: {first[:200]}", "run with -v for the workers' logs"
    )


@dataclass
class _Job:
    """One ``predict_ray`` call as the driver sees it: what is read, where it goes, its temporary folder."""

    input_spec: str
    opts: ScoreOptions
    out_path: Path
    out_format: str
    work: Path  # temporary, next to the output
    label_names: list[str]
    multi_label: bool = False  # the model's: its prediction columns
    stdin_copy: Path | None = None
    rows: int = 0

    @property
    def to_file(self) -> bool:
        return self.out_format != FOLDER


def predict_ray(
    model_dir: str | Path,
    input_spec: str,
    output: str,
    opts: ScoreOptions | None = None,
    *,
    address: str | None = None,
    actors: int | None = None,
    verbose: bool = False,
    actor_class: type[ScoringActor] = ScoringActor,
) -> ScoreSummary:
    """Score ``input_spec`` on a Ray cluster into ``output`` (see the module docstring), each actor with
    ``opts.threads`` threads (default 1). ``actor_class`` is the scoring actor, a subclass in tests that kill a
    worker."""
    opts = opts or ScoreOptions()
    ray = require_ray()
    pq_shards = parquet_shards(input_spec)
    out_path = Path(output)
    out_format = output_format(out_path, output)
    inputs = [Path(p).resolve() for p in pq_shards] if pq_shards else []
    if input_spec != "-":
        inputs.append(Path(input_spec).resolve())
    check_output(out_path, out_format, inputs, folders=True)
    if pq_shards is None and input_spec != "-":  # stdin is checked as it is copied
        open_input(input_spec).close()  # a typo or a binary file fails now, before the model loads

    # Loaded in the driver too: a bad model folder fails in seconds, and the label names fix the columns.
    scorer = load_scorer(Path(model_dir), backend=opts.backend)
    # Temporary files live next to the output: the same filesystem (the renames are atomic) and, on a
    # cluster, as visible to the workers as the output itself. The folder is named after this process, so the
    # one a killed predict left (SIGKILL, a power cut) is recognised and removed by the next predict of it.
    recover_partial_writes(out_path.parent, out_path.name)
    work = new_temp_dir(out_path, "tmp")
    job = _Job(input_spec, opts, out_path, out_format, work, scorer.label_names, is_multi_label_scorer(scorer))
    started = False
    try:
        plan = _plan(job, pq_shards)
        started = connect(ray, address, verbose)
        if actors is None:
            actors = max(1, int(ray.cluster_resources().get("CPU", 1)) // (opts.threads or 1))
        _run(ray, job, plan, model_dir, actors, actor_class, verbose)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if started:
            with contextlib.suppress(Exception):
                ray.shutdown()
    cleaned = opts.clean and scorer.clean_config is not None
    return ScoreSummary(plan.rows, out_path, scorer.backend_name, cleaned, actors=actors)


def _plan(job: _Job, pq_shards: list[Path] | None) -> ScoringPlan:
    """Stage a text input (stdin copied first) and plan the work from the Parquet footers."""
    if pq_shards is None and job.input_spec == "-":
        job.stdin_copy = copy_stdin(job.work)
    shards = pq_shards or stage_text_input(job.input_spec, job.opts, job.work / "input", job.to_file, job.stdin_copy)
    plan = plan_parquet(shards, "text" if pq_shards is None and job.to_file else job.opts.text_col)
    if plan.rows == 0:
        raise ToxdistillError(f"input {job.input_spec} has no texts", "give a file with at least one text")
    job.rows = plan.rows
    return plan


def _run(
    ray: Any,
    job: _Job,
    plan: ScoringPlan,
    model_dir: str | Path,
    actors: int,
    actor_class: type[ScoringActor],
    verbose: bool,
) -> None:
    """Build the Ray Data pipeline for ``plan``, run it and publish the checked result."""
    opts = job.opts
    threads = opts.threads or 1
    # Rows per actor call: --chunk-size, or less on a small input so that every actor gets work (two calls
    # each), also when the whole input is one row group. Not less: the Predictor sorts by length within a
    # call, and 375-row calls scored 3,000 tweets 25% slower than one 3,000-row call (bench/ray_predict.py).
    piece = max(1, min(opts.chunk_size, -(-plan.rows // (2 * actors))))
    actor_kwargs = {
        "model_dir": str(Path(model_dir).resolve()),
        "backend": opts.backend,
        "threads": threads,
        "text_col": plan.text_col,
        "batch_size": opts.batch_size,
        "clean": opts.clean,
        # An output file: the writer adds the prefix, from the input's columns, as for --runner local.
        "prefix": "" if job.to_file else prediction_prefix(plan.columns, job.label_names, job.multi_label),
        "keep_input": not job.to_file,
    }
    # A dataset copies Ray Data's settings when it is made: made and run inside the block.
    with _data_context(ray, _data_settings(plan, piece, opts.progress, verbose)):
        ds = _scored_dataset(ray, plan, piece, actors, threads, actor_class, actor_kwargs)
        _publish(ds, job, actors)


def _data_settings(plan: ScoringPlan, piece: int, progress: bool, verbose: bool) -> dict[str, Any]:
    return {
        # Ray Data cuts a task's output into blocks by bytes (128 MiB by default), and one block goes to one
        # actor: a row group of 100k tweets would be scored by one actor while the others wait. Blocks of
        # about `piece` rows (estimated from the footers; smaller is harmless, the actors' calls are bundled
        # back up to `piece` rows) let every actor share even one big row group.
        "target_max_block_size": max(1 << 16, plan.bytes * piece // (2 * plan.rows)),
        "enable_progress_bars": progress,
        "print_on_execution_start": verbose,
        "max_errored_blocks": 0,  # a setting that skips failed blocks would lose rows silently
        "raise_original_map_exception": True,  # our one-line errors reach the driver as raised, not wrapped
    }


def _scored_dataset(
    ray: Any,
    plan: ScoringPlan,
    piece: int,
    actors: int,
    threads: int,
    actor_class: type[ScoringActor],
    actor_kwargs: dict[str, Any],
) -> Any:
    """The lazy Ray Data pipeline: work items → rows with their ids → a pool of scoring actors."""
    ds = ray.data.from_items([asdict(i) for i in plan.items], override_num_blocks=len(plan.items))
    # Reading and writing are I/O beside the model's work: they reserve no CPU (the actors may hold every
    # core, and tasks waiting for a free one would wait forever), and run at most one per actor at a time.
    ds = ds.map_batches(
        read_row_groups,
        fn_kwargs={"chunk": piece},
        batch_size=None,
        num_cpus=0,
        compute=ray.data.TaskPoolStrategy(size=actors),
    )
    return ds.map_batches(
        actor_class,
        fn_constructor_kwargs=actor_kwargs,
        compute=ray.data.ActorPoolStrategy(size=actors),
        batch_size=piece,
        batch_format="pyarrow",
        num_cpus=threads,
    )


def _publish(ds: Any, job: _Job, actors: int) -> None:
    """Run the job, check every row id is there once, and only then put the result at the output."""
    if not job.to_file:
        with atomic_dir(job.out_path) as tmp:
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the output from the cluster's other users
            _write(ds, tmp, actors)
            check_row_ids(sorted(tmp.glob("*.parquet")), job.rows)
        return
    scored = job.work / "scored"
    _write(ds, scored, actors)
    files = sorted(scored.glob("*.parquet"))
    scores = scores_in_order(files, check_row_ids(files, job.rows))
    with (
        input_chunks(job.input_spec, job.opts, job.stdin_copy) as (in_fmt, chunks),
        ScoredWriter(job.out_path, job.out_format, job.label_names, job.multi_label) as out,
    ):
        merge(scores, in_fmt, chunks, out)
        out.publish()


@contextlib.contextmanager
def _data_context(ray: Any, settings: dict[str, Any]) -> Iterator[None]:
    """Ray Data's settings for this job, restored afterwards: a caller's own Ray session keeps its own."""
    ctx = ray.data.DataContext.get_current()
    before = {k: getattr(ctx, k, None) for k in settings}
    for k, v in settings.items():
        setattr(ctx, k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            setattr(ctx, k, v)


def _write(ds: Any, folder: Path, tasks: int) -> None:
    try:
        ds.write_parquet(str(folder), ray_remote_args={"num_cpus": 0}, concurrency=tasks)
    except Exception as e:  # noqa: BLE001 - any failure inside Ray becomes one line, not a remote traceback
        raise _user_error(e) from None
