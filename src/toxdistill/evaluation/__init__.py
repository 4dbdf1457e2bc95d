"""Evaluation: metrics, calibration, bootstrap statistics, plots, the report, and external test sets."""
