"""The ONNX graph: ``torch.onnx.export`` of a sequence classifier, and ONNX Runtime's transformer-optimizer fusion.

The TorchScript exporter (``dynamo=False``) by default, because on these BERT encoders it exports in about a
second, needs no ``onnxscript`` and gives the same graph speed as the dynamo exporter, which stays available
(``exporter="dynamo"``) and is the fallback if TorchScript export ever fails.

Fusion (a ``-fused`` target) rewrites attention into one ``Attention`` op (``QAttention`` in int8), LayerNorm with
its residual into ``SkipLayerNormalization``, bias + GELU into ``BiasGelu``, embeddings into
``EmbedLayerNormalization``. The same parity gates apply. Not in the default target because on the CPUs measured
here the fused graphs ran slower (docs/benchmarks.md); ``toxdistill bench`` measures both on your machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

from toxdistill.errors import ToxdistillError

log = logging.getLogger(__name__)

ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@contextlib.contextmanager
def quiet_tools():
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


def first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [e.__class__.__name__])[0][:200]


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
            with quiet_tools(), torch.inference_mode(False), torch.no_grad():
                (_torchscript_export if how == "torchscript" else _dynamo_export)(
                    wrapper, args, path, names, used_opset
                )
            return how, names, used_opset
        except Exception as e:  # noqa: BLE001 - try the next exporter, report all if none works
            log.info("%s export failed: %s", how, e)
            errors.append(f"{how}: {first_line(e)}")
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

    if not hasattr(config, "num_attention_heads"):
        raise ToxdistillError(
            f"a {config.model_type} model has no attention to fuse", "export it to a target without -fused"
        )
    with quiet_tools():
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


def has_attention(model_dir: Path) -> bool:
    """Whether the model in ``model_dir`` (its ``config.json``; an adapter folder's base) has attention layers, which
    is what a ``-fused`` target rewrites; a student without attention (models/cnn.py) has none."""
    for config in (Path(model_dir) / "config.json", Path(model_dir) / "base" / "config.json"):
        if config.is_file():
            return "num_attention_heads" in json.loads(config.read_text())
    return True


def fused_desc(fusion: dict) -> str:
    ops = fusion.get("fused_ops") or {}
    return ", ".join(f"{v} {k}" for k, v in sorted(ops.items())) or "nothing matched"
