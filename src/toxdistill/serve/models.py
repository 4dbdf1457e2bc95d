"""The models a server holds: found in a run folder, loaded once, safe to share between request threads.

Nothing here imports FastAPI, so the CLI can check the folder (and fail fast with one line) before the
optional web dependencies are even needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from toxdistill.errors import ToxdistillError
from toxdistill.files import MULTI_LABEL_TASK
from toxdistill.inference.export_record import engine_cpu_note
from toxdistill.inference.predict import Predictor, load_scorer
from toxdistill.inference.scoring import Scorer, is_multi_label_scorer, score_results
from toxdistill.runs import find_models, read_meta, read_selection, select_models

log = logging.getLogger(__name__)

_WORD = re.compile(r"\S+")
# Characters of a cleaned text that reach the tokenizer: 32 per token of the model's window. English averages
# about 4 characters per token, so only a text far longer than the window is cut, and the cut is marked as
# truncated; without it a 1 MB text was tokenized whole (seconds) only to keep its first tokens.
CHARS_PER_TOKEN = 32


class ModelObserver(Protocol):
    """What a model reports as it works (``serve.metrics.ModelStats`` turns it into Prometheus metrics)."""

    def scored(self, texts: int) -> None: ...
    def waited(self, seconds: float) -> None: ...
    def micro_batch(self, texts: int) -> None: ...


class ShadowSink(Protocol):
    """Where a model offers what it scored, to be scored again off the request path (``serve.shadow.Shadow``)."""

    def offer(self, model: ServedModel, texts: Sequence[str], logits: np.ndarray) -> None: ...


class QueueTimeout(Exception):
    """A job waited in the micro-batcher's queue longer than its ``queue_timeout_s`` before its batch started."""


@dataclass(eq=False)
class _Job:
    texts: list[str]
    # An asyncio future (``loop`` is its loop) for the async API, a concurrent one for threads.
    fut: Any
    loop: asyncio.AbstractEventLoop | None
    queued: float  # time.monotonic() when it was queued

    def abandoned(self) -> bool:
        # Read from the model thread: a cancelled asyncio future only ever stays cancelled, so a stale read at
        # worst runs one job whose caller has just left.
        return self.loop is not None and self.fut.done()


def _settle(results: list[tuple[Any, Any, BaseException | None]]) -> None:
    """On the event loop: hand each waiting coroutine its rows (or its error), skipping those that left."""
    for fut, out, exc in results:
        if fut.done():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(out)


def _rows(out: Any, start: int, end: int) -> Any:
    """A caller's share of a batch's output: each array of a tuple, or the slice of a list."""
    if isinstance(out, tuple):
        return tuple(x[start:end] for x in out)
    return out[start:end]


# The most texts one pass gathers from waiting requests: four 32-text requests, which the pass sorts by length and
# cuts (``Predictor.logits``). With 32, a 32-text request ran alone, padded to its longest tweet; 128 scored 17-20%
# more texts/s in 32-text requests at 8 connections and the same in single-text ones (the shipped CNN in OpenVINO
# int8, --workers 2, AVX-512 EPYC; docs/serving.md, "Load"). Single texts at 32 connections never fill it.
DEFAULT_MAX_BATCH = 128


