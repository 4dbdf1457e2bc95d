"""What ``toxdistill bench`` can measure and its goals: the backends, the defaults and ``BenchOptions``.

Apart from ``inference/bench.py`` so that the CLI builds its parser without importing the bench itself
(scikit-learn, pandas, the export code): ``toxdistill --help`` and the torch-free serving install need none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("torch-naive", "torch-sorted", "onnx-fp32", "onnx-int8", "onnx-fp32-fused", "onnx-int8-fused")
# fp32-fused only on request: the int8-fused export checks the fused fp32 graph's parity anyway.
DEFAULT_BACKENDS = ("torch-naive", "torch-sorted", "onnx-fp32", "onnx-int8", "onnx-int8-fused")
SPEED_GOAL = 15.0  # the fastest student against the naive teacher (issue 17)
P50_GOAL_MS = 2.0  # single-text latency of that student
MAX_F1W_DROP = 0.01  # weighted F1 the fastest student may lose against the teacher
QUICK_LIMIT = 200


@dataclass
class BenchOptions:
    """What ``toxdistill bench`` measures and where it writes (the CLI's flags, one field each)."""

    models: str | None = None  # comma-separated names; None: every transformer of the run
    backends: tuple[str, ...] = DEFAULT_BACKENDS
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
