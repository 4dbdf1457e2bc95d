"""ONNX export (fp32, or int8 with dynamic weight quantization) with a parity check.

The exported folder describes itself: ``model.onnx`` (or ``model.int8.onnx``), the tokenizer files,
``config.json`` (labels) and the source's ``toxdistill.json`` (metrics, calibration, max length) with
an ``export`` record added: how it was made, from which weights, and how closely it matches them.

The graph comes from ``torch.onnx.export``: the TorchScript exporter (``dynamo=False``) by default,
because on these BERT encoders it exports in about a second, needs no ``onnxscript`` and gives the
same graph speed as the dynamo exporter, which stays available (``exporter="dynamo"``) and is the
fallback if TorchScript export ever fails. int8 uses ONNX Runtime's ``quantize_dynamic``: int8
weights per output channel, activations quantized on the fly. By default only the encoder's MatMuls
are quantized (that is where the time goes); the word-embedding table stays fp32 unless
``int8_embeddings`` is set, which shrinks the file about 3x at a small cost in agreement.

With ``fuse``, ONNX Runtime's transformer optimizer rewrites the graph before quantization: attention into
one ``Attention`` op (``QAttention`` in int8), LayerNorm with its residual into ``SkipLayerNormalization``,
bias + GELU into ``BiasGelu``, embeddings into ``EmbedLayerNormalization``. The same parity gates apply.
It is off by default because on the CPUs measured here the fused graphs ran slower (docs/benchmarks.md);
``toxdistill bench`` measures both on your machine.

With ``engine="openvino"`` the fp32 ONNX graph is read by OpenVINO and saved as its IR (``model.xml`` +
``model.bin``) for precision fp32 or bf16 (the same IR; the record's precision becomes the compile hint), or
quantized first by NNCF for int8: static quantization, activation ranges calibrated on a few hundred
training texts of the run (``calibration_texts``). Every OpenVINO precision is checked against ONNX
Runtime's fp32 logits: fp32 within the fp32 tolerance, bf16 and int8 through the same gates as ONNX
Runtime's int8 (``_reduced_precision_gate``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import platform
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from toxdistill.console import Say, quiet
from toxdistill.data.split import TextSet, load_run_split, load_test_texts
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.metrics import classification_metrics
from toxdistill.files import EXPORT_DIR, META_FILE, MODELS_DIR
from toxdistill.inference.openvino_backend import ENGINES, INSTALL, IR_FILE, check_precision, import_openvino
from toxdistill.inference.predict import Predictor
from toxdistill.inference.timing import cpu_features, cpu_name
from toxdistill.io import atomic_dir, atomic_write_json
from toxdistill.runs import find_clean_config, read_meta, run_dir_of

log = logging.getLogger(__name__)

FP32_TOLERANCE = 1e-4  # max |logit difference| between ONNX fp32 and torch
MIN_INT8_AGREEMENT = 0.99  # share of texts where int8 and fp32 predict the same class
MAX_INT8_F1_DROP = 0.5  # weighted and macro F1 points int8 (or bf16) may lose against fp32
CALIBRATION_TEXTS = 300  # training texts NNCF calibrates OpenVINO int8 on (its own default subset size)
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

# Used when the model is not inside a run folder (or its data cannot be found): agreement only.
SAMPLE_TEXTS = [
    "you are a wonderful person and I am glad we met",
    "I hate all of you, get out of this country",
    "this is trash and so are you",
    "what a lovely day at the beach with my family",
    "lol",
    "shut up you stupid idiot",
    "@user thanks for the follow, have a great weekend",
    "these people are animals and should be locked up",
    "can't wait for the game tonight, let's go!!",
    "that bitch stole my fries again",
    "my grandma makes the best apple pie in the world",
    "nobody asked for your opinion, loser",
    "RT @user: new music video out now http",
    "go back to where you came from",
    "I love how the sky looks after it rains",
    "ugh mondays are the worst",
    "you people are all the same, disgusting",
    "congrats on the new job, so proud of you",
    "what the hell is wrong with you",
    "a much longer message that goes on and on about nothing in particular " * 12,
]


# ------------------------------------------------------------------ run folders and their test split
def sample_texts() -> TextSet:
    return TextSet(list(SAMPLE_TEXTS), None, "built-in sample")


def parity_texts(model_dir: Path, data: str | None = None, say: Say = quiet) -> TextSet:
    """The texts parity is checked on: the run's test split for a model inside a run, else the built-in sample."""
    run = run_dir_of(model_dir)
    if run is not None:
        try:
            return load_test_texts(run, data)
        except ToxdistillError as e:
            say(f"note: cannot rebuild the test split of {run} ({e.problem}); checking on the built-in sample")
    return sample_texts()


