"""toxdistill: distil a toxic-comment classifier into a small, fast one, and serve it."""

__version__ = "0.1.0"
