"""Inference benchmark: every transformer model of a run × every CPU target, on the run's test split.

Rows, all through the one ``Predictor`` (the torch rows, then export targets, ``toxdistill.targets``):

* ``torch-naive``  — fp32 torch, texts in random order, batches of 64 padded to their longest text
  (what a plain ``model(**tokenizer(batch, padding=True))`` loop does);
* ``torch-sorted`` — fp32 torch, texts sorted by length into batches (little padding);
* ``onnx-fp32``    — ONNX Runtime on the fp32 export, sorted batches;
* ``onnx-int8``    — ONNX Runtime on the int8 export (dynamic quantization), sorted batches;
* ``onnx-fp32-fused`` / ``onnx-int8-fused`` — the same on graphs fused by ONNX Runtime's transformer
  optimizer before quantization (``export --target onnx-int8-fused``);
* ``openvino-fp32`` / ``openvino-bf16`` / ``openvino-int8`` — OpenVINO on the same fp32 graph, at fp32, at
  bf16 (where the CPU has it) and NNCF's static int8 (``export --target openvino-int8``; the ``openvino`` extra).

For each it measures throughput (samples/s over the whole text set, after one warm-up batch), where that
time went (tokenization, batching, the model, the rest: ``time_shares``; with the tokenizer overlapped,
``--overlap both`` measures each row both ways), single-text latency (p50/p95 over N texts, one call each,
tokenization included), and the achieved GFLOP/s against the peak of the engine and number format it runs
on, measured in the same run (``benchmark.peaks``). Exports are made into ``runs/<name>/export/`` and
reused while the source weights are unchanged. Per model, the export target that ``export --auto`` would
choose from these rows (the fastest that passes its parity gates) is named in the result and the table.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.metadata
import importlib.util
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toxdistill.benchmark.auto import choose_fastest, ensure_export, missing_module, runnable
from toxdistill.benchmark.options import MAX_F1W_DROP, OVERLAP_MODES, P50_GOAL_MS, SPEED_GOAL, BenchOptions
from toxdistill.benchmark.peaks import QUICK_SHAPES, SHAPES, machine_peaks, peak_engine, peak_for
from toxdistill.benchmark.timing import throughput
from toxdistill.console import Say, quiet
from toxdistill.cpu import cpu_name
from toxdistill.data.split import TextSet, load_test_texts
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.metrics import classification_metrics
from toxdistill.evaluation.plots import plot_bench
from toxdistill.export.folder import graph_files
from toxdistill.export.parity import multi_label_f1
from toxdistill.files import BENCH_FILE, MODELS_DIR, TEACHER
from toxdistill.inference.export_record import gate_block
from toxdistill.inference.predict import (
    Predictor,
    chunk_batches,
    find_onnx_file,
    padded_width,
    pipeline_chunks,
    time_shares,
)
from toxdistill.io import atomic_write_json
from toxdistill.runs import find_models, read_meta, select_models
from toxdistill.targets import ONNX_INSTALL, TORCH_ROWS, Target, check_bench_rows, default_targets, parse_target


# ------------------------------------------------------------------ measurements
@dataclass
class FlopModel:
    """FLOPs of a BERT-style encoder forward: 2 × (encoder weights) per token, attention scores
    (QKᵀ and AV: 4 × hidden per token pair per layer), and the pooler/classifier once per text."""

    encoder_params: int
    head_params: int
    layers: int
    hidden: int
    total_params: int

    @classmethod
    def of(cls, model) -> FlopModel:
        from toxdistill.models.cnn import MODEL_TYPE as CNN_TYPE  # heavy: torch, loaded with the model anyway

        enc = head = total = 0
        for name, p in model.named_parameters():
            total += p.numel()
            if "embeddings" in name:
                continue
            # Per token: an encoder's layers, or a cnn student's convolutions (models/cnn.py)
            if ".encoder." in f".{name}" or name.startswith("convs."):
                enc += p.numel()
            else:
                head += p.numel()
        cfg = model.config
        attention_layers = 0 if cfg.model_type == CNN_TYPE else int(cfg.num_hidden_layers)
        return cls(enc, head, attention_layers, int(cfg.hidden_size), total)

    def flops(self, lengths: np.ndarray) -> float:
        lengths = np.asarray(lengths, dtype=np.float64)
        per_token = 2.0 * self.encoder_params * lengths.sum()
        attention = 4.0 * self.layers * self.hidden * (lengths**2).sum()
        return per_token + attention + 2.0 * self.head_params * len(lengths)


def padded_lengths(
    lengths: np.ndarray, batch_size: int, sort: bool, texts: list[str], step: int = 1, max_length: int = 0
) -> np.ndarray:
    """Per text, the length it is computed at once its batch is padded to the batch's longest text (rounded up
    to the engine's ``step``, ``padded_width``), with the Predictor's batches (``chunk_batches`` of each chunk of
    ``texts`` it tokenizes, ``pipeline_chunks``)."""
    out = np.empty_like(lengths)
    for idx in pipeline_chunks(texts, batch_size, sort):
        for batch in chunk_batches(lengths[idx].tolist(), batch_size, sort):
            sel = idx[batch]
            out[sel] = padded_width(int(lengths[sel].max()), step, max_length)
    return out


def ort_op_shares(model_file: Path, pred: Predictor, texts: list[str], batch_size: int, threads: int) -> dict:
    """Each ONNX op type's share of the graph's kernel time over one sorted pass (ONNX Runtime's profiler)."""
    import json
    import tempfile

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])
        backend = pred.backend
        saved = backend.session
        backend.session = session
        try:
            pred.logits(texts, batch_size)
        finally:
            backend.session = saved
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + float(e.get("dur", 0))
    total = sum(by_op.values()) or 1.0
    return {k: v / total for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])}


