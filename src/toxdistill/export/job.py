"""``export_model``: one ``ExportJob`` (a model folder and a target) through its steps, into one folder.

Every target starts from the fp32 ONNX graph (``torch.onnx.export``, fused for a ``-fused`` target), checked
against torch. ``onnx-fp32`` is that graph; ``onnx-int8`` quantizes it with ONNX Runtime's dynamic int8 (the int8
gates); ``openvino-<precision>`` reads it into OpenVINO and saves its IR, quantized first by NNCF for int8
(static quantization, activation ranges calibrated on ``calibration_texts``), checked against ONNX Runtime's fp32
logits: fp32 within the fp32 tolerance, bf16 and int8 through the reduced-precision gates. With ``strict`` a
failed gate is an error and nothing is written; the folder appears in one rename, never half-written.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toxdistill.console import Say, quiet
from toxdistill.data.split import TextSet
from toxdistill.errors import ToxdistillError
from toxdistill.export.folder import (
    check_export_folder,
    check_source,
    export_is_current,
    graph_files,
    new_record,
    write_folder,
)
from toxdistill.export.graph import export_graph, fuse_graph, fused_desc
from toxdistill.export.naming import default_output
from toxdistill.export.parity import (
    agreement_block,
    calibration_texts,
    fp32_gate,
    fp32_parity,
    parity_texts,
    reduced_precision_gate,
    sample_texts,
)
from toxdistill.export.quantize import quantize_int8, quantize_static_openvino
from toxdistill.inference.export_record import parity_record
from toxdistill.inference.openvino_backend import IR_FILE, import_openvino
from toxdistill.inference.predict import Predictor
from toxdistill.io import atomic_dir, new_temp_dir
from toxdistill.runs import read_meta
from toxdistill.targets import DEFAULT_TARGET, Target, parse_target

DEFAULT_OPSET = 17  # the oldest opset these encoders export to with every op ONNX Runtime fuses
# The fp32 graph's logits on its parity texts, kept beside it: every target made from it (int8, OpenVINO) holds
# its own logits against them, and on a run's test split computing them again took as long as the export.
FP32_LOGITS = "fp32_parity_logits.npy"


@dataclass
class ExportJob:
    """One export: the model folder, the target, where it goes and how it is checked."""

    model_dir: Path
    target: Target = DEFAULT_TARGET
    out: Path | None = None  # None: default_output (runs/<name>/export/<m><suffix>, else beside the model)
    int8_embeddings: bool = False  # ONNX Runtime int8 only: the word-embedding table too (3x smaller file)
    exporter: str = "auto"  # torch.onnx exporter: auto is TorchScript, dynamo if that fails
    opset: int = DEFAULT_OPSET
    data: str | None = None  # the run's data file, to rebuild its test split for parity
    strict: bool = True  # a failed parity gate is an error and nothing is written
    texts: TextSet | None = None  # parity texts; None: the run's test split, else the built-in sample
    calibration: TextSet | None = None  # NNCF's int8 calibration; None: training texts of the run
    batch_size: int = 64

    def __post_init__(self) -> None:
        self.model_dir = Path(self.model_dir)
        self.target = parse_target(self.target)
        self.out = Path(self.out) if self.out else None

    @property
    def derived(self) -> bool:
        """Made from an fp32 ONNX graph that the folder does not keep (every target but ONNX fp32's)."""
        return self.target.engine != DEFAULT_TARGET.engine or self.target.reduced


def _check_job(job: ExportJob) -> None:
    """The job's options fit its target, and the target's engine is installed, before any work."""
    t = job.target
    if job.int8_embeddings and not (t.engine == "onnx" and t.precision == "int8"):
        raise ToxdistillError(
            "--int8-embeddings is ONNX Runtime's int8", "use --target onnx-int8 (or onnx-int8-fused) with it"
        )
    for module in t.spec.requires:
        try:
            importlib.import_module(module)
        except ImportError:
            raise ToxdistillError(f"{module} is not installed (the {t} target needs it)", t.spec.install) from None


def export_model(job: ExportJob, say: Say = quiet) -> Path:
    """Export ``job.model_dir`` for ``job.target`` into ``job.out``, check parity, return the folder."""
    meta = check_source(job.model_dir, job.exporter)
    _check_job(job)
    t = job.target
    out = job.out or default_output(job.model_dir, t)
    check_export_folder(out, job.model_dir)
    t0 = time.perf_counter()
    torch_pred = Predictor.load(job.model_dir, backend="torch")  # validates weights, config and tokenizer
    model = torch_pred.backend.model
    if t.fused and getattr(model.config, "_attn_implementation", "eager") != "eager":
        # The optimizer knows the eager MatMul-Softmax-MatMul pattern; SDPA exports as one it cannot fuse.
        model.set_attn_implementation("eager")
    texts = job.texts or parity_texts(job.model_dir, job.data, say)
    calibration = job.calibration
    if t.engine == "openvino" and t.precision == "int8" and calibration is None:
        calibration = calibration_texts(job.model_dir, job.data, say=say)
    record = new_record(job.model_dir, meta, t, job.opset)
    steps = _Steps(t, torch_pred, meta, texts, record, job.batch_size, job.strict, say, job.model_dir)
    reuse = _reusable_fp32(job.model_dir, out, t.fused) if job.derived and _default_graph(job) else None
    with atomic_dir(out) as tmp:
        # A temporary name a restart's clean-up recognises (io.recover_partial_writes), should this process be killed.
        fp32_dir = new_temp_dir(out.with_name(f"{out.name}.fp32")) if job.derived else tmp
        try:
            graph, fp32_pred, got = steps.reuse_fp32(reuse) if reuse else steps.fp32(fp32_dir, job.exporter, job.opset)
            if t.engine == "openvino":
                steps.openvino(graph, tmp, fp32_pred, got, calibration)
            elif t.reduced:
                steps.int8(graph, tmp, job.int8_embeddings, fp32_pred, got)
        finally:
            if fp32_dir != tmp:
                shutil.rmtree(fp32_dir, ignore_errors=True)
        record["size_mb"] = sum(f.stat().st_size for f in graph_files(tmp, t.graph_file)) / 2**20
        record["export_seconds"] = time.perf_counter() - t0
        steps.write_folder(tmp)
    engine = t.spec.record_engine
    how = (
        f"OpenVINO IR, {t.precision}"
        if engine == "openvino"
        else f"{record['exporter']} exporter, opset {record['opset']}"
    )
    say(f"wrote {out} ({t.graph_file}, {record['size_mb']:.1f} MB, {how})")
    return out


def _logits_key(texts: TextSet, batch_size: int) -> str:
    """What fp32 logits saved by one export are good for another's parity: the same texts in the same batches."""
    h = hashlib.sha256("\x1e".join(texts.texts).encode("utf-8", "surrogatepass"))
    return f"{h.hexdigest()[:16]}-b{batch_size}"


def _default_graph(job: ExportJob) -> bool:
    """Whether the job's fp32 graph is the one a default export makes (so an existing one can be reused)."""
    return job.exporter == "auto" and job.opset == DEFAULT_OPSET


def _reusable_fp32(model_dir: Path, out: Path, fused: bool) -> Path | None:
    """The default fp32 export of the same weights, when it passed its parity check: int8 can start from it."""
    fp32 = Target(DEFAULT_TARGET.engine, "fp32", fused)
    cand = default_output(model_dir, fp32)
    fp32_ok = (parity_record(cand).get("fp32") or {}).get("ok")
    if cand.resolve() != out.resolve() and fp32_ok and export_is_current(cand, model_dir, fp32):
        return cand
    return None


@dataclass
class _Steps:
    """One export in progress: the target, the source model, the texts parity is checked on, and the record
    it fills in."""

    target: Target
    torch_pred: Predictor
    meta: dict
    texts: TextSet
    record: dict[str, Any]
    batch_size: int
    strict: bool
    say: Say
    model_dir: Path  # the source folder: torch's reference logits are kept for its weights (export.reference)

    def write_folder(self, folder: Path) -> None:
        write_folder(folder, self.torch_pred, self.meta, self.record)

    def fp32(self, folder: Path, exporter: str, opset: int) -> tuple[Path, Predictor, np.ndarray]:
        """Export (and fuse) the fp32 graph into ``folder`` and check it against torch: (graph, its predictor, logits)."""
        model = self.torch_pred.backend.model
        graph = folder / DEFAULT_TARGET.graph_file
        how, names, used_opset = export_graph(model, self.torch_pred.tokenizer, graph, exporter, opset)
        self.record.update(exporter=how, inputs=names, opset=used_opset, file=graph.name)
        if self.target.fused:
            plain = folder / "plain.onnx"
            graph.rename(plain)
            self.record["fusion"] = fuse_graph(plain, graph, model.config)
            plain.unlink()
            self.say(f"fused: {fused_desc(self.record['fusion'])}")
        self.write_folder(folder)
        fp32_pred, got = fp32_parity(
            self.torch_pred, folder, self.texts, self.record, self.batch_size, self.strict, self.say, self.model_dir
        )
        np.save(folder / FP32_LOGITS, got)
        self.record["parity"]["fp32"]["logits_key"] = _logits_key(self.texts, self.batch_size)
        return graph, fp32_pred, got

    def reuse_fp32(self, reuse: Path) -> tuple[Path, Predictor, np.ndarray]:
        """A derived target from the current fp32 export of the same weights: no second export or torch pass."""
        prev = read_meta(reuse)["export"]
        self.record.update(
            exporter=prev["exporter"],
            inputs=prev["inputs"],
            opset=prev["opset"],
            fusion=prev.get("fusion"),
            fp32_from=str(reuse),
        )
        self.record["parity"] = {"fp32": prev["parity"]["fp32"]}
        fp32_pred = Predictor.load(reuse, backend="onnx")
        if (reuse / FP32_LOGITS).is_file() and prev["parity"]["fp32"].get("logits_key") == _logits_key(
            self.texts, self.batch_size
        ):
            got = np.load(reuse / FP32_LOGITS)  # its parity pass's logits, on these very texts and batches
        else:
            got, _ = fp32_pred.logits(self.texts.texts, self.batch_size)
        step = "converting" if self.target.engine == "openvino" else "quantizing"
        self.say(
            f"{step} the fp32 export {reuse} (its parity: max |Δlogit| {prev['parity']['fp32']['max_abs_diff']:.1e})"
        )
        return reuse / DEFAULT_TARGET.graph_file, fp32_pred, got

    def int8(self, graph: Path, folder: Path, embeddings: bool, fp32_pred: Predictor, got: np.ndarray) -> None:
        """Quantize ``graph`` into ``folder`` and hold it against the fp32 logits ``got`` (the int8 gates)."""
        record, texts, fname = self.record, self.texts, self.target.graph_file
        fused_attention = bool(((record.get("fusion") or {}).get("fused_ops") or {}).get("Attention"))
        record["quantization"] = quantize_int8(graph, folder / fname, embeddings, fused_attention)
        record["file"] = fname
        self.write_folder(folder)
        q, _ = Predictor.load(folder, backend="onnx").logits(texts.texts, self.batch_size)
        block = agreement_block(got, q, fp32_pred, texts, self.torch_pred.label_names)
        record["parity"][self.target.parity_block] = block
        reduced_precision_gate(
            block,
            texts,
            self.strict,
            "int8",
            "use the fp32 export, leave out --int8-embeddings, or pass --allow-drift to keep it anyway",
            self.say,
        )

    def openvino(
        self, graph: Path, folder: Path, fp32_pred: Predictor, got: np.ndarray, calibration: TextSet | None = None
    ) -> None:
        """The fp32 ``graph`` as an OpenVINO IR in ``folder`` (int8: quantized by NNCF, calibrated on
        ``calibration``), held against ONNX Runtime's fp32 logits ``got``: fp32 within the fp32 tolerance,
        bf16 and int8 through the int8 gates."""
        ov = import_openvino()
        record, texts, precision = self.record, self.texts, self.target.precision
        model = ov.Core().read_model(str(graph))
        if precision == "int8":
            calibration = calibration or sample_texts()
            self.say(f"calibrating int8 on {calibration.source}")
            model, record["quantization"] = quantize_static_openvino(model, fp32_pred, calibration)
        # Weights stay as they are: save_model would halve fp32 weights to fp16 by default.
        ov.save_model(model, str(folder / IR_FILE), compress_to_fp16=False)
        record["file"] = IR_FILE
        self.write_folder(folder)
        ov_pred = Predictor.load(folder, backend="openvino")
        backend = ov_pred.backend
        record["runs_as"] = {"precision": backend.precision, "inference_precision": backend.inference_precision}
        got_ov, _ = ov_pred.logits(texts.texts, self.batch_size)
        block = agreement_block(got, got_ov, fp32_pred, texts, self.torch_pred.label_names)
        block["against"] = "onnxruntime fp32"
        record["parity"][self.target.parity_block] = block
        what = f"OpenVINO {precision}" + (
            " (run as fp32: no bf16 on this CPU)" if backend.precision != precision else ""
        )
        if precision == "fp32":
            fp32_gate(block, "OpenVINO", "ONNX Runtime", self.strict, self.say)
            return
        hint = "export --target openvino-fp32, or pass --allow-drift to keep it anyway"
        reduced_precision_gate(block, texts, self.strict, what, hint, self.say)
