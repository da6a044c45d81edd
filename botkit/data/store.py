"""Market history on disk: candles (trade, mark and index prices) and funding rates, one table per kind and
interval, in the columnar formats the field already uses (Parquet, or Feather via pyarrow), and CSV.

A symbol's folder holds files named after what they hold:

    ohlcv-<interval>.<ext>    timestamp_ms, open, high, low, close, volume   trade-price candles
    mark-<interval>.<ext>     timestamp_ms, open, high, low, close           mark-price candles
    index-<interval>.<ext>    timestamp_ms, open, high, low, close           index-price candles
    funding[-<any>].<ext>     timestamp_ms, funding_rate                      rates at their settlement times

<ext> is `parquet`, `feather` or `csv`; times are the candle's open (or the settlement) in milliseconds
since the epoch, UTC. Prices are stored as float64, as exchanges send them and as the field stores them;
a reader turns them into Decimal through their shortest decimal text, which restores the exchange's
price exactly for any price with at most 15 significant digits.

Every table is checked when it is read: the columns are there, times strictly increase, candles are
consistent (low <= open, close <= high), nothing is missing or not a number. A table that fails says
which file and which row, in one line.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.feather as feather
import pyarrow.parquet as pq

CANDLE_KINDS = ("ohlcv", "mark", "index")
FORMATS = ("parquet", "feather", "csv")
CANDLE_COLUMNS = ("timestamp_ms", "open", "high", "low", "close")
FUNDING_COLUMNS = ("timestamp_ms", "funding_rate")
INTERVALS_MS = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
                "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
                "12h": 43_200_000, "1d": 86_400_000}  # fmt: skip
_NAME = re.compile(r"^(ohlcv|mark|index|funding)(?:-([0-9a-z]+))?\.(parquet|feather|csv)$")


class DataError(Exception):
    """History that cannot be used (a missing column, times out of order, a broken candle): one line
    naming the file and the row."""


def interval_ms(interval: str) -> int:
    try:
        return INTERVALS_MS[interval]
    except KeyError:
        raise DataError(f"interval {interval!r} is not one of {', '.join(INTERVALS_MS)}") from None


@dataclass(frozen=True)
class Entry:
    """One history file: what it holds and where."""

    kind: str  # ohlcv, mark, index or funding
    interval: str | None  # candles only
    path: Path


def catalogue(folder: Path) -> list[Entry]:
    """The history files in a folder, by their names (other files are ignored)."""
    entries = []
    for path in sorted(Path(folder).iterdir()):
        match = _NAME.match(path.name)
        if match is None or not path.is_file():
            continue
        kind, interval, _ = match.groups()
        if kind in CANDLE_KINDS:
            if interval not in INTERVALS_MS:
                raise DataError(f"{path}: {interval!r} is not an interval botkit reads ({', '.join(INTERVALS_MS)})")
        else:
            interval = None
        entries.append(Entry(kind, interval, path))
    return entries


def file_name(kind: str, interval: str | None, fmt: str = "parquet") -> str:
    return f"{kind}-{interval}.{fmt}" if kind in CANDLE_KINDS else f"funding.{fmt}"


# ------------------------------------------------------------------------------------ reading


def read_table(path: Path, kind: str) -> pa.Table:
    """A checked table of one history file (candles or funding rates)."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            table = pq.read_table(path)
        elif path.suffix == ".feather":
            table = feather.read_table(path)
        else:
            table = pa_csv.read_csv(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read: {str(exc).splitlines()[0]}") from None
    wanted = FUNDING_COLUMNS if kind == "funding" else CANDLE_COLUMNS
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(table.column_names)})")
    keep = [*wanted, "volume"] if kind == "ohlcv" and "volume" in table.column_names else list(wanted)
    try:
        table = table.select(keep).cast(pa.schema([pa.field(c, pa.int64() if c == "timestamp_ms" else pa.float64())
                                                   for c in keep]))  # fmt: skip
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"{path}: a column is not numeric: {str(exc).splitlines()[0]}") from None
    check(table, kind, str(path))
    return table


def check(table: pa.Table, kind: str, where: str) -> None:
    """Times strictly increasing, every value a finite number, candles consistent; else DataError."""
    times = table.column("timestamp_ms").to_pylist()
    for row, (before, after) in enumerate(itertools.pairwise(times), start=2):
        if after <= before:
            what = "repeats" if after == before else "goes back to"
            raise DataError(f"{where}: row {row}: time {what} {after} after {before} (times must strictly increase)")
    columns = {c: table.column(c).to_pylist() for c in table.column_names if c != "timestamp_ms"}
    for name, values in columns.items():
        for row, value in enumerate(values, start=1):
            if value is None or not math.isfinite(value):
                what = "missing" if value is None else f"{value}, not a price"
                raise DataError(f"{where}: row {row}: {name} is {what} (at {times[row - 1]})")
    if kind == "funding":
        return
    o, h, lo, c = columns["open"], columns["high"], columns["low"], columns["close"]
    for row in range(len(times)):
        if not (0 < lo[row] <= min(o[row], c[row]) and max(o[row], c[row]) <= h[row]):
            raise DataError(f"{where}: row {row + 1}: candle at {times[row]} is inconsistent "
                            f"(open {o[row]}, high {h[row]}, low {lo[row]}, close {c[row]})")  # fmt: skip


# ------------------------------------------------------------------------------------ writing


def candles_table(rows: Iterable[list[float]], kind: str) -> pa.Table:
    """ccxt's OHLCV rows ([ms, open, high, low, close, volume]) as a table of the kind's columns."""
    rows = list(rows)
    columns = [*CANDLE_COLUMNS, "volume"] if kind == "ohlcv" else list(CANDLE_COLUMNS)
    arrays = [pa.array([int(r[0]) for r in rows], pa.int64())]
    arrays += [pa.array([float(r[i]) if r[i] is not None else 0.0 for r in rows], pa.float64())
               for i in range(1, len(columns))]  # fmt: skip
    return pa.Table.from_arrays(arrays, names=columns)


def funding_table(rows: Iterable[tuple[int, float]]) -> pa.Table:
    rows = list(rows)
    return pa.Table.from_arrays([pa.array([int(t) for t, _ in rows], pa.int64()),
                                 pa.array([float(r) for _, r in rows], pa.float64())],
                                names=list(FUNDING_COLUMNS))  # fmt: skip


def write_table(table: pa.Table, path: Path) -> None:
    """Write atomically (a temporary file renamed into place): an interrupted write leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    if path.suffix == ".parquet":
        pq.write_table(table, partial)
    elif path.suffix == ".feather":
        feather.write_feather(table, partial)
    else:
        pa_csv.write_csv(table, partial)
    partial.replace(path)
