"""Export targets: what a model is exported for and run on, as one value with one canonical string.

A target is an engine, a precision and, for an engine that fuses, whether its graph is fused:
``<engine>-<precision>[-fused]`` (``onnx-fp32``, ``onnx-int8-fused``, ``openvino-bf16``). ``parse_target`` is the
one place a string becomes a target; ``export``, the bench's rows, the frontier, ``RUN/best/``, the Predictor and
the command line all take targets from here. The engines are a small registry (``ENGINES``): adding an engine
is one ``Engine`` entry here, and the target strings, the command line's choices, the bench's rows and the
export folders' names follow from it.

Imports nothing heavy: the configuration (a base module) validates ``frontier.target`` with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from toxdistill.errors import ToxdistillError

FUSED = "fused"
AUTO = "auto"  # not a target: the frontier's and export's "measure every target here and keep the fastest"
# The bench's torch rows: the model folder itself, run by torch, not an export.
TORCH_ROWS = ("torch-naive", "torch-sorted")


@dataclass(frozen=True)
class Engine:
    """One inference engine an export can be made for.

    ``files``: the graph file an export of each precision holds (by precision). ``record_engine`` and
    ``record_format``: how its export record names the engine and the file format (kept as the records on disk
    already say them). ``plain_precision``: the precision the export folder's name leaves out (ONNX fp32 is
    ``<m>-onnx``, as it always was). ``parity_prefix``: the prefix of the parity block that gates an export.
    ``requires``: the modules the engine runs on (all of them importable: installed); ``int8_requires``: the
    ones its int8 quantizer adds. ``install``: the line that installs them."""

    name: str
    precisions: tuple[str, ...]
    files: Mapping[str, str]
    record_engine: str
    record_format: str
    install: str
    fuses: bool = False
    plain_precision: str | None = None
    parity_prefix: str | None = None  # None: "<name>-"
    requires: tuple[str, ...] = ()
    int8_requires: tuple[str, ...] = ()
    description: str = ""

    @property
    def block_prefix(self) -> str:
        return f"{self.name}-" if self.parity_prefix is None else self.parity_prefix


ONNX_INSTALL = "pip install 'toxdistill[onnx]'"
OPENVINO_INSTALL = "pip install 'toxdistill[openvino]'"

# Ordered: the first engine's fp32 graph is what every other export starts from, so it is made (and, in
# ``export --auto`` and the bench, measured) first.
ENGINES: dict[str, Engine] = {
    "onnx": Engine(
        name="onnx",
        precisions=("fp32", "int8"),
        files={"fp32": "model.onnx", "int8": "model.int8.onnx"},
        record_engine="onnxruntime",
        record_format="onnx",
        install=ONNX_INSTALL,
        fuses=True,
        plain_precision="fp32",
        parity_prefix="",  # its blocks were named "fp32" and "int8" before OpenVINO came
        requires=("onnxruntime",),
        description="ONNX Runtime: the fp32 graph, or int8 by dynamic weight quantization; -fused: its "
        "transformer optimizer's fused attention, LayerNorm and GELU",
    ),
    "openvino": Engine(
        name="openvino",
        precisions=("fp32", "bf16", "int8"),
        files={"fp32": "model.xml", "bf16": "model.xml", "int8": "model.xml"},  # weights in model.bin beside it
        record_engine="openvino",
        record_format="openvino-ir",
        install=OPENVINO_INSTALL,
        requires=("onnxruntime", "openvino"),  # its IR is converted from ONNX Runtime's checked fp32 graph
        int8_requires=("nncf",),
        description="OpenVINO's IR: fp32, bf16 (where the CPU has it, else run as fp32) or NNCF's static int8",
    ),
}


@dataclass(frozen=True)
class Target:
    """An engine, a precision and (for an engine that fuses) fusion; ``str()`` is its canonical string."""

    engine: str
    precision: str
    fused: bool = False

    def __post_init__(self) -> None:
        spec = ENGINES.get(self.engine)
        if spec is None or self.precision not in spec.precisions or (self.fused and not spec.fuses):
            raise _unknown(self.name)

    @property
    def name(self) -> str:
        return f"{self.engine}-{self.precision}" + (f"-{FUSED}" if self.fused else "")

    def __str__(self) -> str:
        return self.name

    @property
    def spec(self) -> Engine:
        return ENGINES[self.engine]

    @property
    def reduced(self) -> bool:
        """Runs below fp32: held against the fp32 graph by the reduced-precision gates."""
        return self.precision != "fp32"

    @property
    def graph_file(self) -> str:
        return self.spec.files[self.precision]

    @property
    def folder_suffix(self) -> str:
        """What an export folder's name adds to the model's: ``-<target>``, less the engine's plain precision
        (``-onnx``, ``-onnx-int8-fused``, ``-openvino-fp32``); one folder name per target and back."""
        shown = "" if self.precision == self.spec.plain_precision else f"-{self.precision}"
        return f"-{self.engine}{shown}" + (f"-{FUSED}" if self.fused else "")

    @property
    def parity_block(self) -> str:
        """The name of the parity block that decides whether an export of this target passes."""
        return f"{self.spec.block_prefix}{self.precision}"

    @property
    def requires(self) -> tuple[str, ...]:
        return self.spec.requires + (self.spec.int8_requires if self.precision == "int8" else ())

    def with_precision(self, precision: str) -> Target:
        return Target(self.engine, precision, self.fused)


# What export makes unless told otherwise: the fp32 ONNX graph every other target starts from, needing no extra.
DEFAULT_TARGET = Target("onnx", "fp32")


def all_targets() -> list[Target]:
    """Every target, engine by engine: its precisions unfused, then fused where the engine fuses."""
    out = []
    for spec in ENGINES.values():
        out += [Target(spec.name, p) for p in spec.precisions]
        if spec.fuses:
            out += [Target(spec.name, p, fused=True) for p in spec.precisions]
    return out


def target_names() -> list[str]:
    return [t.name for t in all_targets()]


def default_targets() -> list[Target]:
    """The targets measured unless asked otherwise: all but a fused fp32 graph, whose parity the fused
    reduced-precision export checks on the way anyway."""
    return [t for t in all_targets() if not (t.fused and not t.reduced)]


def _unknown(name: str) -> ToxdistillError:
    return ToxdistillError(f"unknown target {name!r}", f"use one of {', '.join(target_names())}")


def parse_target(name: str | Target) -> Target:
    """``onnx-int8-fused`` → Target("onnx", "int8", fused=True); a one-line error naming the valid ones else."""
    if isinstance(name, Target):
        return name
    text = str(name).strip()
    parts = text.split("-")
    fused = len(parts) == 3 and parts[2] == FUSED
    if len(parts) not in (2, 3) or (len(parts) == 3 and not fused):
        raise _unknown(text)
    try:
        return Target(parts[0], parts[1], fused)
    except ToxdistillError:
        raise _unknown(text) from None


def bench_row_names() -> list[str]:
    """What ``toxdistill bench --targets`` accepts: the torch rows, then every target."""
    return [*TORCH_ROWS, *target_names()]


def check_bench_rows(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``names`` in canonical form, or a one-line error naming the first that is neither a torch row nor a target."""
    out = []
    for n in names:
        if n in TORCH_ROWS:
            out.append(n)
            continue
        try:
            out.append(parse_target(n).name)
        except ToxdistillError:
            raise ToxdistillError(f"unknown bench target {n!r}", f"use one of {', '.join(bench_row_names())}") from None
    return tuple(out)


def frontier_choices() -> list[str]:
    """What ``frontier.target`` accepts: a target, or ``auto`` (``export --auto``'s choice per model)."""
    return [AUTO, *target_names()]


def check_frontier_target(value: str) -> str:
    """``value`` as the frontier's canonical choice; ValueError (the configuration's error type) else."""
    if value == AUTO:
        return value
    try:
        return parse_target(value).name
    except ToxdistillError as e:
        raise ValueError(f"unknown target {value!r}; valid: {', '.join(frontier_choices())}") from e


def target_of_record(record: Mapping) -> Target:
    """The target an export record describes (records name the engine as ``record_engine``; ONNX Runtime
    records before precision was recorded say int8 by their quantization)."""
    name = record.get("engine") or ENGINES["onnx"].record_engine
    spec = next((e for e in ENGINES.values() if e.record_engine == name), ENGINES["onnx"])
    precision = record.get("precision") or ("int8" if record.get("quantization") else "fp32")
    return Target(spec.name, precision, fused=bool(record.get("fusion")) and spec.fuses)
