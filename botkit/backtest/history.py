"""The history a backtest replays, per symbol: trade-price candles of one interval, the mark (and index)
candles of the same interval where the files have them, and the funding rates at their settlement times.

Nothing is invented: a bar without a mark candle takes the trade candle as its mark path, and the spans
where that happens are listed (`mark_gaps`) for the run to print; funding is charged only at the times
the history has a rate for, and the span it covers is stated (`funding_span`). A year of 1-minute candles
stays a few columns of numbers (pyarrow tables, about 50 bytes a bar) until a chunk of bars is read.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from botkit.data.store import CANDLE_KINDS, DataError, Entry, catalogue, interval_ms, read_table

CHUNK = 8192  # bars turned into Python numbers at a time
Candle = tuple[float, float, float, float]  # open, high, low, close


@dataclass
class SymbolHistory:
    symbol: str  # unified, as the config names it
    folder: Path
    interval: str
    span_ms: int
    trade: pa.Table
    mark: pa.Table | None
    index: pa.Table | None
    funding: list[tuple[int, Decimal]]  # (settlement time, rate), in time order
    mark_gaps: list[tuple[int, int]] = field(default_factory=list)  # (first, last) bar times with no mark candle
    bars_without_mark: int = 0
    notes: list[str] = field(default_factory=list)  # what the run should say about this history

    @property
    def first_ms(self) -> int:
        return int(self.trade.column("timestamp_ms")[0].as_py())

    @property
    def last_ms(self) -> int:
        return int(self.trade.column("timestamp_ms")[-1].as_py())

    def __len__(self) -> int:
        return self.trade.num_rows

    def bars(self, chunk: int = CHUNK) -> Iterator[tuple[int, Candle, float, Candle | None, Candle | None]]:
        """(time, trade candle, volume, mark candle or None, index candle or None) per bar, in order."""
        marks = _Aligned(self.mark)
        indexes = _Aligned(self.index)
        has_volume = "volume" in self.trade.column_names
        for start in range(0, self.trade.num_rows, chunk):
            part = self.trade.slice(start, chunk)
            times = part.column("timestamp_ms").to_pylist()
            o, h, lo, c = (part.column(n).to_pylist() for n in ("open", "high", "low", "close"))
            volume = part.column("volume").to_pylist() if has_volume else [0.0] * len(times)
            mark_rows = marks.rows(times)
            index_rows = indexes.rows(times)
            for i, t in enumerate(times):
                yield t, (o[i], h[i], lo[i], c[i]), volume[i], mark_rows.get(t), index_rows.get(t)


class _Aligned:
    """Rows of another candle table at the times of a chunk of bars."""

    def __init__(self, table: pa.Table | None) -> None:
        self.table = table
        self.times: list[int] = table.column("timestamp_ms").to_pylist() if table is not None else []

    def rows(self, times: list[int]) -> dict[int, Candle]:
        if self.table is None or not times:
            return {}
        lo, hi = bisect.bisect_left(self.times, times[0]), bisect.bisect_right(self.times, times[-1])
        part = self.table.slice(lo, hi - lo)
        cols = [part.column(n).to_pylist() for n in ("open", "high", "low", "close")]
        return {t: (cols[0][i], cols[1][i], cols[2][i], cols[3][i]) for i, t in enumerate(self.times[lo:hi])}


def symbol_folder(data: Path, market_id: str, single: bool) -> Path:
    """`data/<market id>/` (botkit data download's layout), or `data` itself for a one-symbol run."""
    nested = Path(data) / market_id
    if nested.is_dir():
        return nested
    if single and Path(data).is_dir():
        return Path(data)
    raise DataError(f"no history for {market_id}: neither {nested}/ nor (for a one-symbol run) {data}/ exists")


def load(symbol: str, folder: Path, interval: str | None = None,
         start_ms: int | None = None, end_ms: int | None = None) -> SymbolHistory:  # fmt: skip
    """The history of one symbol from its folder, cut to [start_ms, end_ms); DataError if unusable."""
    entries = catalogue(folder)
    candles: dict[str, dict[str, Entry]] = {kind: {} for kind in CANDLE_KINDS}
    funding: Entry | None = None
    for entry in entries:
        if entry.kind == "funding":
            if funding is not None:
                raise DataError(f"{folder}: two funding files ({funding.path.name}, {entry.path.name}); keep one")
            funding = entry
        else:
            assert entry.interval is not None
            if entry.interval in candles[entry.kind]:
                raise DataError(f"{folder}: two {entry.kind} files of {entry.interval}; keep one")
            candles[entry.kind][entry.interval] = entry
    if not candles["ohlcv"]:
        raise DataError(f"{folder}: no trade-price candles (ohlcv-<interval>.parquet/.feather/.csv)")
    if interval is None:
        interval = min(candles["ohlcv"], key=interval_ms)  # the finest the data has
    elif interval not in candles["ohlcv"]:
        raise DataError(f"{folder}: no {interval} trade candles (has {', '.join(sorted(candles['ohlcv']))})")
    trade = _cut(read_table(candles["ohlcv"][interval].path, "ohlcv"), start_ms, end_ms)
    if trade.num_rows == 0:
        raise DataError(f"{folder}: no {interval} trade candles inside the span asked for")
    notes = []
    tables: dict[str, pa.Table | None] = {}
    for kind in ("mark", "index"):
        found = candles[kind].get(interval)
        tables[kind] = _cut(read_table(found.path, kind), start_ms, end_ms) if found is not None else None
        unused = sorted(set(candles[kind]) - {interval}, key=interval_ms)
        if unused:
            notes.append(f"{kind} candles of {', '.join(unused)} unused: the replay runs {interval} bars")
    rates: list[tuple[int, Decimal]] = []
    if funding is not None:
        table = _cut(read_table(funding.path, "funding"), start_ms, end_ms)
        times, values = table.column("timestamp_ms").to_pylist(), table.column("funding_rate").to_pylist()
        rates = [(int(t), Decimal(repr(r))) for t, r in zip(times, values, strict=True)]
    history = SymbolHistory(symbol, Path(folder), interval, interval_ms(interval), trade, tables["mark"],
                            tables["index"], rates, notes=notes)  # fmt: skip
    _mark_coverage(history)
    return history


def _cut(table: pa.Table, start_ms: int | None, end_ms: int | None) -> pa.Table:
    times = table.column("timestamp_ms").to_pylist()
    lo = bisect.bisect_left(times, start_ms) if start_ms is not None else 0
    hi = bisect.bisect_left(times, end_ms) if end_ms is not None else len(times)
    return table.slice(lo, max(0, hi - lo))


def _mark_coverage(history: SymbolHistory) -> None:
    """The spans of bars without a mark candle (their mark path is the trade price's)."""
    marked = set(history.mark.column("timestamp_ms").to_pylist()) if history.mark is not None else set()
    gaps: list[tuple[int, int]] = []
    missing = 0
    previous_missing = False
    for t in history.trade.column("timestamp_ms").to_pylist():
        if t in marked:
            previous_missing = False
            continue
        missing += 1
        if previous_missing:
            gaps[-1] = (gaps[-1][0], t)
        else:
            gaps.append((t, t))
        previous_missing = True
    history.mark_gaps, history.bars_without_mark = gaps, missing
