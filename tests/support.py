"""Shared test data, written out independently of botkit's own code."""

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from decimal import Decimal as D
from pathlib import Path

from bench._load import approved  # venue-level tests drive the venue below the gate
from bench._redis import RedisServer, redis_binary
from botkit.margin import Tier
from botkit.runtime import journal as journal_module
from botkit.runtime.stops import Stops

__all__ = ["BTC_TIERS", "ROOT", "FillingDisk", "RedisServer", "approved", "background", "disk_full_when",
           "redis_server"]

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


class FillingDisk:
    """The journal writer's real SQLite connection on a disk that fills up: while `full()` is true, SQLite's
    page limit is put at the pages the file already has, so a write that needs room fails as on a full disk
    ('database or disk is full'); once it is false again, the room is back."""

    def __init__(self, conn: sqlite3.Connection, full: Callable[[], bool]) -> None:
        self._conn, self._full = conn, full

    def __enter__(self):
        return self._conn.__enter__()

    def __exit__(self, *exc):
        return self._conn.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def executemany(self, sql, rows):
        if self._full():
            pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
            self._conn.execute(f"PRAGMA max_page_count = {pages}")
        else:
            self._conn.execute("PRAGMA max_page_count = 1073741823")
        return self._conn.executemany(sql, rows)


@contextlib.contextmanager
def disk_full_when(full: Callable[[], bool]) -> Iterator[None]:
    """Journals opened inside the block write to a disk that is full whenever `full()` is true."""
    connect = journal_module._connect
    journal_module._connect = lambda path: FillingDisk(connect(path), full)
    try:
        yield
    finally:
        journal_module._connect = connect


def cancel_then_place(monkeypatch) -> None:
    """The stop keeper switched to the usual way of moving a stop: cancel the old one, then place the new
    one (a gap on every move)."""
    keep = Stops._match

    async def cancel_first(self, symbol, guard, position, slot, kind, trigger):
        current = getattr(guard, slot)
        if current is not None and current.trigger != trigger:
            await self._cancel(symbol, current.client_id, "moved")
            setattr(guard, slot, None)
        await keep(self, symbol, guard, position, slot, kind, trigger)

    monkeypatch.setattr(Stops, "_match", cancel_first)


@contextlib.contextmanager
def redis_server(folder: Path, **role: RedisServer) -> Iterator[RedisServer]:
    """A real Redis server for one test (skipped where none is installed); `replica_of=` or `sentinel_of=`
    another one (see RedisServer)."""
    import pytest

    binary = redis_binary()
    if binary is None:
        pytest.skip("no redis-server (Debian package redis-server; .ci/run installs it)")
    server = RedisServer(binary, folder, **role)
    server.start()
    try:
        yield server
    finally:
        server.stop()
