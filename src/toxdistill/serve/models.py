"""The models a server holds: found in a run folder, loaded once, safe to share between request threads.

Nothing here imports FastAPI, so the CLI can check the folder (and fail fast with one line) before the
optional web dependencies are even needed.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from toxdistill.errors import ToxdistillError
from toxdistill.inference.predict import load_scorer
from toxdistill.inference.scoring import Scorer, score_results
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


class MicroBatcher:
    """Gathers small concurrent requests for one model into one forward pass.

    A worker thread takes the first waiting job, then everything already queued, then keeps collecting
    for up to ``wait_ms`` (or until ``max_batch`` texts); it runs them as one batch and hands each caller
    its own rows. Under load the queue fills while the model is busy, so batches form even with
    ``wait_ms=0``; a lone request pays at most ``wait_ms`` extra latency.
    """

    def __init__(
        self, run: Callable[[list[str]], tuple[np.ndarray, np.ndarray]], wait_ms: float, max_batch: int, name: str = ""
    ):
        self._run = run
        self.wait_s = max(0.0, wait_ms) / 1000.0
        self.max_batch = max_batch
        self.batches = 0  # forward passes made, for tests and logs
        self.jobs = 0
        self.observer: ModelObserver | None = None
        self._q: queue.Queue[tuple[list[str], Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        fut: Future = Future()
        self._q.put((texts, fut))
        return fut.result()

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._q.get()
            if first is None:
                return
            jobs = [first]
            n = len(first[0])
            deadline = time.monotonic() + self.wait_s
            while n < self.max_batch:
                try:
                    # Non-blocking once the deadline has passed: still take what is already queued.
                    nxt = (
                        self._q.get(timeout=max(0.0, deadline - time.monotonic()))
                        if self.wait_s
                        else self._q.get_nowait()
                    )
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
                n += len(nxt[0])
            texts = [t for job, _ in jobs for t in job]
            try:
                logits, truncated = self._run(texts)
            except BaseException as e:  # noqa: BLE001 - every waiting caller must hear about the failure
                for _, fut in jobs:
                    fut.set_exception(e)
                continue
            self.batches += 1
            self.jobs += len(jobs)
            if self.observer is not None:
                self.observer.micro_batch(len(texts))
            start = 0
            for job, fut in jobs:
                end = start + len(job)
                fut.set_result((logits[start:end], truncated[start:end]))
                start = end
        # Anything that arrived after the stop signal still gets an answer.
        while True:
            try:
                late = self._q.get_nowait()
            except queue.Empty:
                return
            if late is not None:
                late[1].set_exception(RuntimeError("server is shutting down"))


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

    def score(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Logits for raw texts: one model pass. Every path (API, page, micro-batcher, file upload) comes
        through here, so every path cleans the same way; cleaning runs outside the lock (it touches no
        model state)."""
        texts = self.prepare(texts)
        cut = np.array([len(t) > self.max_chars for t in texts], dtype=bool)
        with self.lock:
            logits, truncated = self.scorer.logits([t[: self.max_chars] for t in texts], batch_size)
        if self.observer is not None:
            self.observer.scored(len(texts))
        return logits, np.asarray(truncated, dtype=bool) | cut

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """``score``, timed for the latency metric as the caller waits for it."""
        t0 = time.perf_counter()
        out = self.score(texts, batch_size)
        if self.observer is not None:
            self.observer.waited(time.perf_counter() - t0)
        return out

    def logits_batched(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Small requests go through the micro-batcher when there is one; the latency metric counts the
        wait for the batch too."""
        if self.batcher is None or len(texts) > self.batcher.max_batch:
            return self.logits(texts)
        t0 = time.perf_counter()
        out = self.batcher.submit(texts)
        if self.observer is not None:
            self.observer.waited(time.perf_counter() - t0)
        return out

    def results(self, logits: np.ndarray, truncated: np.ndarray) -> list[dict]:
        return score_results(self.scorer, logits, truncated)

    def classify(self, texts: list[str], explain: bool = False) -> list[dict]:
        if not explain:
            return self.results(*self.logits_batched(texts))
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
        logits, truncated = self.logits([text, *variants])
        probs = self.scorer.probabilities(logits)
        res = self.results(logits[:1], truncated[:1])[0]
        c = res["label_id"]
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
    max_batch: int = 32,
) -> dict[str, ServedModel]:
    """Load every (or every named) model once. ``batch_wait_ms=None`` turns micro-batching off.

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
        if batch_wait_ms is not None:
            model.batcher = MicroBatcher(model.score, batch_wait_ms, max_batch, name)
        out[name] = model
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
