"""What ``toxdistill bench`` can measure and its goals: the backends, the defaults and ``BenchOptions``.

Apart from ``inference/bench.py`` so that the CLI builds its parser without importing the bench itself
(scikit-learn, pandas, the export code): ``toxdistill --help`` and the torch-free serving install need none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OPENVINO_BACKENDS = ("openvino-fp32", "openvino-bf16", "openvino-int8")
BACKENDS = (
    "torch-naive",
    "torch-sorted",
    "onnx-fp32",
    "onnx-int8",
    "onnx-fp32-fused",
    "onnx-int8-fused",
    *OPENVINO_BACKENDS,
)
# fp32-fused only on request: the int8-fused export checks the fused fp32 graph's parity anyway. The OpenVINO
# backends are left out with a note where the extra is not installed (and bf16 where the CPU lacks it).
DEFAULT_BACKENDS = ("torch-naive", "torch-sorted", "onnx-fp32", "onnx-int8", "onnx-int8-fused", *OPENVINO_BACKENDS)
# on: tokenize the next chunk while the model runs this one; off: one after the other; both: measure each row
# both ways (the time shares before and after).
OVERLAP_MODES = ("on", "off", "both")
SPEED_GOAL = 15.0  # the fastest student against the naive teacher (issue 17)
P50_GOAL_MS = 2.0  # single-text latency of that student
MAX_F1W_DROP = 0.01  # weighted F1 the fastest student may lose against the teacher
QUICK_LIMIT = 200


@dataclass
class BenchOptions:
    """What ``toxdistill bench`` measures and where it writes (the CLI's flags, one field each)."""

    models: str | None = None  # comma-separated names; None: every transformer of the run
    backends: tuple[str, ...] | None = None  # None: DEFAULT_BACKENDS, less those this machine cannot run
    limit: int | None = None  # texts of the test split (random, seeded); None: all
    threads: int | None = None  # None: torch's default (all cores)
    batch_size: int = 64
    latency_n: int = 200
    data: str | None = None  # the run's data file, to rebuild its test split
    output: str | Path | None = None  # bench JSON; None: RUN_DIR/bench.json
    plot: bool = True
    seed: int = 0
    speed_goal: float = SPEED_GOAL
    quick_peaks: bool = False
    repeats: int = 3
    profile_ops: bool = False
    overlap: str = "on"
