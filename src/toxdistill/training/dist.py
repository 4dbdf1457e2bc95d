"""Multi-process runs under ``torchrun`` / ``accelerate launch``: who writes, and where everyone waits.

DDP itself is the Hugging Face Trainer's (through Accelerate). This only makes rank 0 the single
writer of models, caches, the split and the report, with barriers so other ranks read finished files.
"""

from __future__ import annotations

import os
from functools import cache


class Dist:
    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1:
            from accelerate import PartialState

            # Initialises the process group now (gloo on CPU, nccl on GPU), before any barrier is needed.
            PartialState()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            td.barrier()


@cache
def dist() -> Dist:
    return Dist()
