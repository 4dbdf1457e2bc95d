"""Training: the losses, the Trainer subclasses and the teacher cache, and multi-process helpers."""