def calibration_texts(
    model_dir: Path, data: str | None = None, n: int = CALIBRATION_TEXTS, say: Say = quiet
) -> TextSet:
    """What static int8 quantization calibrates on: ``n`` training texts of the run (seeded), else the sample.

    Training rows, never the test split that parity is then checked on."""
    run = run_dir_of(model_dir)
    if run is not None:
        try:
            train = load_run_split(run, data).train
        except ToxdistillError as e:
            say(f"note: cannot rebuild the training split of {run} ({e.problem}); calibrating on the built-in sample")
        else:
            pick = np.sort(np.random.default_rng(0).permutation(len(train.texts))[:n])
            return TextSet([train.texts[i] for i in pick], None, f"{len(pick)} training texts of {run}")
    return sample_texts()


# ------------------------------------------------------------------ helpers
def weights_fingerprint(model_dir: Path) -> str:
    """sha256 over the folder's weight files, so a cached export can tell it is stale."""
    h = hashlib.sha256()
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(partial(fh.read, 1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def default_output(model_dir: Path, int8: bool, fuse: bool = False, openvino: str | None = None) -> Path:
    """``runs/<name>/export/<m>-onnx[-int8][-fused]`` for a run's model (so the run's models/ list stays
    clean), else a sibling ``<MODEL_DIR>-onnx[-int8][-fused]``; ``-openvino-<precision>`` for an OpenVINO
    export of that precision."""
    suffix = f"-openvino-{openvino}" if openvino else ("-onnx-int8" if int8 else "-onnx") + ("-fused" if fuse else "")
    return output_named(model_dir, suffix)


def output_named(model_dir: Path, suffix: str) -> Path:
    """Where an export of ``model_dir`` whose folder name ends in ``suffix`` goes (see ``default_output``)."""
    model_dir = Path(model_dir)
    run = run_dir_of(model_dir)
    if run is not None and model_dir.parent.name == MODELS_DIR:
        return run / EXPORT_DIR / f"{model_dir.name}{suffix}"
    return model_dir.with_name(model_dir.name + suffix)


def check_export_folder(out: Path, model_dir: Path) -> None:
    """An export may replace an earlier export, never the model itself or a folder that is not ours."""
    out_r, src_r = out.resolve(), model_dir.resolve()
    if out_r == src_r or src_r in out_r.parents:
        raise ToxdistillError(f"output {out} is inside the model folder", "pick another -o")
    if out.exists():
        if not out.is_dir():
            raise ToxdistillError(f"output {out} exists and is not a folder", "pick another -o")
        if any(out.iterdir()) and "export" not in read_meta(out):
            # Replacing a previous export is fine; replacing anything else is not ours to do.
            raise ToxdistillError(
                f"output folder {out} exists and is not a toxdistill export", "pick another -o or remove it"
            )


def _versions(engine: str = "onnxruntime") -> dict:
    import onnx
    import onnxruntime
    import torch
    import transformers

    out = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    if engine == "openvino":
        out["openvino"] = import_openvino().get_version()
    return out


@contextlib.contextmanager
def _quiet():
    """Exporters and the quantizer warn loudly about things that do not apply here."""
    names = ("", "onnxruntime", "torch.onnx", "torch.export", "onnxscript", "nncf")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    # NNCF draws its progress bars (rich) on stdout, where the export's own report goes.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, lv in zip(loggers, levels):
                lg.setLevel(lv)


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [e.__class__.__name__])[0][:200]


# ------------------------------------------------------------------ graph export and quantization
def export_graph(model, tokenizer, path: Path, exporter: str = "auto", opset: int = 17) -> tuple[str, list[str], int]:
    """Write ``model`` (a HF sequence classifier) to ``path`` as ONNX with dynamic batch and sequence axes.

    Returns the exporter used, the graph's input names and its opset (the dynamo exporter needs 18+).
    """
    import torch

    from toxdistill.models.families import forward_inputs  # heavy: imports torch and transformers

    wanted = getattr(tokenizer, "model_input_names", None) or ONNX_INPUTS[:2]
    names = [n for n in ONNX_INPUTS if n in wanted and n in forward_inputs(model)]
    if names[:2] != ["input_ids", "attention_mask"]:
        raise ToxdistillError(
            f"the tokenizer's inputs {list(wanted)} are not a BERT-like encoder's",
            "export needs input_ids and attention_mask",
        )

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.m(**{k: v for k, v in given.items() if v is not None}).logits

    wrapper = Logits(model).eval()
    # Two texts of different lengths: the example must carry padding, or a tracer could bake in
    # "no mask needed" and the graph would be wrong on padded batches.
    enc = tokenizer(
        ["an example sentence for the export, long enough to need padding", "short"],
        padding=True,
        return_tensors="pt",
    )
    args = tuple(enc[n] for n in names)
    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    errors = []
    for how in order:
        used_opset = opset if how == "torchscript" else max(opset, 18)
        try:
            with _quiet(), torch.inference_mode(False), torch.no_grad():
                (_torchscript_export if how == "torchscript" else _dynamo_export)(
                    wrapper, args, path, names, used_opset
                )
            return how, names, used_opset
        except Exception as e:  # noqa: BLE001 - try the next exporter, report all if none works
            log.info("%s export failed: %s", how, e)
            errors.append(f"{how}: {_first_line(e)}")
            Path(path).unlink(missing_ok=True)
    raise ToxdistillError(
        f"ONNX export failed ({'; '.join(errors)})", "try --exporter dynamo or torchscript, or -v for details"
    )


def _torchscript_export(wrapper, args: tuple, path: Path, names: list[str], opset: int) -> None:
    import torch

    torch.onnx.export(
        wrapper,
        args,
        str(path),
        dynamo=False,
        input_names=names,
        output_names=["logits"],
        dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "logits": {0: "batch"}},
        opset_version=opset,
    )


