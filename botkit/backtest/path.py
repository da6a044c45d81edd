"""The fill model's price path through one candle: open → nearer extreme → farther extreme → close.

The candle does not say whether its high or its low came first; the path assumes the nearer one to the
open (a tie goes to the low first: for a long, the adverse move is tried before the favourable one). The
four points are spread over the candle's span (open at its start, the extremes a third and two thirds in,
the close a millisecond before its end), so every event on the path has a time. Between the points the
price is taken to move straight, so a resting order the path passes through is traded through at the
point beyond it.
"""

from __future__ import annotations

Candle = tuple[float, float, float, float]  # open, high, low, close
POINTS = 4


def path(candle: Candle) -> tuple[float, float, float, float]:
    o, h, lo, c = candle
    if h - o < o - lo:
        return o, h, lo, c
    return o, lo, h, c


def offsets(span_ms: int) -> tuple[int, int, int, int]:
    """Each point's time from the candle's start."""
    return 0, span_ms // 3, 2 * span_ms // 3, span_ms - 1
