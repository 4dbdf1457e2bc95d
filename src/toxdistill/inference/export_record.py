"""What an export folder says about itself, read side: the parity block of its record (``toxdistill.json``'s
``export`` block) that decides whether it passed.

The Predictor, and everything that ships or measures an export, read folders through here and
``toxdistill.targets.target_of_record``; making them is ``toxdistill.export``, a layer above.
"""

from __future__ import annotations

from pathlib import Path

from toxdistill.runs import read_meta
from toxdistill.targets import target_of_record


def gate_block(record: dict) -> dict:
    """The parity block that decides whether an export passes: its own precision against fp32 (ONNX Runtime
    int8, OpenVINO at any precision), or fp32 against torch."""
    parity = record.get("parity") or {}
    return parity.get(target_of_record(record).parity_block) or {}


def parity_record(folder: Path) -> dict:
    """Every parity block of the folder's export record; empty for a folder that is not an export."""
    return (read_meta(folder).get("export") or {}).get("parity") or {}
