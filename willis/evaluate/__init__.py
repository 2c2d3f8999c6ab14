"""Evaluation on the held-out test split: ``metrics`` (score, AUCs, ECE, bootstrap), ``baseline``
(logistic regression on projection statistics), ``plots`` (reliability diagrams, thumbnails),
``report`` (metrics.json, summary.md) and ``run`` (the ``evaluate`` stage's one call).

Kept import-free so that ``willis.calibration`` and ``predict`` can use ``willis.evaluate.metrics``
without pulling in the report machinery.
"""
