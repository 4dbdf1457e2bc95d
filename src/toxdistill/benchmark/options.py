"""What ``toxdistill bench`` measures and its goals: the defaults and ``BenchOptions``.

The rows it can measure are the torch rows and the export targets (``toxdistill.targets``). Apart from
``benchmark/bench.py`` so that the CLI builds its parser without importing the bench itself (scikit-learn,
pandas, the export code): ``toxdistill --help`` and the torch-free serving install need none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# on: tokenize the next chunk while the model runs this one; off: one after the other; both: measure each row
# both ways (the time shares before and after).
OVERLAP_MODES = ("on", "off", "both")
# The fastest student's goal, in x the naive teacher's throughput (a plain torch loop over padded batches): well
# beyond what serving tricks give the teacher itself (sorted batches and ONNX int8 took it to 6.4x,
# docs/benchmarks.md), so that only a smaller model, distilled within MAX_F1W_DROP of it, can reach it.
SPEED_GOAL = 15.0
P50_GOAL_MS = 2.0  # single-text latency of that student
MAX_F1W_DROP = 0.01  # weighted F1 the fastest student may lose against the teacher
QUICK_LIMIT = 200


@dataclass
class BenchOptions:
    """What ``toxdistill bench`` measures and where it writes (the CLI's flags, one field each)."""

    models: str | None = None  # comma-separated names; None: every transformer of the run
    targets: tuple[str, ...] | None = None  # torch rows and export targets; None: the defaults this machine can run
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