def latency_ms(pred: Predictor, texts: list[str]) -> tuple[float, float]:
    """p50 and p95 of one call per text (tokenization included), in milliseconds."""
    for t in texts[:5]:
        pred.logits([t], 1)
    times = []
    for t in texts:
        s = time.perf_counter()
        pred.logits([t], 1)
        times.append(time.perf_counter() - s)
    ms = 1000 * np.asarray(times)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


# ------------------------------------------------------------------ the benchmark
@dataclass
class BenchSample:
    """What every row of one bench shares: the same texts in the same order, the threads and the peaks."""

    texts: list[str]
    labels: np.ndarray | None
    latency_texts: list[str]
    threads: int
    peaks: dict
    order: np.ndarray | None = None
    """Where each text came from: ``texts[i]`` is the source's text ``order[i]`` (a seeded shuffle)."""


@dataclass
class BenchedModel:
    """One model under test: its folder and metadata, its torch predictor, FLOP count and token lengths."""

    name: str
    folder: Path
    meta: dict
    torch_pred: Predictor
    flops: FlopModel
    lengths: np.ndarray  # tokens per bench text, with this model's tokenizer


def bench_sample(texts: list[str], labels: np.ndarray | None, opts: BenchOptions) -> BenchSample:
    """The same texts, in the same seeded shuffled order, for every model and backend (``opts.limit`` of them
    where set), with torch's threads set from ``opts``; no peaks yet (the caller measures them or not)."""
    import torch

    if opts.threads:
        torch.set_num_threads(opts.threads)
    threads = opts.threads or torch.get_num_threads()
    order = np.random.default_rng(opts.seed).permutation(len(texts))[: opts.limit or None]
    picked = [texts[i] for i in order]
    chosen_labels = None if labels is None else np.asarray(labels)[order]
    return BenchSample(picked, chosen_labels, picked[: opts.latency_n], threads, peaks={}, order=order)


