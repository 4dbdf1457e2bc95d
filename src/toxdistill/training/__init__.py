"""Training: the losses, the Trainer subclasses and the teacher cache, and the DDP process helpers (``ddp``)."""
