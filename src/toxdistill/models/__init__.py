"""Models: where checkpoints come from (``packaged``), what differs per family (``families``), the teacher,
the students built from it, LoRA, and the TF-IDF baseline."""