class MicroBatcher:
    """Gathers small concurrent requests for one model into one forward pass, on a thread of its own.

    The model thread takes the first waiting job, then everything already queued, then keeps collecting
    for up to ``wait_ms`` (or until ``max_batch`` texts); it runs them as one batch and hands each caller
    its own rows. Under load the queue fills while the model is busy, so batches form even with
    ``wait_ms=0``; a lone request pays at most ``wait_ms`` extra latency. A job larger than ``max_batch``
    runs as a batch of its own.

    ``submit`` blocks a thread; ``submit_async`` returns an asyncio future that the model thread resolves
    through ``loop.call_soon_threadsafe`` (one call per batch), so a waiting request holds no thread. A job
    whose future was cancelled (its client hung up) is skipped, and one that waited longer than
    ``queue_timeout_s`` before its batch started fails with ``QueueTimeout`` instead of running late.
    """

    def __init__(
        self,
        run: Callable[[list[str]], Any],
        wait_ms: float,
        max_batch: int,
        name: str = "",
        queue_timeout_s: float | None = None,
    ):
        self._run = run
        self.wait_s = max(0.0, wait_ms) / 1000.0
        self.max_batch = max_batch
        self.queue_timeout_s = queue_timeout_s
        self.batches = 0  # forward passes made, for tests and logs
        self.jobs = 0
        self.skipped = 0  # jobs dropped because their caller had left
        self.timed_out = 0  # jobs refused because they waited past queue_timeout_s
        self.observer: ModelObserver | None = None
        self._q: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, texts: list[str]) -> Any:
        fut: Future = Future()
        self._q.put(_Job(texts, fut, None, time.monotonic()))
        return fut.result()

    def submit_async(self, texts: list[str]) -> asyncio.Future:
        """The rows for ``texts``, awaitable on the running loop; cancel it to drop the job if not yet run."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._q.put(_Job(texts, fut, loop, time.monotonic()))
        return fut

    @property
    def waiting(self) -> int:
        """Jobs queued and not yet taken into a batch (approximate, for metrics and admission)."""
        return self._q.qsize()

    @property
    def alive(self) -> bool:
        """Whether the model thread still runs: without it every request would wait out its queue timeout."""
        return self._thread.is_alive()

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._q.get()
            if first is None:
                break
            jobs, stop = self._gather(first)
            jobs = self._admit(jobs)
            if jobs:
                self._run_batch(jobs)
        # Anything that arrived after the stop signal still gets an answer.
        while True:
            try:
                late = self._q.get_nowait()
            except queue.Empty:
                return
            if late is not None:
                self._deliver([(late, None, RuntimeError("server is shutting down"))])

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """The first job and those that join it: everything queued, and more for up to ``wait_s``."""
        jobs = [first]
        n = len(first.texts)
        deadline = time.monotonic() + self.wait_s
        while n < self.max_batch:
            try:
                # Non-blocking once the deadline has passed: still take what is already queued.
                left = deadline - time.monotonic()
                nxt = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return jobs, True
            jobs.append(nxt)
            n += len(nxt.texts)
        return jobs, False

    def _admit(self, jobs: list[_Job]) -> list[_Job]:
        """The jobs worth running: not abandoned by their callers, and not waiting past the queue timeout."""
        now = time.monotonic()
        keep, late = [], []
        for job in jobs:
            if job.abandoned():
                self.skipped += 1
            elif self.queue_timeout_s is not None and now - job.queued > self.queue_timeout_s:
                late.append((job, None, QueueTimeout(f"waited {now - job.queued:.2f} s for the model")))
            else:
                keep.append(job)
        if late:
            self.timed_out += len(late)
            self._deliver(late)
        return keep

    def _run_batch(self, jobs: list[_Job]) -> None:
        texts = [t for job in jobs for t in job.texts]
        try:
            out = self._run(texts)
        except BaseException as e:  # noqa: BLE001 - every waiting caller must hear about the failure
            self._deliver([(job, None, e) for job in jobs])
            return
        self.batches += 1
        self.jobs += len(jobs)
        if self.observer is not None:
            self.observer.micro_batch(len(texts))
        done, start = [], 0
        for job in jobs:
            end = start + len(job.texts)
            done.append((job, _rows(out, start, end), None))
            start = end
        self._deliver(done)

    @staticmethod
    def _deliver(outcomes: Sequence[tuple[_Job, Any, BaseException | None]]) -> None:
        """Threads' futures are set here; each event loop gets one callback for all of its jobs."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, BaseException | None]]] = {}
        for job, out, exc in outcomes:
            if job.loop is None:
                if exc is not None:
                    job.fut.set_exception(exc)
                else:
                    job.fut.set_result(out)
            else:
                by_loop.setdefault(job.loop, []).append((job.fut, out, exc))
        for loop, results in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, results)


