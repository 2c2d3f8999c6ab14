"""Evaluation on the held-out test split: ``baseline`` (logistic regression on projection
statistics), ``thumbnails`` (the worst series' MIPs), ``report`` (metrics.json, summary.md) and
``run`` (the ``evaluate`` stage's one call). The metrics themselves are ``willis.metrics`` (shared
with training and calibration); the reliability diagram is ``willis.plots``.
"""
