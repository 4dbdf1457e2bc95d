"""Multi-process (DDP) runs under ``torchrun`` / ``accelerate launch``: who writes, and where everyone waits.

DDP itself is the Hugging Face Trainer's, through Accelerate; its ``PartialState`` is the one source of
truth here too. Rank 0 (``is_main_process``) is the single writer of models, caches, the split and the
report; the others ``wait_for_everyone()`` and then read the finished files.
"""

from __future__ import annotations

from functools import cache

import torch
from accelerate import PartialState


@cache
def dist() -> PartialState:
    # Created on first use: under torchrun this initialises the process group (gloo on CPU, nccl on GPU)
    # before the first barrier; alone it is a no-op state whose barrier returns at once. Without cpu=True
    # on a machine with no GPU, accelerate would not see the torchrun ranks at all (every process "main").
    return PartialState(cpu=not torch.cuda.is_available())