@dataclass
class ServedModel:
    name: str
    folder: Path
    scorer: Scorer
    meta: dict
    # Fast tokenizers raise "Already borrowed" when two threads change truncation at once, and two
    # forward passes on the same model would fight over the same cores anyway: one at a time per model.
    lock: threading.Lock = field(default_factory=threading.Lock)
    batcher: MicroBatcher | None = None
    # Set by the app that serves the model (serve.metrics); the model's own, so apps sharing it agree.
    observer: ModelObserver | None = None
    # A shipped RUN/best/ folder's selection.json: why it was chosen, and its row of the run's frontier.
    selection: dict = field(default_factory=dict)
    # Set by ``serve --shadow`` (serve.shadow): a reference model that rescores a share of the texts.
    shadow: ShadowSink | None = None

    @property
    def label_names(self) -> list[str]:
        return self.scorer.label_names

    @property
    def frontier_row(self) -> dict:
        """The shipped model's row of the run's frontier (its source model, engine and bench speed); {} otherwise."""
        row = self.selection.get("row")
        return row if isinstance(row, dict) else {}

    @property
    def title(self) -> str:
        """The name the model pickers show: a shipped best/ says which model and engine it is."""
        row = self.frontier_row
        if not row:
            return self.name
        return f"{self.name} ({row.get('model', '?')}, {row.get('backend', '?')})"

    @property
    def focus_class(self) -> str:
        """The class of interest (the run's ``data.focus_class``, as the folder's metadata records it), else the
        first class: what ``focus_class`` defaults to, and all that folders written before it was recorded have."""
        named = self.meta.get("focus_class")
        return named if named in self.label_names else self.label_names[0]

    @property
    def metrics(self) -> dict:
        return self.meta.get("metrics") or {}

    @property
    def f1_macro(self) -> float | None:
        return _num(self.metrics.get("f1_macro"))

    @property
    def throughput(self) -> float | None:
        """Texts per second: a shipped best/'s own engine as the frontier benched it, else the speed measured
        after training (an export copies its source's, which is torch's)."""
        shipped = _num(self.frontier_row.get("samples_per_s"))
        return shipped if shipped is not None else _num(self.metrics.get("throughput_sps"))

    @property
    def confusion_png(self) -> Path | None:
        return self.own_file("confusion.png")

    def own_file(self, name: str) -> Path | None:
        """The model folder's regular file ``name``, or None: a link that leads outside the folder (or to no
        file) is not the model's, and the pages that show it need no key."""
        folder = self.folder.resolve()
        f = (folder / name).resolve()
        return f if f.is_relative_to(folder) and f.is_file() else None

    @property
    def max_chars(self) -> int:
        """How much of a cleaned text is tokenized (``CHARS_PER_TOKEN``)."""
        return CHARS_PER_TOKEN * self.scorer.max_length

    def prepare(self, texts: Sequence[str]) -> list[str]:
        """Clean raw user text the way the model's training data was cleaned (mentions, URLs, HTML)."""
        return self.scorer.prepare(texts)

    def score(self, texts: Sequence[str], batch_size: int = 64, offer: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Logits for raw texts: one model pass. Every path (API, page, micro-batcher, file upload) comes
        through here, so every path cleans the same way, and the shadow (when ``offer``) samples every path;
        cleaning runs outside the lock (it touches no model state)."""
        raw = texts
        texts = self.prepare(raw)
        cut = np.array([len(t) > self.max_chars for t in texts], dtype=bool)
        with self.lock:
            logits, truncated = self.scorer.logits([t[: self.max_chars] for t in texts], batch_size)
        if self.observer is not None:
            self.observer.scored(len(texts))
        if offer and self.shadow is not None:
            self.shadow.offer(self, raw, logits)
        return logits, np.asarray(truncated, dtype=bool) | cut

    def logits(self, texts: Sequence[str], batch_size: int = 64, offer: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``score``, timed for the latency metric as the caller waits for it."""
        t0 = time.perf_counter()
        out = self.score(texts, batch_size, offer)
        if self.observer is not None:
            self.observer.waited(time.perf_counter() - t0)
        return out

    def logits_batched(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Logits for a caller that holds a thread and no micro-batcher: one model pass under the lock."""
        return self.logits(texts)

    def batch_results(self, texts: list[str]) -> list[dict]:
        """What the micro-batcher runs on its thread for each batch: the model pass and the results of every
        row at once, so the calibration's numpy work is done once per batch rather than once per request."""
        return self.results(*self.score(texts))

    def classify_batched(self, texts: list[str]) -> list[dict]:
        """Results for ``texts`` from a thread: through the micro-batcher when there is one (the latency
        metric then counts the wait for the batch too)."""
        if self.batcher is None:
            return self.results(*self.logits_batched(texts))
        t0 = time.perf_counter()
        out = self.batcher.submit(texts)
        if self.observer is not None:
            self.observer.waited(time.perf_counter() - t0)
        return list(out)

    async def classify_async(self, texts: list[str], gone: Awaitable[Any] | None = None) -> list[dict] | None:
        """Results for ``texts`` on the event loop, holding no thread while the model thread works.

        ``gone`` finishes when the client hangs up: the job is then cancelled (the batcher skips it if it has
        not run yet) and the answer is None. Without a micro-batcher the pass runs on the loop's executor.
        """
        if self.batcher is None:
            loop = asyncio.get_running_loop()
            work: asyncio.Future = loop.run_in_executor(None, self.classify_batched, texts)
        else:
            work = self.batcher.submit_async(texts)
        t0 = time.perf_counter()
        watch = None
        if gone is not None:
            watch = asyncio.ensure_future(gone)
            # A callback rather than asyncio.wait: no extra futures per request on the hot path.
            watch.add_done_callback(lambda _: work.cancel())
        try:
            out = await work
        except asyncio.CancelledError:
            if watch is not None and watch.done() and not watch.cancelled():
                return None  # the client left; the batcher skips the cancelled job
            raise
        finally:
            if watch is not None:
                watch.cancel()
        if self.batcher is not None and self.observer is not None:
            self.observer.waited(time.perf_counter() - t0)
        return list(out)

    def results(self, logits: np.ndarray, truncated: np.ndarray) -> list[dict]:
        return score_results(self.scorer, logits, truncated)

    def classify(self, texts: list[str], explain: bool = False) -> list[dict]:
        if not explain:
            return self.classify_batched(texts)
        out = []
        for text in texts:
            res, scores = self.explain(text)
            res["word_scores"] = scores
            out.append(res)
        return out

    def explain_budget(self, text: str) -> int:
        """How many occluded variants explaining ``text`` costs."""
        return min(len(_WORD.findall(text[: self.max_chars])), self.scorer.max_length)

    def explain(self, text: str) -> tuple[dict, list[dict]]:
        """The result for ``text`` and, per word, how much the predicted class's probability drops without it.

        Words are cut from the raw text (what the user sees); the original and every variant are then
        cleaned and go through the model in one call (one lock, length-sorted batches). Only the words of
        the first ``max_chars`` characters are scored, the most that is ever tokenized, so the cost is bounded
        whatever the text's length.
        Each word is at least one token, so a word at position >= max_length is outside the model's window
        and removing it cannot change anything: such words score 0 without being run. For the same reason a
        variant needs only the first max_length + 1 words (the model reads no further), which keeps each
        variant a window long instead of the text's length; the baseline has no window and gets every word.
        """
        window = self.scorer.max_length
        words = _WORD.findall(text[: self.max_chars])
        n = min(len(words), window)
        context = words if self.meta.get("kind") == "baseline" else words[: window + 1]
        variants = [" ".join(context[:i] + context[i + 1 :]) for i in range(n)]
        logits, truncated = self.logits([text, *variants], offer=False)
        if self.shadow is not None:  # the user's text only: the occluded variants are not texts anyone sent
            self.shadow.offer(self, [text], logits[:1])
        probs = self.scorer.probabilities(logits)
        res = self.results(logits[:1], truncated[:1])[0]
        c = explained_class(res, self.label_names)
        drops = probs[0, c] - probs[1:, c]
        scores = [{"word": w, "score": float(drops[i]) if i < n else 0.0} for i, w in enumerate(words)]
        return res, scores

    def info(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "name": self.name,
            "kind": self.meta.get("kind"),
            "layers": self.meta.get("layers"),
            "label_names": self.label_names,
            "task": MULTI_LABEL_TASK if is_multi_label_scorer(self.scorer) else "single_label",
            "max_length": self.scorer.max_length if self.meta.get("kind") != "baseline" else None,
            "params": self.meta.get("params"),
            "trainable_params": self.meta.get("trainable_params"),
            "size_mb": _num(self.meta.get("size_mb")),
            "throughput_sps": self.throughput,
            "metrics": {
                "accuracy": _num(m.get("accuracy")),
                "f1_weighted": _num(m.get("f1_weighted")),
                "f1_macro": _num(m.get("f1_macro")),
                "f1_per_class": {k: float(v) for k, v in (m.get("f1_per_class") or {}).items()},
            },
        }


def explained_class(res: dict, names: list[str]) -> int:
    """The class an explanation's word scores are about: the decided class; for a multi-label result, its most
    probable decided label, or its most probable label when none is decided."""
    if "label_id" in res:
        return int(res["label_id"])
    pool = res["labels"] or names
    return names.index(max(pool, key=res["probabilities"].__getitem__))


def _num(x: Any) -> float | None:
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


def load_models(
    path: str | Path,
    names: str | Sequence[str] | None = None,
    threads: int | None = None,
    backend: str = "auto",
    batch_wait_ms: float | None = 5.0,
    max_batch: int = DEFAULT_MAX_BATCH,
    queue_timeout_s: float | None = None,
) -> dict[str, ServedModel]:
    """Load every (or every named) model once. ``batch_wait_ms=None`` runs each request on the caller's thread,
    without a micro-batcher (``max_batch=1`` keeps the model thread but runs one request per pass).
    ``queue_timeout_s``: see ``MicroBatcher``.

    A folder that fails to load is skipped with a warning unless it was named explicitly; if nothing
    loads, that is an error.
    """
    chosen = select_models(find_models(path, best=True), names)
    # threads reach each engine through load_scorer (torch's pool is set there, for torch folders only),
    # so serving exports never imports torch.
    out: dict[str, ServedModel] = {}
    for name, folder in chosen.items():
        meta = read_meta(folder)
        try:
            scorer: Scorer = load_scorer(folder, threads, backend, meta)
        except ToxdistillError as e:
            if names:
                raise
            log.warning("skipping model %s: %s", name, e)
            continue
        model = ServedModel(name=name, folder=folder, scorer=scorer, meta=meta, selection=read_selection(folder))
        if isinstance(scorer, Predictor):  # a server's small random batches: cut them at this engine's pass cost
            log.info("%s: a model pass costs as much as %.0f padded tokens here", name, scorer.measure_pass_cost())
        if batch_wait_ms is not None:
            model.batcher = MicroBatcher(model.batch_results, batch_wait_ms, max_batch, name, queue_timeout_s)
        out[name] = model
        # The engine fastest where it was chosen may not be here: say so, with how to choose again.
        note = engine_cpu_note(folder)
        if note:
            log.warning("%s: %s", name, note)
    if not out:
        raise ToxdistillError(f"none of the models in {path} could be loaded", "run with -v to see why")
    return out


def default_model(models: dict[str, ServedModel]) -> str:
    """The run's shipped best/ when it is served (the model the run chose to ship), else the best test macro
    F1 among the transformer models (the baseline is the reference floor, and only the default when it is
    all there is), so a client that names no model gets a balanced one."""
    shipped = [m.name for m in models.values() if m.frontier_row]
    if shipped:
        return shipped[0]
    pool = [m for m in models.values() if m.meta.get("kind") != "baseline"] or list(models.values())
    return max(pool, key=lambda m: m.f1_macro if m.f1_macro is not None else -1.0).name


def close_models(models: dict[str, ServedModel]) -> None:
    for m in models.values():
        if m.batcher is not None:
            m.batcher.close()