def run_bench(run_dir: str | Path, opts: BenchOptions | None = None, say: Say = quiet) -> dict:
    """Bench every transformer model of ``run_dir`` × ``opts.targets`` on the run's test split; write the
    result to ``bench.json`` (and ``bench.png``), print the table through ``say`` and return the result."""

    opts = opts or BenchOptions()
    run_dir = Path(run_dir)
    chosen, targets = _check_bench(run_dir, opts, say)
    opts = dataclasses.replace(opts, targets=targets)
    full = load_test_texts(run_dir, opts.data)
    sample = bench_sample(full.texts, full.labels, opts)
    texts, threads = sample.texts, sample.threads
    say(
        f"bench: {len(chosen)} model(s) × {len(targets)} target(s) on {len(texts)} texts ({full.source}), {threads} thread(s)"
    )
    sample.peaks = _measure_peaks(threads, opts, say)

    rows: list[dict] = []
    teacher: tuple[int, str] | None = None  # (layers, name)
    mean_tokens = None
    for name, folder in chosen.items():
        model = load_bench_model(name, folder, texts, opts.threads)
        if model.meta.get("kind") == "teacher":  # by kind, whatever the run calls it
            teacher = (model.flops.layers, name)
        rows += bench_model(model, sample, full, opts, say)
        mean_tokens = float(np.mean(model.lengths)) if rows else None
        del model
        gc.collect()

    result = bench_result(run_dir, rows, sample, full.source, mean_tokens, teacher, opts)
    write_bench(result, Path(opts.output) if opts.output else run_dir / BENCH_FILE, opts.plot, say)
    return result


def export_targets(rows: tuple[str, ...] | list[str]) -> list[Target]:
    """The export targets among bench rows (all but the torch rows)."""
    return [parse_target(r) for r in rows if r not in TORCH_ROWS]


def _check_bench(run_dir: Path, opts: BenchOptions, say: Say = quiet) -> tuple[dict[str, Path], tuple[str, ...]]:
    """The models and rows to bench, once the run folder, the rows and the engines they need check out.

    Asked for by name, a target whose engine is missing is an error; among the defaults it is left out with
    a note (OpenVINO without its extra, bf16 on a CPU without bf16)."""
    if not run_dir.is_dir():
        raise ToxdistillError(
            f"run folder not found: {run_dir}", "give a folder written by 'toxdistill run', e.g. runs/<name>"
        )
    if opts.overlap not in OVERLAP_MODES:
        raise ToxdistillError(f"unknown overlap mode {opts.overlap!r}", f"use {', '.join(OVERLAP_MODES)}")
    if not (run_dir / MODELS_DIR).is_dir():  # a run, not a bare model folder: its split is what is benched
        raise ToxdistillError(
            f"{run_dir} has no {MODELS_DIR}/ folder",
            "give a run folder written by 'toxdistill run', e.g. runs/<name>",
        )
    rows = rows_to_bench(opts.targets, say)
    return select_models(find_models(run_dir, transformers_only=True), opts.models), rows


def rows_to_bench(wanted: tuple[str, ...] | None, say: Say = quiet) -> tuple[str, ...]:
    """The rows asked for (each checked, and its engine installed), or by default the torch rows and the default
    targets this machine can run."""
    rows = check_bench_rows(wanted) if wanted is not None else None
    # Every export starts from the ONNX fp32 graph, whatever engine it is for.
    exports = export_targets(rows) if rows is not None else default_targets()
    if exports and importlib.util.find_spec("onnxruntime") is None:
        raise ToxdistillError("the export targets need onnxruntime, not installed", ONNX_INSTALL)
    if rows is None:
        return (*TORCH_ROWS, *(t.name for t in runnable(default_targets(), say)))
    for t in export_targets(rows):
        missing = missing_module(t)
        if missing is not None:
            raise ToxdistillError(f"the {t} target needs {missing}, not installed", t.spec.install)
    return rows


