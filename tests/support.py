"""Shared test data, written out independently of botkit's own code."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from decimal import Decimal as D
from pathlib import Path

from bench._load import approved  # venue-level tests drive the venue below the gate
from botkit.margin import Tier

__all__ = ["BTC_TIERS", "ROOT", "approved", "background"]

ROOT = Path(__file__).resolve().parent.parent

# Binance USDⓈ-M BTCUSDT-shaped brackets: (floor, cap, mmr, cum, max leverage), cum as Binance publishes it.
BTC_TIERS = tuple(
    Tier(D(floor), D(cap), D(mmr), D(cum), lev)
    for floor, cap, mmr, cum, lev in [
        (0, 50_000, "0.004", 0, 125),
        (50_000, 600_000, "0.005", 50, 100),
        (600_000, 3_000_000, "0.0065", 950, 75),
        (3_000_000, 12_000_000, "0.01", 11_450, 50),
        (12_000_000, 70_000_000, "0.02", 131_450, 25),
        (70_000_000, 100_000_000, "0.025", 481_450, 20),
        (100_000_000, 230_000_000, "0.05", 2_981_450, 10),
        (230_000_000, 480_000_000, "0.1", 14_481_450, 5),
        (480_000_000, 600_000_000, "0.125", 26_481_450, 4),
        (600_000_000, 800_000_000, "0.15", 41_481_450, 3),
        (800_000_000, 1_200_000_000, "0.25", 121_481_450, 2),
        (1_200_000_000, 1_800_000_000, "0.5", 421_481_450, 1),
    ]
)


@contextlib.asynccontextmanager
async def background(coro: Coroutine) -> AsyncIterator[asyncio.Task]:
    """Run a coroutine as a task for the duration of a with-block, then cancel it."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