def _dynamo_export(wrapper, args: tuple, path: Path, names: list[str], opset: int) -> None:
    import torch

    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise RuntimeError("the dynamo exporter needs onnxscript (pip install onnxscript)") from None
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    prog = torch.onnx.export(
        wrapper,
        args,
        dynamo=True,
        input_names=names,
        output_names=["logits"],
        dynamic_shapes={n: {0: batch, 1: seq} for n in names},
        opset_version=opset,
        verbose=False,
    )
    assert prog is not None, "torch.onnx.export(dynamo=True) returns the program"
    prog.save(str(path), external_data=False)


def fuse_graph(src: Path, dst: Path, config) -> dict:
    """ONNX Runtime's transformer optimizer on ``src``, written to ``dst``; returns what it fused.

    ``model_type="bert"`` holds the encoder patterns (BERT, RoBERTa, ELECTRA, DistilBERT); a family whose
    attention it does not recognise (MPNet's relative bias, DeBERTa's disentangled attention) keeps its
    attention unfused and gets the LayerNorm and GELU fusions only, which the record shows.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet():
        m = optimize_model(
            str(src),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            use_gpu=False,  # CPU-only fused ops; a GPU graph could hold ops the CPU provider lacks
        )
        m.save_model_to_file(str(dst))
        stats = m.get_fused_operator_statistics() or {}
    return {"tool": "onnxruntime.transformers.optimizer", "fused_ops": {k: int(v) for k, v in stats.items() if v}}


def quantize_int8(src: Path, dst: Path, embeddings: bool = False, attention: bool = False) -> dict:
    """Dynamic int8 quantization of the weights (per output channel); returns the settings used.

    ``attention``: the graph holds fused ``Attention`` ops, whose QKV weights become ``QAttention``.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    op_types = ["MatMul"] + (["Attention"] if attention else []) + (["Gather"] if embeddings else [])
    with _quiet():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=op_types,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return {"method": "dynamic", "weights": "QInt8", "per_channel": True, "op_types": op_types}


