"""Where an export of a target goes: one folder name per target (``Target.folder_suffix``) and back."""

from __future__ import annotations

from pathlib import Path

from toxdistill.files import EXPORT_DIR, MODELS_DIR
from toxdistill.runs import run_dir_of
from toxdistill.targets import Target


def default_output(model_dir: Path, target: Target) -> Path:
    """``runs/<name>/export/<m><suffix>`` for a run's model (so the run's models/ list stays clean), else a
    sibling ``<MODEL_DIR><suffix>``; the suffix is the target's (``-onnx``, ``-onnx-int8-fused``,
    ``-openvino-bf16``)."""
    return output_named(model_dir, target.folder_suffix)


def output_named(model_dir: Path, suffix: str) -> Path:
    """Where an export of ``model_dir`` whose folder name ends in ``suffix`` goes (see ``default_output``)."""
    model_dir = Path(model_dir)
    run = run_dir_of(model_dir)
    if run is not None and model_dir.parent.name == MODELS_DIR:
        return run / EXPORT_DIR / f"{model_dir.name}{suffix}"
    return model_dir.with_name(model_dir.name + suffix)