def _measure_peaks(threads: int, opts: BenchOptions, say: Say) -> dict:
    targets = export_targets(opts.targets or ())
    bf16 = any(t.precision == "bf16" for t in targets)
    say(
        "measuring the machine's matmul peaks (torch fp32"
        + (", torch bf16" if bf16 else "")
        + ", ONNX Runtime fp32 and int8; shapes × threads) …"
    )
    peaks = machine_peaks(
        threads,
        onnx=bool(targets),
        shapes=QUICK_SHAPES if opts.quick_peaks else SHAPES,
        reps=1 if opts.quick_peaks else 3,
        bf16=bf16,
    )
    peaks["quick"] = opts.quick_peaks
    say(format_peaks(peaks))
    return peaks


def load_bench_model(name: str, folder: Path, texts: list[str], threads: int | None) -> BenchedModel:
    torch_pred = Predictor.load(folder, backend="torch", threads=threads)
    ids, _ = torch_pred.encode(texts)
    lengths = np.array([len(x) for x in ids])
    return BenchedModel(name, folder, read_meta(folder), torch_pred, FlopModel.of(torch_pred.backend.model), lengths)


# ------------------------------------------------------------------ one model, one row per target
def bench_model(
    model: BenchedModel,
    sample: BenchSample,
    parity: TextSet,
    opts: BenchOptions,
    say: Say,
    logits_out: dict[str, np.ndarray] | None = None,
) -> list[dict]:
    """One row per torch row and target of ``opts`` for one model; a target exports first (``ensure_export``).
    The export row ``export --auto`` would choose from these is marked ``auto_choice``. ``logits_out`` receives
    each row's logits on ``sample.texts`` (from its fastest timed pass), for a caller that would score them again."""

    def tagged(msg: str) -> None:  # every line about this model names it
        say(f"[{model.name}] {msg}")

    rows: list[dict] = []
    ref_logits = None
    for name in opts.targets or ():
        row, logits, pred, folder = _bench_one(model, name, sample, parity, opts, tagged)
        if logits_out is not None:
            logits_out[name] = logits
        if name == "torch-sorted" or (name == "torch-naive" and ref_logits is None):
            ref_logits = logits
        if ref_logits is not None and name not in TORCH_ROWS:
            row["agreement_with_torch"] = decision_agreement(model.torch_pred, ref_logits, logits)
        if opts.profile_ops and name not in TORCH_ROWS and parse_target(name).engine == "onnx":
            onnx_file = find_onnx_file(folder, read_meta(folder))
            if onnx_file is not None:
                row["op_shares"] = ort_op_shares(onnx_file, pred, sample.texts, opts.batch_size, sample.threads)
                top = ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(row["op_shares"].items())[:6])
                tagged(f"{name} graph time by op: {top}")
        rows.append(row)
        tagged(_row_line(row))
        if pred is not model.torch_pred:
            del pred
    auto = choose_fastest([{**r, "ok": r["gate_ok"]} for r in rows if "gate_ok" in r])
    for r in rows:
        if auto is not None and r["backend"] == auto["backend"]:
            r["auto_choice"] = True
    return rows


def _bench_one(
    model: BenchedModel, name: str, sample: BenchSample, parity: TextSet, opts: BenchOptions, say: Say
) -> tuple[dict, np.ndarray, Predictor, Path]:
    """One row: a torch row on the model folder, or a target on its export (made or reused first)."""
    metrics = model.meta.get("metrics") or {}
    pred, folder = model.torch_pred, model.folder
    f1: tuple[Any, str] = (metrics.get("f1_macro"), "model metrics")
    gate: dict | None = None
    if name not in TORCH_ROWS:
        target = parse_target(name)
        folder = ensure_export(model.folder, target, parity, say, opts.data, opts.batch_size)
        pred = Predictor.load(folder, backend=target.engine, threads=sample.threads)
        gate = gate_block(read_meta(folder).get("export") or {})
        if target.reduced and "f1_macro" in gate:
            f1 = (gate["f1_macro"], f"{target.precision} parity check")
    row, logits = measure_row(model, name, pred, folder, f1, sample, opts)
    if gate is not None:
        row["gate_ok"] = bool(gate.get("ok"))
    return row, logits, pred, folder


