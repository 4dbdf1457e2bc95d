"""What an export folder says about itself, read side: its record (``toxdistill.json``'s ``export`` block), the
target it was made for and the parity block that decides whether it passed.

The Predictor and everything that ships or measures an export read folders through here; making them is
``toxdistill.export``, a layer above.
"""

from __future__ import annotations

from pathlib import Path

from toxdistill.runs import read_meta
from toxdistill.targets import Target, target_of_record


def export_record(folder: Path) -> dict:
    """The folder's export record; empty for a folder that is not an export."""
    return read_meta(folder).get("export") or {} if Path(folder).is_dir() else {}


def record_target(record: dict) -> Target | None:
    """The target an export record was made for; None for no record."""
    return target_of_record(record) if record else None


def gate_block(record: dict) -> dict:
    """The parity block that decides whether an export passes: its own precision against fp32 (ONNX Runtime
    int8, OpenVINO at any precision), or fp32 against torch."""
    parity = record.get("parity") or {}
    return parity.get(target_of_record(record).parity_block) or {}


def parity_record(folder: Path) -> dict:
    return (read_meta(folder).get("export") or {}).get("parity") or {}


def passes_gates(folder: Path) -> bool:
    """Whether the export in ``folder`` passed its parity gates when it was made."""
    return bool(gate_block(export_record(folder)).get("ok"))
