"""Training: the losses (``losses``), the rows as token ids (``encoded``), the teacher cache (``teacher_cache``), the
Trainer subclasses and ``train_model`` (``trainer``), cheap dropout (``dropout``) and the DDP process helpers
(``ddp``)."""
