"""What an export folder says about itself, read side: the parity block of its record (``toxdistill.json``'s
``export`` block) that decides whether it passed, and the CPU its engine was chosen on.

The Predictor, and everything that ships or measures an export, read folders through here and
``toxdistill.targets.target_of_record``; making them is ``toxdistill.export``, a layer above.
"""

from __future__ import annotations

from pathlib import Path

from toxdistill.cpu import cpu_features, cpu_name
from toxdistill.files import BEST_DIR, MODELS_DIR
from toxdistill.runs import read_meta, read_selection
from toxdistill.targets import target_of_record


def gate_block(record: dict) -> dict:
    """The parity block that decides whether an export passes: its own precision against fp32 (ONNX Runtime
    int8, OpenVINO at any precision), or fp32 against torch."""
    parity = record.get("parity") or {}
    return parity.get(target_of_record(record).parity_block) or {}


def parity_record(folder: Path) -> dict:
    """Every parity block of the folder's export record; empty for a folder that is not an export."""
    return (read_meta(folder).get("export") or {}).get("parity") or {}


def same_cpu(cpu: str | None, features: list[str] | None) -> bool:
    """Whether a recorded CPU is this one: the same model name and, where the record lists them, the same
    features (two virtual machines may both say "AMD EPYC", one with AVX-512 and VNNI, one with AVX2 only)."""
    if cpu != cpu_name():
        return False
    return features is None or sorted(features) == sorted(cpu_features())


def engine_choice(folder: str | Path) -> dict:
    """How the engine of ``folder`` was chosen, from what the folder records; {} for a folder whose engine was
    not chosen by measurement or pinned by a frontier (a plain export, a model folder).

    A shipped ``RUN/best/`` (its ``selection.json``): ``{"chosen", "cpu", "cpu_features", "rule", "run",
    "model"}``; an ``export --auto`` folder (its record's ``auto`` block): the same, without ``run`` where the
    model is not in a run."""
    folder = Path(folder)
    sel = read_selection(folder)
    record = read_meta(folder).get("export") or {}
    if sel:
        row = sel.get("row") or {}
        # A best/ shipped before choices were recorded: the frontier's CPU, else its export's, and "pinned" (so
        # the advice names --target auto, which measures whatever the run's config says).
        where = sel if sel.get("cpu") else record
        choice = row.get("engine_choice") or {"cpu": where.get("cpu"), "cpu_features": where.get("cpu_features")}
        run = folder.parent if folder.name == BEST_DIR else None
        return {
            "chosen": choice.get("chosen") or row.get("backend"),
            "cpu": choice.get("cpu"),
            "cpu_features": choice.get("cpu_features"),
            "rule": choice.get("rule"),
            "pinned": choice.get("pinned", True),
            "run": str(run) if run is not None else None,
            "model": str(run / MODELS_DIR / str(row.get("model"))) if run is not None else None,
        }
    auto = record.get("auto") or {}
    if not auto:
        return {}
    source = Path(str(record.get("source") or ""))
    run = source.parent.parent if source.parent.name == MODELS_DIR else None
    return {
        "chosen": auto.get("chosen"),
        "cpu": auto.get("cpu"),
        "cpu_features": auto.get("cpu_features"),
        "rule": auto.get("rule"),
        "pinned": False,
        "run": str(run) if run is not None else None,
        "model": str(source),
    }


def engine_cpu_note(folder: str | Path) -> str | None:
    """One line when the engine of ``folder`` (a shipped ``RUN/best/`` or an ``export --auto`` folder) was chosen
    on another CPU than this one, saying how to choose again here; None when it was chosen here, or not chosen
    at all. Which engine is fastest depends on the CPU (ONNX Runtime's int8 beat OpenVINO's twice over on an
    AVX2-only AMD EPYC, the reverse on an Intel Xeon with AMX)."""
    choice = engine_choice(folder)
    if not choice or not choice.get("cpu") or same_cpu(choice["cpu"], choice.get("cpu_features")):
        return None
    where = choice["cpu"] + (f" ({', '.join(choice['cpu_features'])})" if choice.get("cpu_features") else "")
    here = f"{cpu_name()} ({', '.join(cpu_features()) or 'no AVX2 or newer listed'})"
    how = []
    if choice.get("run"):
        target = " --target auto" if choice.get("pinned") else ""
        how.append(f"'toxdistill frontier {choice['run']}{target}' (it measures again on a new CPU)")
    if choice.get("model"):
        how.append(f"'toxdistill export {choice['model']} --auto'")
    return (
        f"note: the engine of {folder} ({choice.get('chosen')}) was chosen on {where}, not on this CPU, {here}; "
        f"another may be faster here. To choose on this machine: {' or '.join(how) or 'export the model again'}"
    )
