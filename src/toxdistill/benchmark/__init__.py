"""Measuring: the inference benchmark (``bench``), the machine's matmul peaks (``peaks``), timing a Predictor
(``timing``), what ``toxdistill bench`` can measure (``options``) and the target chosen by measurement
(``auto``: ``toxdistill export --auto``). Above ``toxdistill.export``: the bench makes the exports it times."""
