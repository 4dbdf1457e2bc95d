"""Fidelity to a reference model, watched in production: ``toxdistill serve --shadow MODEL``.

A distilled model agreed with its teacher on the test split; whether it still does on the texts it serves is
another question, as those texts drift. ``Shadow`` samples a share of the texts every served model scores
(each text drawn with probability ``rate`` from a seeded generator, on every path that scores: the API, its
fast path, the page, explanations' own text and uploaded files) and scores them again with a reference model
(usually the run's teacher) on one background thread. The request never waits for it: a sample is put on a
bounded queue without blocking, and when the queue is full the sample is dropped and counted. The thread
scores at most ``max_busy`` of the time, so the reference's share of the CPU stays bounded at any traffic.

The reference gets the text the served model was given and cleans it with its own recorded cleaning (within
a run every model has the same, so it sees the very text the served model saw) and calibrates with its own
calibration, through the models' one scoring path (``ServedModel.score``). What is compared, per served model:
the label each model answers (top-1 agreement), the total-variation distance between the two calibrated
distributions, and each model's class mix. For multi-label models the "label" is the set of labels decided
(joined by ``|``, empty when none), agreement means the same set, and the distance is the mean absolute
difference of the per-label probabilities. Disagreements go to a JSONL file only when the operator asks
(``DisagreementLog``): the texts are users' texts.

Nothing here imports a web framework: ``create_app`` registers a ``Shadow`` with the app's metrics.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from toxdistill.errors import ToxdistillError
from toxdistill.inference.scoring import LABELS_SEP, is_multi_label_scorer
from toxdistill.runs import find_models
from toxdistill.serve.models import ServedModel, load_models

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

# Each default's reason is in the CLI's help (cli/serve.py) and docs/serving.md, "Watching fidelity in production".
DEFAULT_RATE = 0.05
DEFAULT_QUEUE = 1024
DEFAULT_LOG_MB = 10.0
# Texts per reference pass: the worker takes what is queued, up to this, so a backlog drains in batches.
GATHER = 32
# A sampled text is kept to this many times the reference's window in characters: cleaning only ever shortens
# a text, so the part the reference reads is kept, and a 1 MB text does not sit whole in the queue.
KEEP_WINDOWS = 4
# Total-variation distance is in [0, 1]: fine buckets near 0, where a faithful student lives.
TV_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
DEFAULT_BUSY = 0.25


@dataclass(frozen=True, eq=False)
class _Sample:
    model: ServedModel
    text: str
    logits: np.ndarray  # the served model's row for the text
    at: float  # time.time() when the served model scored it


class DisagreementLog:
    """Disagreements as JSON lines, in a file only its owner can read (created 0600, and set to 0600 if it was
    there before). When the file reaches ``max_bytes`` it is renamed to ``PATH.1`` (replacing the previous one)
    and a new one is started, so at most about twice ``max_bytes`` is ever on disk. Several server processes
    (``--workers``) may append to one file: each line is one write, and the size is the file's own."""

    def __init__(self, path: str | Path, max_bytes: int):
        self.path = Path(path)
        self.max_bytes = max_bytes
        try:
            self._fd = self._open()
        except OSError as e:
            raise ToxdistillError(
                f"cannot write --shadow-log {self.path}: {e.strerror or e}", "give a writable file path"
            ) from None

    def _open(self) -> int:
        # O_NOFOLLOW: a link planted at the path cannot send users' texts elsewhere.
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o600)
        os.fchmod(fd, 0o600)
        return fd

    def write(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        self._follow()
        size = os.fstat(self._fd).st_size
        if size and size + len(line) > self.max_bytes:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            os.close(self._fd)
            self._fd = self._open()
        os.write(self._fd, line)

    def _follow(self) -> None:
        """Reopen the path when another process has rotated the file under this one."""
        try:
            same = os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(self._fd)
            self._fd = self._open()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class _Stats:
    """The shadow's Prometheus metrics, in no registry: ``Shadow.collect`` yields them to every app serving it."""

    def __init__(self) -> None:
        # heavy optional (the serve extra): the CLI reads this module's defaults before checking it is installed
        from prometheus_client import Counter, Histogram

        self.compared = Counter(
            "toxdistill_shadow_compared", "Sampled texts scored by the reference model, by served model",
            ["model"], registry=None,
        )  # fmt: skip
        self.agree = Counter(
            "toxdistill_shadow_agree",
            "Of those, the texts where the served model's label is the reference's (top-1 agreement)",
            ["model"],
            registry=None,
        )
        self.tv = Histogram(
            "toxdistill_shadow_tv_distance",
            "Total-variation distance between the served and the reference model's calibrated probabilities",
            ["model"],
            buckets=TV_BUCKETS,
            registry=None,
        )
        self.labels = Counter(
            "toxdistill_shadow_labels",
            "Labels of the compared texts, by served model, by which model answered (served or shadow) and class",
            ["model", "scorer", "class"],
            registry=None,
        )
        self.sampled = Counter(
            "toxdistill_shadow_sampled", "Texts sampled for the reference, by served model", ["model"], registry=None
        )
        self.dropped = Counter(
            "toxdistill_shadow_dropped",
            "Sampled texts dropped because the reference's queue was full, by served model",
            ["model"],
            registry=None,
        )
        self.errors = Counter("toxdistill_shadow_errors", "Sampled texts the reference failed to score", registry=None)
        self.logged = Counter(
            "toxdistill_shadow_logged", "Disagreements written to the --shadow-log file", registry=None
        )

    def all(self) -> tuple:
        return (self.compared, self.agree, self.tv, self.labels, self.sampled, self.dropped, self.errors, self.logged)


class Shadow:
    """A reference model that scores a ``rate`` share of the served texts on one background thread.

    ``watch`` hands it the served models (each then offers what it scores); ``collect`` is a Prometheus
    collector; ``settle`` waits until the queue is worked off (tests, shutdown); ``close`` stops the thread,
    dropping what is still queued. ``seed`` makes the sampling reproducible for a given order of texts."""

    def __init__(
        self,
        reference: ServedModel,
        rate: float = DEFAULT_RATE,
        queue_size: int = DEFAULT_QUEUE,
        log_file: DisagreementLog | None = None,
        seed: int = 0,
        max_busy: float = DEFAULT_BUSY,
    ):
        if not 0 < rate <= 1 or not 0 < max_busy <= 1:
            raise ValueError(f"rate and max_busy must be in (0, 1], got {rate} and {max_busy}")
        self.reference = reference
        self.rate = rate
        self.max_busy = max_busy
        self._stopping = threading.Event()
        self._rest = self._stopping.wait  # the pause after a pass; returns at once on close
        self.log_file = log_file
        self.stats = _Stats()
        self._rng = random.Random(seed)
        self._keep = KEEP_WINDOWS * reference.max_chars
        self._q: queue.Queue[_Sample | None] = queue.Queue(maxsize=max(1, queue_size))
        self._order: dict[str, list[int]] = {}  # served model -> the reference's columns in its class order
        self._thread = threading.Thread(target=self._loop, name="shadow", daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        return self.reference.name

    def watch(self, models: dict[str, ServedModel]) -> None:
        """Compare each of ``models`` with the reference from now on. Their classes must be the reference's."""
        ref = self.reference.label_names
        for m in models.values():
            if sorted(m.label_names) != sorted(ref):
                raise ToxdistillError(
                    f"shadow model {self.name} has classes {', '.join(ref)}; {m.name} has {', '.join(m.label_names)}",
                    "compare models of the same task",
                )
            if is_multi_label_scorer(m.scorer) != is_multi_label_scorer(self.reference.scorer):
                raise ToxdistillError(
                    f"one of shadow model {self.name} and {m.name} is multi-label and the other is not",
                    "compare models of the same task",
                )
            self._order[m.name] = [ref.index(n) for n in m.label_names]
            for metric in (self.stats.compared, self.stats.agree, self.stats.sampled, self.stats.dropped):
                metric.labels(m.name)  # a series from the start: a rate() over it needs a zero to begin with
            m.shadow = self

    def offer(self, model: ServedModel, texts: Sequence[str], logits: np.ndarray) -> None:
        """Called where ``model`` scored ``texts`` (on a request's path): sample, queue, never wait."""
        rate, draw = self.rate, self._rng.random
        picked = [i for i in range(len(texts)) if draw() < rate]
        if not picked:
            return
        self.stats.sampled.labels(model.name).inc(len(picked))
        now = time.time()
        for i in picked:
            try:
                self._q.put_nowait(_Sample(model, texts[i][: self._keep], np.array(logits[i]), now))
            except queue.Full:
                self.stats.dropped.labels(model.name).inc()

    @property
    def waiting(self) -> int:
        return self._q.qsize()

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until every queued sample has been compared (or dropped by ``close``); False on timeout."""
        with self._q.all_tasks_done:
            return self._q.all_tasks_done.wait_for(lambda: self._q.unfinished_tasks == 0, timeout)

    def close(self) -> None:
        """Stop the thread without scoring what is still queued, and close the log."""
        self._stopping.set()
        while True:
            try:
                self._q.get_nowait()
                self._q.task_done()
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):
            self._q.put(None, timeout=5)
        self._thread.join(timeout=5)
        if self.log_file is not None:
            self.log_file.close()

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import GaugeMetricFamily

        for metric in self.stats.all():
            yield from metric.collect()
        depth = GaugeMetricFamily("toxdistill_shadow_queue", "Sampled texts waiting for the reference model")
        depth.add_metric([], self.waiting)
        yield depth
        info = GaugeMetricFamily(
            "toxdistill_shadow_info",
            "1, with the reference model, the sampled share and the share of time it may score",
            labels=["shadow", "rate", "max_busy"],
        )
        info.add_metric([self.name, f"{self.rate:g}", f"{self.max_busy:g}"], 1)
        yield info

    def _loop(self) -> None:
        while True:
            batch, stop = self._gather()
            t0 = time.perf_counter()
            try:
                if batch:
                    self._compare(batch)
            except Exception:  # noqa: BLE001 - the shadow must never take the server down
                log.exception("the shadow model %s failed to score %d texts", self.name, len(batch))
                self.stats.errors.inc(len(batch))
            finally:
                for _ in range(len(batch) + stop):
                    self._q.task_done()
            if stop:
                return
            self._pause(time.perf_counter() - t0)  # after a failed pass too: a broken reference does not spin

    def _pause(self, busy: float) -> None:
        """Rest after a pass of ``busy`` seconds, so the reference scores at most ``max_busy`` of the time
        whatever the traffic: its share of the CPU stays bounded, and what it cannot take is dropped and counted.
        """
        if self.max_busy < 1 and not self._stopping.is_set():
            self._rest(busy * (1 / self.max_busy - 1))

    def _gather(self) -> tuple[list[_Sample], bool]:
        """The first waiting sample and whatever else is queued, up to ``GATHER``; True once told to stop."""
        first = self._q.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < GATHER:
            try:
                nxt = self._q.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
        return batch, False

    def _compare(self, batch: list[_Sample]) -> None:
        ref = self.reference
        ref_logits, _ = ref.score([s.text for s in batch], offer=False)  # never its own sample
        ref_probs = ref.scorer.probabilities(ref_logits)
        ref_ids = ref.scorer.decide(ref_logits)
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(batch):
            groups.setdefault(s.model.name, []).append(i)
        for rows in groups.values():
            self._compare_model(batch[rows[0]].model, [batch[i] for i in rows], ref_probs[rows], ref_ids[rows])

    def _compare_model(
        self, m: ServedModel, samples: list[_Sample], ref_probs: np.ndarray, ref_ids: np.ndarray
    ) -> None:
        """Count one served model's samples against the reference's rows (reference class order)."""
        logits = np.stack([s.logits for s in samples])
        probs = m.scorer.probabilities(logits)
        ids = m.scorer.decide(logits)
        ref_probs = ref_probs[:, self._order[m.name]]  # into the served model's class order
        names, ref_names = m.label_names, self.reference.label_names
        if is_multi_label_scorer(m.scorer):
            # The set of labels decided, in the served model's label order (both sides), as one string.
            labels = [LABELS_SEP.join(n for n, d in zip(names, row) if d) for row in ids]
            ref_labels = [
                LABELS_SEP.join(n for n, d in zip(names, row) if d) for row in ref_ids[:, self._order[m.name]]
            ]
            # Independent labels have no distribution to take a total variation of: the mean per-label gap.
            tv = np.abs(probs - ref_probs).mean(axis=1)
        else:
            labels = [names[int(c)] for c in ids]
            ref_labels = [ref_names[int(c)] for c in ref_ids]
            tv = 0.5 * np.abs(probs - ref_probs).sum(axis=1)
        s = self.stats
        agree = sum(a == b for a, b in zip(labels, ref_labels))
        s.compared.labels(m.name).inc(len(samples))
        s.agree.labels(m.name).inc(agree)
        for k, (a, b) in enumerate(zip(labels, ref_labels)):
            s.tv.labels(m.name).observe(float(tv[k]))
            s.labels.labels(m.name, "served", a).inc()
            s.labels.labels(m.name, "shadow", b).inc()
        if self.log_file is not None and agree < len(samples):
            self._log(m, samples, labels, ref_labels, probs, ref_probs, tv)

    def _log(
        self,
        m: ServedModel,
        samples: list[_Sample],
        labels: list[str],
        ref_labels: list[str],
        probs: np.ndarray,
        ref_probs: np.ndarray,
        tv: np.ndarray,
    ) -> None:
        assert self.log_file is not None
        names = m.label_names
        for k, s in enumerate(samples):
            if labels[k] == ref_labels[k]:
                continue
            record = {
                "time": datetime.fromtimestamp(s.at, timezone.utc).isoformat(timespec="milliseconds"),
                "model": m.name,
                "shadow": self.name,
                # As the served model saw it: cleaned (mentions and links replaced, when the run's cleaning does)
                # and cut to what it reads.
                "text": m.prepare([s.text])[0][: m.max_chars],
                "label": labels[k],
                "shadow_label": ref_labels[k],
                "probabilities": _probs(names, probs[k]),
                "shadow_probabilities": _probs(names, ref_probs[k]),
                "tv_distance": round(float(tv[k]), 6),
            }
            self.log_file.write(record)
            self.stats.logged.inc()


def _probs(names: Iterable[str], row: np.ndarray) -> dict[str, float]:
    return {n: round(float(p), 6) for n, p in zip(names, row)}


def resolve_reference(run: str | Path, model: str) -> Path:
    """The folder of ``--shadow MODEL``: a model of the run by name (as ``--models`` names them), else a model
    folder. One line naming the choices when it is neither."""
    found = find_models(run, best=True)
    if model in found:
        return found[model]
    folder = Path(model).expanduser()
    if folder.is_dir():
        try:
            inside = find_models(folder)
        except ToxdistillError:
            inside = {}
        if len(inside) == 1:
            return next(iter(inside.values()))
        if len(inside) > 1:
            raise ToxdistillError(
                f"--shadow {model} holds {len(inside)} models",
                f"name one of its folders, e.g. {next(iter(inside.values()))}",
            )
    raise ToxdistillError(
        f"--shadow {model!r} is neither a model of this run nor a model folder", f"pick from: {', '.join(found)}"
    )


def load_shadow(
    folder: Path,
    rate: float,
    queue_size: int = DEFAULT_QUEUE,
    log_path: str | Path | None = None,
    log_max_mb: float = DEFAULT_LOG_MB,
    max_busy: float = DEFAULT_BUSY,
    threads: int | None = None,
    backend: str = "auto",
) -> Shadow:
    """The reference model loaded once, on its own (no micro-batcher: its one thread is the worker), and its
    disagreement log opened when asked for."""
    reference = next(iter(load_models(folder, None, threads, backend, batch_wait_ms=None).values()))
    log_file = DisagreementLog(log_path, int(log_max_mb * 1024 * 1024)) if log_path else None
    return Shadow(reference, rate, queue_size, log_file, max_busy=max_busy)