def _row_line(row: dict) -> str:
    sh = row["time_shares"]
    line = (
        f"{row['backend']:<15} {row['samples_per_s']:8.1f} samples/s   p50 {row['latency_p50_ms']:6.2f} ms   "
        f"p95 {row['latency_p95_ms']:6.2f} ms   {row['gflops_computed']:6.1f} GFLOP/s   time: model "
        f"{100 * sh['model']:.0f}%, tokenize {100 * sh['tokenize']:.0f}%, batching {100 * sh['batching']:.0f}%, "
        f"other {100 * sh['other']:.0f}%"
    )
    seq = row.get("sequential")
    if seq:
        s2 = seq["time_shares"]
        line += (
            f"; not overlapped: {seq['samples_per_s']:.1f} samples/s, model {100 * s2['model']:.0f}%, "
            f"tokenize {100 * s2['tokenize']:.0f}%"
        )
    return line


def measure_row(
    model: BenchedModel,
    backend: str,
    pred: Predictor,
    folder: Path,
    f1: tuple[Any, str],
    sample: BenchSample,
    opts: BenchOptions,
) -> tuple[dict[str, Any], np.ndarray]:
    """One model × row (torch or target): throughput (the fastest of ``opts.repeats`` passes), single-text
    latency, GFLOP/s against the peak of the row's engine, where the time went, and quality on the bench texts.
    ``f1`` is the macro F1 to show and where it comes from; returns the row and the logits.

    With ``opts.overlap == "both"`` the throughput is measured with the tokenizer overlapped and again without
    (``row["sequential"]``): the same batches, so the difference is the overlap's alone."""
    sort = backend != "torch-naive"
    pred.overlap = opts.overlap != "off"
    sps, logits, elapsed, rates = throughput(pred, sample.texts, opts.batch_size, sort, opts.repeats)
    shares, hidden = time_shares(pred.timings), pred.tokenize_hidden
    sequential = _without_overlap(pred, sample.texts, sort, opts) if opts.overlap == "both" else None
    p50, p95 = latency_ms(pred, sample.latency_texts)
    fm = model.flops
    useful = fm.flops(model.lengths)
    computed = fm.flops(
        padded_lengths(model.lengths, opts.batch_size, sort, sample.texts, pred.pad_multiple, pred.max_length)
    )
    engine = _peak_backend(backend, pred)
    peak = peak_for(engine, sample.peaks)
    row: dict[str, Any] = {
        "model": model.name,
        "kind": model.meta.get("kind"),
        "layers": fm.layers,
        "backend": backend,
        "samples_per_s": sps,
        "samples_per_s_passes": rates,
        "seconds": elapsed,
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
        "gflops_useful": useful / elapsed / 1e9,
        "gflops_computed": computed / elapsed / 1e9,
        "pct_of_peak": 100 * computed / elapsed / 1e9 / peak if peak else None,
        "peak_engine": peak_engine(engine),
        "time_shares": shares,
        "overlap": opts.overlap != "off",
        # Tokenization done on the worker while the model ran: off the clock of time_shares (predict.Predictor).
        "tokenize_hidden_share": hidden / elapsed,
        "padding_overhead": computed / useful,
        "f1_macro": f1[0],
        "f1_macro_source": f1[1],
        "params": fm.total_params,
        "non_embedding_params": fm.encoder_params + fm.head_params,
        "size_mb": _size_mb(folder, backend),
    }
    if sequential is not None:
        row["sequential"] = sequential
    if hasattr(pred.backend, "precision"):  # an engine that may run another precision than asked (OpenVINO bf16)
        row["precision_run"] = pred.backend.precision
    if sample.labels is not None and model.torch_pred.calibration.multi_label:
        m = multi_label_f1(np.asarray(sample.labels), model.torch_pred.decide(logits))
        row["f1_macro_bench"], row["f1_weighted_bench"] = m["f1_macro"], m["f1_weighted"]
    elif sample.labels is not None:
        m = classification_metrics(sample.labels, logits.argmax(-1), model.torch_pred.label_names)
        row["f1_macro_bench"], row["f1_weighted_bench"] = m["f1_macro"], m["f1_weighted"]
    return row, logits