def quantize_static_openvino(model: Any, pred: Predictor, calibration: TextSet) -> tuple[Any, dict]:
    """NNCF's static int8 quantization of an OpenVINO model: weights and activations, the activation ranges
    calibrated on ``calibration`` one text at a time (unpadded, so pad tokens do not widen them)."""
    try:
        import nncf  # heavy: imports torch when it is installed; only an int8 OpenVINO export needs it
    except ImportError:
        raise ToxdistillError("OpenVINO int8 needs nncf, not installed", INSTALL) from None
    ids, _ = pred.encode(calibration.texts)
    items = [pred.batch_inputs([row]) for row in ids]
    with _quiet():
        quantized = nncf.quantize(
            model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items)
        )
    settings = {
        "method": "static",
        "tool": f"nncf {nncf.__version__}",
        "model_type": "transformer",
        "calibration": {"texts": calibration.source, "n": len(items)},
    }
    return quantized, settings


# ------------------------------------------------------------------ parity
def _agreement_block(ref: np.ndarray, got: np.ndarray, ref_pred: Predictor, texts: TextSet, label_names) -> dict:
    a, b = ref.argmax(-1), got.argmax(-1)
    out = {
        "texts": texts.source,
        "n": len(a),
        "agreement": float((a == b).mean()),
        # With the saved calibration and decision offsets, i.e. the labels users see.
        "agreement_decided": float((ref_pred.decide(ref) == ref_pred.decide(got)).mean()),
        "max_abs_diff": float(np.abs(ref - got).max()),
    }
    if texts.labels is not None:
        m_ref = classification_metrics(texts.labels, a, label_names)
        m_got = classification_metrics(texts.labels, b, label_names)
        out.update(
            f1_weighted_ref=m_ref["f1_weighted"],
            f1_weighted=m_got["f1_weighted"],
            f1_macro_ref=m_ref["f1_macro"],
            f1_macro=m_got["f1_macro"],
            accuracy=m_got["accuracy"],
            f1_weighted_drop_points=100 * (m_ref["f1_weighted"] - m_got["f1_weighted"]),
            f1_macro_drop_points=100 * (m_ref["f1_macro"] - m_got["f1_macro"]),
        )
    return out


def _describe(block: dict, what: str) -> str:
    s = f"{what}: agreement {100 * block['agreement']:.2f}% on {block['n']} texts ({block['texts']})"
    if "f1_weighted" in block:
        s += (
            f"; weighted F1 {100 * block['f1_weighted_ref']:.2f} → {100 * block['f1_weighted']:.2f}"
            f" ({-block['f1_weighted_drop_points']:+.2f} points), macro F1 {100 * block['f1_macro_ref']:.2f}"
            f" → {100 * block['f1_macro']:.2f} ({-block.get('f1_macro_drop_points', 0.0):+.2f})"
        )
    else:
        s += "; no labels, so no F1"
    return s


def _fp32_parity(
    torch_pred, fp32_dir: Path, texts: TextSet, record: dict, batch_size: int, strict: bool, say: Say
) -> tuple[Predictor, np.ndarray]:
    """fp32 ONNX against torch, on length-sorted padded batches and on single unpadded texts."""
    ref, _ = torch_pred.logits(texts.texts, batch_size)
    fp32_pred = Predictor.load(fp32_dir, backend="onnx")
    got, _ = fp32_pred.logits(texts.texts, batch_size)
    single = texts.texts[:16]
    ref1, _ = torch_pred.logits(single, 1)
    got1, _ = fp32_pred.logits(single, 1)
    block = _agreement_block(ref, got, torch_pred, texts, torch_pred.label_names)
    block["max_abs_diff"] = max(block["max_abs_diff"], float(np.abs(ref1 - got1).max()))
    block["tolerance"] = FP32_TOLERANCE
    block["ok"] = block["max_abs_diff"] <= FP32_TOLERANCE
    record["parity"] = {"fp32": block}
    say(
        f"fp32 ONNX vs torch: max |Δlogit| {block['max_abs_diff']:.1e} (tolerance {FP32_TOLERANCE:.0e}); "
        + _describe(block, "predicted class")
    )
    if not block["ok"] and strict:
        raise ToxdistillError(
            f"ONNX fp32 logits differ from torch by {block['max_abs_diff']:.1e} (> {FP32_TOLERANCE:.0e})",
            "try --exporter dynamo, or pass --allow-drift to keep it anyway",
        )
    return fp32_pred, got


