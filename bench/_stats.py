"""Shared by the benchmarks (not one itself): timing a call and reading percentiles the same way."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def p50_p99(samples: Sequence[float]) -> tuple[float, float]:
    """Median and 99th percentile (nearest rank below)."""
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]


def measure(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """Median and p99 of one call of `fn`, in µs, after a short warm-up."""
    for _ in range(min(calls, 200)):
        fn()
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    p50, p99 = p50_p99(samples)
    return p50 / 1000, p99 / 1000