def decision_agreement(pred: Predictor, ref: np.ndarray, got: np.ndarray) -> float:
    """Share of texts two engines' logits decide alike: the same top class, or for a multi-label model the same
    set of labels (the calibrated decisions)."""
    if pred.calibration.multi_label:
        return float((pred.decide(ref) == pred.decide(got)).all(-1).mean())
    return float((ref.argmax(-1) == got.argmax(-1)).mean())


def _without_overlap(pred: Predictor, texts: list[str], sort: bool, opts: BenchOptions) -> dict[str, Any]:
    """The same throughput measured with the tokenizer not overlapped: ``row["sequential"]``."""
    pred.overlap = False
    sps, _, elapsed, _ = throughput(pred, texts, opts.batch_size, sort, opts.repeats)
    pred.overlap = True
    return {"samples_per_s": sps, "seconds": elapsed, "time_shares": time_shares(pred.timings)}


def _peak_backend(row: str, pred: Predictor) -> str:
    """The row whose peak bounds this row: a bf16 row that ran in fp32 (no bf16 here) is an fp32 row."""
    ran_fp32 = getattr(pred.backend, "precision", "bf16") != "bf16"
    if row not in TORCH_ROWS and parse_target(row).precision == "bf16" and ran_fp32:
        return parse_target(row).with_precision("fp32").name
    return row


# ------------------------------------------------------------------ the result: bench.json, table, plot
def bench_result(
    run_dir: Path,
    rows: list[dict],
    sample: BenchSample,
    source: str,
    mean_tokens: float | None,
    teacher: tuple[int, str] | None,
    opts: BenchOptions,
) -> dict:
    """bench.json's content: the machine, the texts, the peaks, every row with its ratio to the naive
    teacher, and the goals checked on them. ``teacher`` is the (layers, name) of the run's teacher."""
    import torch

    teacher_layers, teacher_name = teacher if teacher else (None, None)
    base = _baseline(rows, teacher_name)
    for r in rows:
        r["x_naive_teacher"] = r["samples_per_s"] / base["samples_per_s"] if base else None
    return {
        "run": str(run_dir),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "threads": sample.threads,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": _version("onnxruntime"),
            "openvino": _version("openvino"),
        },
        "texts": {"n": len(sample.texts), "source": source, "limit": opts.limit, "mean_tokens": mean_tokens},
        "batch_size": opts.batch_size,
        "repeats": opts.repeats,
        "latency_n": len(sample.latency_texts),
        "matmul_peak_gflops": sample.peaks["torch-fp32"]["gflops"],
        "peaks": sample.peaks,
        "baseline": {"model": base["model"], "backend": base["backend"], "samples_per_s": base["samples_per_s"]}
        if base
        else None,
        "flops_note": "2 × non-embedding encoder params per token + 4·layers·hidden·len² attention + 2 × head params per text; "
        "gflops_computed counts padded tokens (the work done), gflops_useful only real tokens",
        "rows": rows,
        "overlap": opts.overlap,
        # Per model, the export target export --auto would keep: the fastest row that passes its parity gates.
        "auto": {
            r["model"]: {
                "backend": r["backend"],
                "samples_per_s": r["samples_per_s"],
                "x_naive_teacher": r["x_naive_teacher"],
            }
            for r in rows
            if r.get("auto_choice")
        },
        "targets": _targets(rows, base, teacher_layers, teacher_name, opts.speed_goal),
    }


def write_bench(result: dict, out: Path, plot: bool, say: Say = quiet) -> None:
    """Write ``result`` to ``out`` (and its plot beside it, named in the result), then say the table."""
    atomic_write_json(out, result)
    if plot and result["rows"]:
        result["plot"] = str(plot_bench(result, out.with_suffix(".png")))
        atomic_write_json(out, result)
    say("")
    say(format_table(result))
    say(f"\nwrote {out}" + (f" and {result['plot']}" if result.get("plot") else ""))