def _reduced_precision_gate(block: dict, texts: TextSet, strict: bool, what: str, hint: str, say: Say) -> None:
    """The gates for a graph that runs below fp32 (int8, bf16): agreement with fp32 on ≥ 99% of the texts and
    at most 0.5 points lost of weighted F1 and of macro F1 (macro carries the rare hate class). Marks ``block``,
    reports it, and refuses a failure under ``strict`` where the texts carry labels (a 20-text sample cannot
    support a 99% threshold)."""
    gated = texts.labels is not None
    drops = {k: block.get(k, 0.0) for k in ("f1_weighted_drop_points", "f1_macro_drop_points")}
    block["ok"] = bool(block["agreement"] >= MIN_INT8_AGREEMENT and max(drops.values()) <= MAX_INT8_F1_DROP)
    block["thresholds"] = {"agreement": MIN_INT8_AGREEMENT, **dict.fromkeys(drops, MAX_INT8_F1_DROP)}
    say(_describe(block, f"{what} vs fp32"))
    if not block["ok"] and strict and gated:
        raise ToxdistillError(
            f"{what} model agrees with fp32 on {100 * block['agreement']:.2f}% and loses "
            f"{drops['f1_weighted_drop_points']:.2f} weighted-F1 and {drops['f1_macro_drop_points']:.2f} macro-F1 "
            "points (limits: ≥ 99%, ≤ 0.5 each)",
            hint,
        )
    if not block["ok"] and not gated:
        say(f"warning: {what} agreement is below 99% on the built-in sample")


