"""The export folder: its record, what it may replace, writing it, and whether an export is still current."""

from __future__ import annotations

import hashlib
import platform
import time
from functools import partial
from pathlib import Path
from typing import Any

from toxdistill.cpu import cpu_features, cpu_name
from toxdistill.data.dataset import write_frontend_files
from toxdistill.errors import ToxdistillError
from toxdistill.files import META_FILE
from toxdistill.inference.openvino_backend import import_openvino
from toxdistill.inference.predict import Predictor
from toxdistill.io import atomic_write_json
from toxdistill.runs import find_clean_config, read_meta
from toxdistill.targets import Target, target_of_record


def weights_fingerprint(model_dir: Path) -> str:
    """sha256 over the folder's weight files, so a cached export can tell it is stale."""
    h = hashlib.sha256()
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(partial(fh.read, 1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def check_source(model_dir: Path, exporter: str) -> dict:
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


def versions(target: Target) -> dict:
    """The versions of the tools an export of ``target`` was made with."""
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
    if target.engine == "openvino":
        out["openvino"] = import_openvino().get_version()
    return out


def new_record(model_dir: Path, meta: dict, target: Target, opset: int) -> dict[str, Any]:
    """The export record before any step ran: what is exported from which weights, with which tools, for
    which engine, and the CPU its parity was checked on."""
    clean = find_clean_config(model_dir, meta)
    return {
        "format": target.spec.record_format,
        "engine": target.spec.record_engine,
        "precision": target.precision,
        "cpu": cpu_name(),
        "cpu_features": cpu_features(),
        "machine": platform.machine(),
        "file": target.graph_file,
        "opset": opset,
        "quantization": None,
        "fusion": None,
        "source": str(model_dir),
        "source_sha256": weights_fingerprint(model_dir),
        "clean": clean.model_dump() if clean is not None else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(target),
    }


def write_folder(folder: Path, torch_pred: Predictor, meta: dict, record: dict) -> None:
    """Tokenizer, config and metadata (with the record as it stands) beside the graph."""
    torch_pred.tokenizer.save_pretrained(str(folder))
    torch_pred.backend.model.config.save_pretrained(str(folder))
    write_frontend_files(folder, torch_pred.clean_config)
    atomic_write_json(
        folder / META_FILE,
        {**meta, "label_names": torch_pred.label_names, "max_length": torch_pred.max_length, "export": record},
    )


def graph_files(folder: Path, fname: str) -> list[Path]:
    """The graph file and, for an OpenVINO IR, its weights beside it."""
    files = [folder / fname]
    if fname.endswith(".xml"):
        files.append((folder / fname).with_suffix(".bin"))
    return [f for f in files if f.is_file()]


def export_is_current(out: Path, model_dir: Path, target: Target, int8_embeddings: bool = False) -> bool:
    """True when ``out`` holds an export of exactly these weights for ``target`` (and, for ONNX Runtime's int8,
    with the word-embedding table quantized or not as ``int8_embeddings`` says)."""
    meta = read_meta(out) if Path(out).is_dir() else {}
    rec = meta.get("export") or {}
    if not rec or not (Path(out) / rec.get("file", "")).is_file():
        return False
    try:
        if target_of_record(rec) != target:
            return False
    except ToxdistillError:  # a record of a target this version does not know
        return False
    q = rec.get("quantization") or {}
    if ("Gather" in q.get("op_types", [])) != int8_embeddings:
        return False
    return rec.get("source_sha256") == weights_fingerprint(model_dir)
