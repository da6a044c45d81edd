"""`botkit data download`: market history through ccxt into botkit.data.store's files.

For one symbol and span it fetches trade-price candles, mark-price candles, index-price candles
(`fetch_ohlcv` with `price` = mark / index) and funding rates (`fetch_funding_rate_history`) a page at a
time, under ccxt's client-side rate limiter, retrying a page that fails for a passing reason (network,
timeout, rate limit, exchange busy) with exponential backoff. Each page goes to disk as it arrives (a
part file under `.parts/`), so an interrupted download resumes where it stopped; when a kind is complete
its parts are merged into one file, checked for gaps and duplicates (duplicates are dropped, keeping the
newer copy; gaps are listed in the result), and the parts removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from botkit.data.store import (
    CANDLE_KINDS,
    DataError,
    candles_table,
    check,
    file_name,
    funding_table,
    interval_ms,
    read_table,
    write_table,
)

PAGE_CANDLES = 1500  # Binance's largest kline page
PAGE_FUNDING = 1000
RETRIES = 8
RETRY_BASE_S = 0.5
KINDS = (*CANDLE_KINDS, "funding")


@dataclass
class Fetched:
    """What one kind's download left on disk."""

    kind: str
    path: Path
    rows: int
    pages: int
    resumed_from: int | None  # the time the download picked up from (None: a fresh start)
    duplicates: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (first missing, last missing) candle times


Sleep = Callable[[float], Awaitable[None]]


async def download(
    exchange: Any,
    symbol: str,
    start_ms: int,
    end_ms: int,
    folder: Path,
    *,
    interval: str = "1m",
    kinds: tuple[str, ...] = KINDS,
    fmt: str = "parquet",
    on_page: Callable[[str, int], None] | None = None,
    sleep: Sleep = asyncio.sleep,
) -> list[Fetched]:
    """Download [start_ms, end_ms) of each kind into `folder` (one symbol's); resumes an interrupted run."""
    if end_ms <= start_ms:
        raise DataError(f"the span is empty: from {start_ms} to {end_ms}")
    step = interval_ms(interval)
    results = []
    for kind in kinds:
        if kind not in KINDS:
            raise DataError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        target = Path(folder) / file_name(kind, interval, fmt)
        parts = Path(folder) / ".parts" / target.stem
        if kind == "funding":
            fetch = _funding_pages(exchange, symbol)
        else:
            fetch = _candle_pages(exchange, symbol, interval, kind)
        results.append(await _fetch_kind(kind, target, parts, fetch, start_ms, end_ms,
                                         step if kind != "funding" else None, on_page, sleep))  # fmt: skip
    with contextlib.suppress(OSError):  # every kind complete: nothing left to resume
        (Path(folder) / ".parts").rmdir()
    return results


def _candle_pages(exchange: Any, symbol: str, interval: str, kind: str) -> Callable[[int], Awaitable[pa.Table]]:
    params = {} if kind == "ohlcv" else {"price": kind}

    async def page(since: int) -> pa.Table:
        rows = await exchange.fetch_ohlcv(symbol, interval, since, PAGE_CANDLES, params)
        return candles_table(rows, kind)

    return page


def _funding_pages(exchange: Any, symbol: str) -> Callable[[int], Awaitable[pa.Table]]:
    async def page(since: int) -> pa.Table:
        rows = await exchange.fetch_funding_rate_history(symbol, since, PAGE_FUNDING)
        return funding_table((r["timestamp"], r["fundingRate"]) for r in rows if r.get("fundingRate") is not None)

    return page


async def _fetch_kind(kind: str, target: Path, parts: Path, fetch: Callable[[int], Awaitable[pa.Table]],
                      start_ms: int, end_ms: int, step: int | None, on_page: Callable[[str, int], None] | None,
                      sleep: Sleep) -> Fetched:  # fmt: skip
    since, resumed = start_ms, None
    done = [read_table(p, kind) for p in sorted(parts.glob("*.parquet"))] if parts.is_dir() else []
    if target.exists():
        done.insert(0, read_table(target, kind))
    last = max((t.column("timestamp_ms")[-1].as_py() for t in done if t.num_rows), default=None)
    if last is not None and last >= start_ms:
        since = resumed = last + (step or 1)
    pages = 0
    while since < end_ms:
        table = await _retrying(f"{kind} page from {since}", fetch, since, sleep)
        times = table.column("timestamp_ms").to_pylist()
        keep = [i for i, t in enumerate(times) if since <= t < end_ms]
        if not keep:
            break  # an empty page, or nothing more inside the span: the history ends here
        table = table.take(pa.array(keep))
        write_table(table, parts / f"{pages + len(done):06d}-{times[keep[0]]}.parquet")
        done.append(table)
        pages += 1
        if on_page is not None:
            on_page(kind, pages)
        since = times[keep[-1]] + (step or 1)
    merged, duplicates = _merge(done, kind)
    check(merged, kind, str(target))
    write_table(merged, target)
    shutil.rmtree(parts, ignore_errors=True)
    times = merged.column("timestamp_ms").to_pylist()
    gaps = _gaps(times, step) if step is not None else []
    return Fetched(kind, target, merged.num_rows, pages, resumed, duplicates, gaps)


def _merge(tables: list[pa.Table], kind: str) -> tuple[pa.Table, int]:
    """One table in time order, each time once (the newer copy wins); and how many rows were dropped."""
    if not tables:
        return (funding_table([]) if kind == "funding" else candles_table([], kind)), 0
    merged = pa.concat_tables(tables)
    times = merged.column("timestamp_ms").to_pylist()
    newest = {t: i for i, t in enumerate(times)}
    keep = sorted(newest.values(), key=lambda i: times[i])
    return merged.take(pa.array(keep, pa.int64())), len(times) - len(keep)


def _gaps(times: list[int], step: int) -> list[tuple[int, int]]:
    return [(a + step, b - step) for a, b in itertools.pairwise(times) if b - a > step]


async def _retrying(what: str, fetch: Callable[[int], Awaitable[pa.Table]], since: int, sleep: Sleep) -> pa.Table:
    """A page, retried with full-jitter exponential backoff while the failure is a passing one."""
    import ccxt

    passing = (ccxt.NetworkError, ccxt.RateLimitExceeded, ccxt.ExchangeNotAvailable, ccxt.DDoSProtection)
    for attempt in range(RETRIES):
        try:
            return await fetch(since)
        except passing as exc:
            if attempt == RETRIES - 1:
                raise DataError(f"{what}: gave up after {RETRIES} attempts: {type(exc).__name__}: {exc}") from None
            await sleep(random.uniform(0, RETRY_BASE_S * 2**attempt))
        except ccxt.BaseError as exc:
            raise DataError(f"{what}: {type(exc).__name__}: {str(exc)[:200]}") from None
    raise AssertionError("unreachable")