# ------------------------------------------------------------------ the export
def export_model(
    model_dir: str | Path,
    out: str | Path | None = None,
    int8: bool = False,
    int8_embeddings: bool = False,
    exporter: str = "auto",
    opset: int = 17,
    data: str | None = None,
    strict: bool = True,
    texts: TextSet | None = None,
    batch_size: int = 64,
    fuse: bool = False,
    say: Say = quiet,
    engine: str = "onnxruntime",
    precision: str | None = None,
    calibration: TextSet | None = None,
) -> Path:
    """Export ``model_dir`` to ONNX (optionally int8) in ``out``, check parity, return the folder.

    With ``strict`` a failed parity check (fp32 off by more than 1e-4; int8 agreeing on fewer than 99%
    of the test texts or losing more than 0.5 points of weighted or of macro F1) is an error and nothing is
    written.
    The folder appears in one rename, so a half-written export is never visible.

    ``engine="openvino"`` writes an OpenVINO IR of ``precision`` (fp32, bf16 or int8) instead, from the same
    fp32 ONNX graph (see the module's docstring); int8 calibrates on ``calibration``, by default
    ``calibration_texts``.
    """
    model_dir = Path(model_dir)
    meta = _check_source(model_dir, exporter)
    openvino = _check_engine(engine, precision, int8, fuse)
    out = Path(out) if out else default_output(model_dir, int8, fuse, openvino)
    check_export_folder(out, model_dir)

    t0 = time.perf_counter()
    torch_pred = Predictor.load(model_dir, backend="torch")  # validates weights, config and tokenizer
    model = torch_pred.backend.model
    if fuse and getattr(model.config, "_attn_implementation", "eager") != "eager":
        # The optimizer knows the eager MatMul-Softmax-MatMul pattern; SDPA exports as one it cannot fuse.
        model.set_attn_implementation("eager")
    texts = texts or parity_texts(model_dir, data, say)
    if openvino == "int8" and calibration is None:
        calibration = calibration_texts(model_dir, data, say=say)
    fname = IR_FILE if openvino else "model.int8.onnx" if int8 else "model.onnx"
    record = _new_record(model_dir, meta, fname, opset, engine, openvino or ("int8" if int8 else "fp32"))
    job = _Export(torch_pred, meta, texts, record, batch_size, strict, say)
    derived = int8 or openvino is not None  # made from an fp32 graph, which is not kept in the folder
    reuse = _reusable_fp32(model_dir, out, fuse) if derived and exporter == "auto" and opset == 17 else None
    with atomic_dir(out) as tmp:
        fp32_dir = Path(tempfile.mkdtemp(dir=tmp.parent, prefix=f".{out.name}.fp32.")) if derived else tmp
        try:
            if reuse is not None:
                graph, fp32_pred, got = job.reuse_fp32(reuse)
            else:
                graph, fp32_pred, got = job.fp32(fp32_dir, exporter, opset, fuse)
            if openvino:
                job.openvino(graph, tmp, openvino, fp32_pred, got, calibration)
            elif int8:
                job.int8(graph, tmp, fname, int8_embeddings, fp32_pred, got)
        finally:
            if fp32_dir != tmp:
                shutil.rmtree(fp32_dir, ignore_errors=True)
        record["size_mb"] = sum(f.stat().st_size for f in _graph_files(tmp, fname)) / 2**20
        record["export_seconds"] = time.perf_counter() - t0
        job.write_folder(tmp)
    how = f"OpenVINO IR, {openvino}" if openvino else f"{record['exporter']} exporter, opset {record['opset']}"
    say(f"wrote {out} ({fname}, {record['size_mb']:.1f} MB, {how})")
    return out


def _check_engine(engine: str, precision: str | None, int8: bool, fuse: bool) -> str | None:
    """The OpenVINO precision to export (None for ONNX Runtime), once engine and options fit together."""
    if engine not in ENGINES:
        raise ToxdistillError(f"unknown engine {engine!r}", f"use {' or '.join(ENGINES)}")
    if engine == "onnxruntime":
        if precision not in (None, "fp32", "int8"):
            raise ToxdistillError(
                f"ONNX Runtime exports fp32 or int8, not {precision}", "use --engine openvino for bf16"
            )
        if precision == "int8" and not int8:
            raise ToxdistillError("ONNX Runtime's int8 is --int8", "use --int8 (or --engine openvino --precision int8)")
        return None
    if int8 or fuse:
        raise ToxdistillError(
            "--int8 and --fuse are ONNX Runtime's", "with --engine openvino use --precision int8 (no fusion step)"
        )
    precision = precision or "fp32"
    check_precision(precision)
    import_openvino()  # the install line, before any work
    return precision


def _graph_files(folder: Path, fname: str) -> list[Path]:
    """The graph file and, for an OpenVINO IR, its weights beside it."""
    files = [folder / fname]
    if fname.endswith(".xml"):
        files.append((folder / fname).with_suffix(".bin"))
    return [f for f in files if f.is_file()]


def _check_source(model_dir: Path, exporter: str) -> dict:
    """The source folder's metadata, once it is known to be a transformer folder that is not an export."""
    if not model_dir.is_dir():
        raise ToxdistillError(
            f"model folder not found: {model_dir}", "give a model folder, e.g. runs/<name>/models/odd"
        )
    meta = read_meta(model_dir)
    if "export" in meta or (list(model_dir.glob("*.onnx")) and not list(model_dir.glob("*.safetensors"))):
        raise ToxdistillError(f"{model_dir} is already an ONNX export", "export from the original model folder")
    if meta.get("kind") == "baseline" or not (model_dir / "config.json").is_file():
        raise ToxdistillError(
            f"{model_dir} is not a transformer model folder (no config.json)", "export a teacher or student folder"
        )
    if exporter not in ("auto", "torchscript", "dynamo"):
        raise ToxdistillError(f"unknown exporter {exporter!r}", "use auto, torchscript or dynamo")
    return meta