def _version(package: str) -> str | None:
    """An installed package's version, without importing it; None where it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _size_mb(folder: Path, row: str) -> float:
    """The row's weights on disk: the model folder's safetensors for a torch row, else the export's graph."""
    if row in TORCH_ROWS:
        files = list(folder.glob("*.safetensors"))
    else:
        files = graph_files(folder, parse_target(row).graph_file)
    return sum(f.stat().st_size for f in files) / 2**20


def _baseline(rows: list[dict], teacher: str | None = TEACHER) -> dict | None:
    for model in (teacher, *(r["model"] for r in rows)):
        for r in rows:
            if r["model"] == model and r["backend"] == "torch-naive":
                return r
    return None


def _targets(
    rows: list[dict],
    base: dict | None,
    teacher_layers: int | None,
    teacher: str | None = TEACHER,
    speed_goal: float = SPEED_GOAL,
) -> dict:
    """The goals, checked on these numbers (students: fewer layers than the teacher).

    The fastest student counts only where its weighted F1 on the bench texts is at most ``MAX_F1W_DROP``
    below the teacher's (fp32 torch): speed bought with quality is not a result.
    """
    if not base or teacher_layers is None:
        return {}
    students = [r for r in rows if r["layers"] < teacher_layers]
    t_sorted = next((r for r in rows if r["model"] == teacher and r["backend"] == "torch-sorted"), None)
    t_f1w = (t_sorted or base).get("f1_weighted_bench")
    out: dict = {}
    good = [r for r in students if t_f1w is None or r.get("f1_weighted_bench", 0.0) >= t_f1w - MAX_F1W_DROP]
    if good:
        best = max(good, key=lambda r: r["samples_per_s"])
        value = best["samples_per_s"] / base["samples_per_s"]
        out["fastest_student_x_naive_teacher"] = {
            "model": best["model"],
            "backend": best["backend"],
            "value": value,
            "goal": speed_goal,
            "met": value >= speed_goal,
            "f1_weighted_drop_points": None if t_f1w is None else 100 * (t_f1w - best["f1_weighted_bench"]),
        }
        out["fastest_student_p50_ms"] = {
            "model": best["model"],
            "backend": best["backend"],
            "value": best["latency_p50_ms"],
            "goal": P50_GOAL_MS,
            "met": best["latency_p50_ms"] < P50_GOAL_MS,
        }
    s_sorted = [r for r in students if r["backend"] == "torch-sorted"]
    if t_sorted and s_sorted:
        ratios = {r["model"]: r["samples_per_s"] / t_sorted["samples_per_s"] for r in s_sorted}
        out["student_sorted_x_teacher_sorted"] = {"per_model": ratios, "goal": 1.8, "met": min(ratios.values()) >= 1.8}
    return out


def format_peaks(peaks: dict) -> str:
    lines = []
    for key in ("torch-fp32", "torch-bf16", "ort-fp32", "ort-int8"):
        if key in peaks:
            p = peaks[key]
            unit = "GOP/s" if "int8" in key else "GFLOP/s"
            m, k, n = p["at"]["shape"]
            lines.append(
                f"peak {key:<10} {p['gflops']:8.1f} {unit}  (best at {m}×{k}×{n}, {p['at']['threads']} thread(s))"
            )
    th = peaks.get("theoretical") or {}
    if th.get("available"):
        lines.append(
            f"theoretical fp32 {th['fp32_gflops']:.1f} GFLOP/s = {th['formula']}; int8 {th['int8_gops']:.1f} GOP/s "
            f"({'VNNI' if th['vnni'] else 'no VNNI'}); clock from {th['clock_source']}"
        )
        if th.get("implied_min_ghz"):
            lines.append(
                f"  a measured peak exceeds that bound: the cores run at ≥ {th['implied_min_ghz']:.2f} GHz, "
                f"not the {th['ghz']:.2f} GHz the OS reports (a virtual machine shows its base clock)"
            )
    return "\n".join(lines)


