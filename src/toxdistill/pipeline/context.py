"""What every step of a run shares: its folders (``RunContext``, ``SeedContext``), its progress line
(``say``) and the rank-0-only helper (``main_only``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from toxdistill.config import Config
from toxdistill.data.scores import Scores
from toxdistill.data.split import Split
from toxdistill.data.unlabelled import TransferTexts
from toxdistill.files import META_FILE, MODELS_DIR, SEEDS_DIR, TEACHER
from toxdistill.training.ddp import dist


def say(msg: str) -> None:
    """The run's ``Say``: ``[toxdistill] msg`` on stdout, from the main process only, so that a DDP run
    prints each line once rather than once per rank."""
    if dist().is_main_process:
        print(f"[toxdistill] {msg}", flush=True)


def main_only(fn: Callable[[], None]) -> None:
    """``fn`` on rank 0 alone; every rank waits until it is done."""
    if dist().is_main_process:
        fn()
    dist().wait_for_everyone()


@dataclass
class RunContext:
    cfg: Config
    run_dir: Path
    split: Split
    quick: bool = False
    forced: set[str] = field(default_factory=set)
    timings: dict[str, float] = field(default_factory=dict)
    transfer: TransferTexts | None = None
    """The transfer set (``data.unlabelled``), read and checked before any stage; None without one."""
    scores: Scores | None = None
    """A scores teacher's file (``teacher.scores``), read and checked before any stage; None: a teacher model."""

    def model_dir(self, name: str) -> Path:
        return self.run_dir / MODELS_DIR / name

    def work_dir(self, name: str) -> Path:
        return self.run_dir / "work" / name

    def done(self, name: str) -> bool:
        return (self.model_dir(name) / META_FILE).is_file() and name not in self.forced and "all" not in self.forced


def seed_dir(run_dir: Path, seed: int) -> Path:
    return run_dir / SEEDS_DIR / f"seed{seed}"


@dataclass
class SeedContext(RunContext):
    """A repeat of the student stages with another training seed: same split, teacher and cache; its
    models go to ``seeds/seed<N>/`` so that they are neither report rows nor served."""

    def model_dir(self, name: str) -> Path:
        if name == TEACHER:
            return super().model_dir(name)
        return seed_dir(self.run_dir, self.cfg.seed) / name

    def work_dir(self, name: str) -> Path:
        return self.run_dir / "work" / f"seed{self.cfg.seed}" / name