def _new_record(
    model_dir: Path, meta: dict, fname: str, opset: int, engine: str = "onnxruntime", precision: str = "fp32"
) -> dict[str, Any]:
    """The export record before any step ran: what is exported from which weights, with which tools, for
    which engine, and the CPU its parity was checked on."""
    clean = find_clean_config(model_dir, meta)
    return {
        "format": "openvino-ir" if engine == "openvino" else "onnx",
        "engine": engine,
        "precision": precision,
        "cpu": cpu_name(),
        "cpu_features": cpu_features(),
        "machine": platform.machine(),
        "file": fname,
        "opset": opset,
        "quantization": None,
        "fusion": None,
        "source": str(model_dir),
        "source_sha256": weights_fingerprint(model_dir),
        "clean": clean.model_dump() if clean is not None else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": _versions(engine),
    }


def _reusable_fp32(model_dir: Path, out: Path, fuse: bool) -> Path | None:
    """The default fp32 export of the same weights, when it passed its parity check: int8 can start from it."""
    cand = default_output(model_dir, False, fuse)
    fp32_ok = (parity_record(cand).get("fp32") or {}).get("ok")
    if cand.resolve() != out.resolve() and fp32_ok and export_is_current(cand, model_dir, False, fuse=fuse):
        return cand
    return None


@dataclass
class _Export:
    """One export in progress: the source model, the texts parity is checked on, and the record it fills in."""

    torch_pred: Predictor
    meta: dict
    texts: TextSet
    record: dict[str, Any]
    batch_size: int
    strict: bool
    say: Say

    def write_folder(self, folder: Path) -> None:
        """Tokenizer, config and metadata (with the record as it stands) beside the graph."""
        pred = self.torch_pred
        pred.tokenizer.save_pretrained(str(folder))
        pred.backend.model.config.save_pretrained(str(folder))
        atomic_write_json(
            folder / META_FILE,
            {**self.meta, "label_names": pred.label_names, "max_length": pred.max_length, "export": self.record},
        )

    def fp32(self, folder: Path, exporter: str, opset: int, fuse: bool) -> tuple[Path, Predictor, np.ndarray]:
        """Export (and fuse) the fp32 graph into ``folder`` and check it against torch: (graph, its predictor, logits)."""
        model = self.torch_pred.backend.model
        graph = folder / "model.onnx"
        how, names, used_opset = export_graph(model, self.torch_pred.tokenizer, graph, exporter, opset)
        self.record.update(exporter=how, inputs=names, opset=used_opset, file="model.onnx")
        if fuse:
            plain = folder / "plain.onnx"
            graph.rename(plain)
            self.record["fusion"] = fuse_graph(plain, graph, model.config)
            plain.unlink()
            self.say(f"fused: {_fused_desc(self.record['fusion'])}")
        self.write_folder(folder)
        fp32_pred, got = _fp32_parity(
            self.torch_pred, folder, self.texts, self.record, self.batch_size, self.strict, self.say
        )
        return graph, fp32_pred, got

    def reuse_fp32(self, reuse: Path) -> tuple[Path, Predictor, np.ndarray]:
        """int8 from the current fp32 export of the same weights: no second export or torch pass."""
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
        got, _ = fp32_pred.logits(self.texts.texts, self.batch_size)
        step = "converting" if self.record.get("engine") == "openvino" else "quantizing"
        self.say(
            f"{step} the fp32 export {reuse} (its parity: max |Δlogit| {prev['parity']['fp32']['max_abs_diff']:.1e})"
        )
        return reuse / "model.onnx", fp32_pred, got

    def int8(
        self, graph: Path, folder: Path, fname: str, embeddings: bool, fp32_pred: Predictor, got: np.ndarray
    ) -> None:
        """Quantize ``graph`` into ``folder`` and hold it against the fp32 logits ``got`` (the int8 gates)."""
        record, texts = self.record, self.texts
        fused_attention = bool(((record.get("fusion") or {}).get("fused_ops") or {}).get("Attention"))
        record["quantization"] = quantize_int8(graph, folder / fname, embeddings, fused_attention)
        record["file"] = fname
        self.write_folder(folder)
        q, _ = Predictor.load(folder, backend="onnx").logits(texts.texts, self.batch_size)
        block = _agreement_block(got, q, fp32_pred, texts, self.torch_pred.label_names)
        record["parity"]["int8"] = block
        _reduced_precision_gate(
            block,
            texts,
            self.strict,
            "int8",
            "use the fp32 export, leave out --int8-embeddings, or pass --allow-drift to keep it anyway",
            self.say,
        )

    def openvino(
        self,
        graph: Path,
        folder: Path,
        precision: str,
        fp32_pred: Predictor,
        got: np.ndarray,
        calibration: TextSet | None = None,
    ) -> None:
        """The fp32 ``graph`` as an OpenVINO IR in ``folder`` (int8: quantized by NNCF, calibrated on
        ``calibration``), held against ONNX Runtime's fp32 logits ``got``: fp32 within the fp32 tolerance,
        bf16 and int8 through the int8 gates."""
        ov = import_openvino()
        record, texts = self.record, self.texts
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
        block = _agreement_block(got, got_ov, fp32_pred, texts, self.torch_pred.label_names)
        block["against"] = "onnxruntime fp32"
        record["parity"][f"openvino-{precision}"] = block
        what = f"OpenVINO {precision}" + (
            " (run as fp32: no bf16 on this CPU)" if backend.precision != precision else ""
        )
        if precision != "fp32":
            hint = "export --engine openvino --precision fp32, or pass --allow-drift to keep it anyway"
            _reduced_precision_gate(block, texts, self.strict, what, hint, self.say)
            return
        block["tolerance"] = FP32_TOLERANCE
        block["ok"] = block["max_abs_diff"] <= FP32_TOLERANCE
        self.say(
            f"{what} vs ONNX Runtime fp32: max |Δlogit| {block['max_abs_diff']:.1e} (tolerance {FP32_TOLERANCE:.0e}); "
            + _describe(block, "predicted class")
        )
        if not block["ok"] and self.strict:
            raise ToxdistillError(
                f"OpenVINO fp32 logits differ from ONNX Runtime's by {block['max_abs_diff']:.1e} (> {FP32_TOLERANCE:.0e})",
                "pass --allow-drift to keep it anyway",
            )


