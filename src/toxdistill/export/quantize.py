"""int8: ONNX Runtime's dynamic quantization of the ONNX graph, and NNCF's static quantization of OpenVINO's.

ONNX Runtime's ``quantize_dynamic``: int8 weights per output channel, activations quantized on the fly. By default
only the encoder's MatMuls are quantized (that is where the time goes); the word-embedding table stays fp32
unless ``embeddings`` is set, which shrinks the file about 3x at a small cost in agreement. NNCF quantizes
weights and activations, the activation ranges calibrated on a few hundred training texts of the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toxdistill.cpu import cpu_features, int8_dot
from toxdistill.data.split import TextSet
from toxdistill.errors import ToxdistillError
from toxdistill.export.graph import quiet_tools
from toxdistill.inference.openvino_backend import INSTALL
from toxdistill.inference.predict import Predictor


def wants_reduce_range(features: list[str] | None = None) -> bool:
    """Whether ONNX Runtime's dynamic int8 should quantize weights to 7 bits on this CPU (``features``: its
    flags, default this machine's): yes where it has no int8 dot-product instruction (VNNI, AMX).

    Why: without VNNI, ONNX Runtime's x86 u8s8 kernels sum pairs of u8 × s8 products in int16 (AVX2's
    vpmaddubsw), which saturates when both are large; its quantization docs advise ``reduce_range`` there. The
    price is one bit of weight precision. On the quick-run models on an AVX2-only AMD EPYC every int8 graph
    passed its parity gates with and without it (bench/results/int8-reduce-range/NOTES.md): it guards against the
    saturation those models did not hit, and the parity gates still decide whether a graph ships."""
    return not int8_dot(features)


def quantize_int8(
    src: Path, dst: Path, embeddings: bool = False, attention: bool = False, reduce_range: bool | None = None
) -> dict:
    """Dynamic int8 quantization of the weights (per output channel); returns the settings used, which the
    export record keeps.

    ``attention``: the graph holds fused ``Attention`` ops, whose QKV weights become ``QAttention``.
    ``reduce_range``: 7-bit weights; None decides by this CPU (``wants_reduce_range``).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    features = cpu_features()
    if reduce_range is None:
        reduce_range = wants_reduce_range(features)
    op_types = ["MatMul"] + (["Attention"] if attention else []) + (["Gather"] if embeddings else [])
    with quiet_tools():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
            op_types_to_quantize=op_types,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return {
        "method": "dynamic",
        "weights": "QInt8",
        "per_channel": True,
        "op_types": op_types,
        "reduce_range": reduce_range,
        # What the choice was made on: a graph quantized for a VNNI CPU may saturate on one without.
        "int8_dot": int8_dot(features),
    }


def quantize_static_openvino(model: Any, pred: Predictor, calibration: TextSet) -> tuple[Any, dict]:
    """NNCF's static int8 quantization of an OpenVINO model: weights and activations, the activation ranges
    calibrated on ``calibration`` one text at a time (unpadded, so pad tokens do not widen them)."""
    try:
        import nncf  # heavy: imports torch when it is installed; only an int8 OpenVINO export needs it
    except ImportError:
        raise ToxdistillError("OpenVINO int8 needs nncf, not installed", INSTALL) from None
    ids, _ = pred.encode(calibration.texts)
    # The tokenizer's inputs, less those the graph does not take (MPNet, RoBERTa and DistilBERT take no
    # token_type_ids): NNCF feeds every key it is given.
    takes = {name for port in model.inputs for name in port.get_names()}
    items = [{k: v for k, v in pred.batch_inputs([row]).items() if k in takes} for row in ids]
    with quiet_tools():
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