def format_table(result: dict) -> str:
    head = (
        f"{'model':<18} {'backend':<15} {'samples/s':>10} {'× naive T':>10} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'GFLOP/s':>8} {'% peak':>7} {'model %':>7} {'tok %':>6} {'F1w':>6} {'macro F1':>8} {'auto':>4}"
    )
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        x = f"{r['x_naive_teacher']:.2f}" if r.get("x_naive_teacher") else "-"
        f1 = f"{r['f1_macro']:.3f}" if r.get("f1_macro") is not None else "-"
        f1w = f"{r['f1_weighted_bench']:.3f}" if r.get("f1_weighted_bench") is not None else "-"
        pct = f"{r['pct_of_peak']:.1f}%" if r.get("pct_of_peak") is not None else "-"
        sh = r.get("time_shares") or {}
        model_pct = f"{100 * sh['model']:.0f}%" if sh else "-"
        tok_pct = f"{100 * sh['tokenize']:.0f}%" if sh else "-"
        lines.append(
            f"{r['model']:<18} {r['backend']:<15} {r['samples_per_s']:>10.1f} {x:>10} {r['latency_p50_ms']:>7.2f} "
            f"{r['latency_p95_ms']:>7.2f} {r['gflops_computed']:>8.1f} {pct:>7} {model_pct:>7} {tok_pct:>6} {f1w:>6} {f1:>8}"
            f" {'*' if r.get('auto_choice') else '':>4}"
        )
    peaks = result.get("peaks")
    lines.append(format_peaks(peaks) if peaks else f"peak: {result['matmul_peak_gflops']:.1f} GFLOP/s fp32 matmul")
    lines.append(
        f"% peak: against the measured peak of the row's engine (torch fp32, ONNX Runtime fp32 or int8; OpenVINO "
        f"rows against the machine's peak for their number format: ONNX Runtime's fp32 and int8, torch's bf16); "
        f"{result['texts']['n']} texts, batch {result['batch_size']}, {result['machine']['threads']} thread(s) on "
        f"{result['machine']['cpu']} ({result['machine']['cores']} cores)"
    )
    for model, a in (result.get("auto") or {}).items():
        lines.append(
            f"auto (* above): {model} → {a['backend']}, {a['samples_per_s']:.1f} samples/s, the fastest export "
            "target that passes its parity gates"
        )
    lines += _overlap_lines(result["rows"])
    for key, t in result.get("targets", {}).items():
        if "value" in t:
            desc = f"{t['value']:.2f} ({t['model']}, {t['backend']})"
        else:
            desc = ", ".join(f"{k} {v:.2f}" for k, v in t["per_model"].items())
        lines.append(f"target {key}: {desc}; goal {t['goal']} → {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


def _overlap_lines(rows: list[dict]) -> list[str]:
    """With ``--overlap both``: each row's samples/s and time shares without the overlap, then with it."""
    measured = [r for r in rows if r.get("sequential")]
    if not measured:
        return []
    lines = [
        "tokenizer overlap (before → after): samples/s, tokenize share, model share; hidden: tokenizing off the clock"
    ]
    for r in measured:
        seq, sh = r["sequential"], r["time_shares"]
        lines.append(
            f"  {r['model']:<18} {r['backend']:<15} {seq['samples_per_s']:8.1f} → {r['samples_per_s']:8.1f}   "
            f"tok {100 * seq['time_shares']['tokenize']:3.0f}% → {100 * sh['tokenize']:3.0f}%   "
            f"model {100 * seq['time_shares']['model']:3.0f}% → {100 * sh['model']:3.0f}%   "
            f"hidden {100 * r.get('tokenize_hidden_share', 0.0):.0f}%"
        )
    return lines