def export_is_current(
    out: Path,
    model_dir: Path,
    int8: bool,
    int8_embeddings: bool = False,
    fuse: bool = False,
    openvino: str | None = None,
) -> bool:
    """True when ``out`` holds an export of exactly these weights with these settings (``openvino``: an
    OpenVINO export of that precision)."""
    meta = read_meta(out) if Path(out).is_dir() else {}
    rec = meta.get("export") or {}
    if not rec or not (Path(out) / rec.get("file", "")).is_file():
        return False
    if openvino or rec.get("engine") == "openvino":
        if rec.get("engine") != "openvino" or rec.get("precision") != openvino:
            return False
    elif bool(rec.get("fusion")) != fuse:
        return False
    else:
        q = rec.get("quantization")
        if bool(q) != int8 or (q and ("Gather" in q.get("op_types", [])) != int8_embeddings):
            return False
    return rec.get("source_sha256") == weights_fingerprint(model_dir)


def gate_block(record: dict) -> dict:
    """The parity block that decides whether an export passes: its own precision against fp32 (ONNX Runtime
    int8, OpenVINO at any precision), or fp32 against torch."""
    parity = record.get("parity") or {}
    if record.get("engine") == "openvino":
        return parity.get(f"openvino-{record.get('precision')}") or {}
    return parity.get("int8" if record.get("quantization") else "fp32") or {}


def _fused_desc(fusion: dict) -> str:
    ops = fusion.get("fused_ops") or {}
    return ", ".join(f"{v} {k}" for k, v in sorted(ops.items())) or "nothing matched"


def parity_record(folder: Path) -> dict:
    return (read_meta(folder).get("export") or {}).get("parity") or {}
