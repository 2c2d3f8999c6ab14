"""The learning-rate schedule both training loops use (``loop`` for mip_cnn / mil, ``fine_fit`` for fine_cnn)."""

from __future__ import annotations

import math


def cosine_with_warmup(warmup_steps: int, total_steps: int):
    """LR multiplier per optimiser step: linear 0 -> 1 over warm-up, then cosine 1 -> 0."""
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f
