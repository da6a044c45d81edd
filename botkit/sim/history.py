"""The emulator's market history: one-minute bars of trade, mark, index and premium prices, and funding rates.

Before the market's start, history is generated backwards from the seed, a day at a time and only as far
back as a request reaches (up to `days`), so a fresh emulator has weeks of candles where Binance has years.
From the start on, every minute the live market completes is recorded, and minutes the clock jumps over
are filled in by the same generator; a client paging through candles or funding rates finds one unbroken
series, no row twice and none missing.

Generated minutes: the index follows a random walk (3.5 % daily volatility, calm and volatile regimes),
trades print at the index plus a mean-reverting premium (on the tick), the mark carries half that premium,
and funding at each settlement is Binance's rule on the interval's average premium. Each generated
minute also prints four aggregate trades (open, the nearer extreme, the farther one, close) whose ids come
before the live market's.

Bars are held as integer columns (prices, premiums and volumes in units of 1e-8): a month of minutes for
one symbol takes about 6 MB.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

D = Decimal
SCALE = 10**8  # integer units per price, premium or quantity unit
MINUTE_MS = 60_000
DAY_MINUTES = 1440
DAILY_VOL = 0.035
INTEREST = D("0.0001")  # Binance's fixed interest component per funding interval
TRADES_PER_MINUTE = 4  # generated aggregate trades per minute: open, nearer extreme, farther extreme, close
COLUMNS = (
    "open", "high", "low", "close", "volume", "quote_volume", "trades",
    "mark_open", "mark_high", "mark_low", "mark_close",
    "index_open", "index_high", "index_low", "index_close",
    "premium_open", "premium_high", "premium_low", "premium_close",
)  # fmt: skip
OPEN, HIGH, LOW, CLOSE, VOLUME, QUOTE_VOLUME, TRADES = range(7)
MARK_CLOSE, INDEX_OPEN, PREMIUM_CLOSE = (COLUMNS.index(name) for name in ("mark_close", "index_open", "premium_close"))
PRICE_KINDS = {  # the columns of each price's open, high, low and close
    kind: tuple(COLUMNS.index(prefix + part) for part in ("open", "high", "low", "close"))
    for kind, prefix in (("trade", ""), ("mark", "mark_"), ("index", "index_"), ("premium", "premium_"))
}
ALL_COLUMNS = tuple(range(len(COLUMNS)))
Row = tuple[int, ...]


def units(value: Decimal) -> int:
    """A price, premium or quantity as integer units of 1e-8 (floored)."""
    return int((value * SCALE).to_integral_value(rounding=ROUND_FLOOR))


def decimal(value: int) -> Decimal:
    return D(value).scaleb(-8)


class Bars:
    """Minute bars in time order, one integer column per field."""

    def __init__(self) -> None:
        self.columns = [array("q") for _ in COLUMNS]

    def __len__(self) -> int:
        return len(self.columns[0])

    def append(self, row: Row) -> None:
        for column, value in zip(self.columns, row, strict=True):
            column.append(value)

    def row(self, i: int) -> Row:
        return tuple(column[i] for column in self.columns)

    def extend(self, other: Bars) -> None:
        for column, more in zip(self.columns, other.columns, strict=True):
            column.extend(more)


@dataclass(frozen=True)
class Candle:
    """A candle of any interval, as integer units (prices of the kind asked for)."""

    open_ms: int
    close_ms: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote_volume: int
    trades: int
    minutes: int


@dataclass(frozen=True)
class Trade:
    """A generated aggregate trade."""

    id: int
    price: int
    qty: int
    time_ms: int
    buyer_maker: bool


@dataclass
class LiveBar:
    """The minute the live market is in, as its steps go by (Decimals, as the market holds them)."""

    open_ms: int
    trade: list[Decimal]  # open, high, low, close
    mark: list[Decimal]
    index: list[Decimal]
    premium: list[Decimal]
    volume: Decimal = D(0)
    quote_volume: Decimal = D(0)
    trades: int = 0

    @staticmethod
    def _widen(ohlc: list[Decimal], value: Decimal) -> None:
        ohlc[1], ohlc[2], ohlc[3] = max(ohlc[1], value), min(ohlc[2], value), value

    def update(self, trade: Decimal, mark: Decimal, index: Decimal, premium: Decimal) -> None:
        for ohlc, value in ((self.trade, trade), (self.mark, mark), (self.index, index), (self.premium, premium)):
            self._widen(ohlc, value)

    def row(self) -> Row:
        t, m, i, p = ([units(v) for v in ohlc] for ohlc in (self.trade, self.mark, self.index, self.premium))
        return (*t, units(self.volume), units(self.quote_volume), self.trades, *m, *i, *p)


class SymbolHistory:
    """One symbol's minute bars: generated before `start_minute_ms`, recorded from it on."""

    def __init__(
        self, seed: int, symbol: str, start_ms: int, days: int, start_index: Decimal, tick: Decimal, step: Decimal,
        depth: Decimal, funding_interval_ms: int, funding_cap: Decimal,
    ) -> None:  # fmt: skip
        self.seed, self.symbol = seed, symbol
        self.start_minute_ms = start_ms // MINUTE_MS * MINUTE_MS
        day_ms = DAY_MINUTES * MINUTE_MS
        self.first_ms = (self.start_minute_ms - days * day_ms) // day_ms * day_ms  # from a UTC midnight
        self.start_index = units(start_index)  # where the generated history ends: the live market's first index
        self.tick, self.step, self.depth = units(tick), units(step), float(depth)
        self.funding_interval_ms, self.funding_cap = funding_interval_ms, funding_cap
        self._days: list[Bars] = []  # _days[k]: the k-th day before the start, generated on demand
        self.recorded = Bars()  # minutes from start_minute_ms on
        self.live: LiveBar | None = None
        self._funding: list[tuple[int, Decimal, Decimal]] | None = None

    # ------------------------------------------------------------------------------------ bars

    @property
    def end_ms(self) -> int:
        """Where the recorded minutes end (the live minute's start)."""
        return self.start_minute_ms + len(self.recorded) * MINUTE_MS

    def bar(self, open_ms: int) -> Row | None:
        """The finished minute bar opening at `open_ms` (None outside the history)."""
        if open_ms < self.first_ms or open_ms >= self.end_ms:
            return None
        if open_ms >= self.start_minute_ms:
            return self.recorded.row((open_ms - self.start_minute_ms) // MINUTE_MS)
        back = (self.start_minute_ms - open_ms - 1) // MINUTE_MS  # minutes before the start, 0-based
        day = self._day(back // DAY_MINUTES)
        return day.row(DAY_MINUTES - 1 - back % DAY_MINUTES)

    def bars(self, from_ms: int, to_ms: int, columns: Sequence[int] = ALL_COLUMNS) -> Iterator[tuple[int, Row]]:
        """(open time, those `columns` of its row) of every minute opening in [from_ms, to_ms), the live one
        included, read from the blocks' column slices."""
        for bars, block_start, i, j in self._segments(from_ms, to_ms):
            for n, row in enumerate(zip(*(bars.columns[k][i:j] for k in columns), strict=True), start=i):
                yield block_start + n * MINUTE_MS, row
        if self.live is not None and from_ms <= self.live.open_ms < to_ms:
            live = self.live.row()
            yield self.live.open_ms, tuple(live[k] for k in columns)

    @property
    def latest_ms(self) -> int:
        """The open time of the newest minute (the live one, once the market has stepped)."""
        return self.live.open_ms if self.live is not None else self.end_ms - MINUTE_MS

    def candles(self, interval: str, kind: str, start: int | None, end: int | None, limit: int) -> list[Candle]:
        """Binance's kline paging: with `start`, the first `limit` candles opening at or after it (and at or
        before `end`); otherwise the last `limit` opening at or before `end` (or now). Oldest first."""
        first = bucket_start(interval, self.first_ms)
        last = bucket_start(interval, min(self.latest_ms, end if end is not None else self.latest_ms))
        opens: list[int] = []
        if start is not None:
            b = max(bucket_start(interval, start), first)
            if b < start:
                b = bucket_end(interval, b)
            while b <= last and len(opens) < limit:
                opens.append(b)
                b = bucket_end(interval, b)
        else:
            b = last
            while b >= first and len(opens) < limit:
                opens.append(b)
                b = bucket_start(interval, b - 1)
            opens.reverse()
        o, h, low, c = PRICE_KINDS[kind]
        if interval == "1m" and opens:  # a candle a minute: read the columns straight through
            rows = self.bars(opens[0], opens[-1] + MINUTE_MS, (o, h, low, c, VOLUME, QUOTE_VOLUME, TRADES))
            return [Candle(t, t + MINUTE_MS - 1, r[0], r[1], r[2], r[3], r[4], r[5], r[6], 1) for t, r in rows]
        out = []
        for b in opens:
            close_ms = bucket_end(interval, b)
            parts = [(bars.columns, i, j) for bars, _, i, j in self._segments(b, close_ms)]
            live = self.live.row() if self.live is not None and b <= self.live.open_ms < close_ms else None
            if live is not None:  # the minute in progress, as a one-row segment
                parts.append(([array("q", [v]) for v in live], 0, 1))
            if not parts:
                continue
            first_cols, i0, _ = parts[0]
            last_cols, _, j1 = parts[-1]
            out.append(Candle(
                b, close_ms - 1, first_cols[o][i0], max(max(cols[h][i:j]) for cols, i, j in parts),
                min(min(cols[low][i:j]) for cols, i, j in parts), last_cols[c][j1 - 1],
                sum(sum(cols[VOLUME][i:j]) for cols, i, j in parts),
                sum(sum(cols[QUOTE_VOLUME][i:j]) for cols, i, j in parts),
                sum(sum(cols[TRADES][i:j]) for cols, i, j in parts), sum(j - i for _, i, j in parts),
            ))  # fmt: skip
        return out

    def _segments(self, from_ms: int, to_ms: int) -> list[tuple[Bars, int, int, int]]:
        """The finished minutes opening in [from_ms, to_ms) as slices (block, the block's first minute, first
        index, end index) of the blocks that hold them, in time order: generated days, then the recorded
        minutes."""
        t = max(from_ms, self.first_ms)
        t += -t % MINUTE_MS
        end = min(to_ms, self.end_ms)
        parts = []
        while t < min(end, self.start_minute_ms):
            k = (self.start_minute_ms - t - 1) // (DAY_MINUTES * MINUTE_MS)  # the day block that holds t
            block_start = self.start_minute_ms - (k + 1) * DAY_MINUTES * MINUTE_MS
            stop = min(end, self.start_minute_ms - k * DAY_MINUTES * MINUTE_MS)
            parts.append((self._day(k), block_start, (t - block_start) // MINUTE_MS,
                          (stop - 1 - block_start) // MINUTE_MS + 1))  # fmt: skip
            t = stop
        if t < end:
            first, last = (t - self.start_minute_ms) // MINUTE_MS, (end - 1 - self.start_minute_ms) // MINUTE_MS
            parts.append((self.recorded, self.start_minute_ms, first, last + 1))
        return parts

    def _day(self, k: int) -> Bars:
        while len(self._days) <= k:
            n = len(self._days)
            end = self.start_index if n == 0 else self._days[-1].columns[INDEX_OPEN][0]
            self._days.append(self._generate(f"history:{n}", end, DAY_MINUTES))
        return self._days[k]

    def fill(self, minutes: int, price: Decimal) -> None:
        """Minutes the clock jumped over: generated, starting and ending at `price` (a random-walk bridge)."""
        if minutes > 0:
            self.recorded.extend(self._generate(f"gap:{self.end_ms}", units(price), minutes, start=units(price)))

    def roll(self, bar: LiveBar) -> None:
        """A new live minute: keep the one that ended, and fill the minutes a clock jump left between them."""
        if self.live is not None:
            self.recorded.append(self.live.row())
        self.fill((bar.open_ms - self.end_ms) // MINUTE_MS, bar.index[0])
        self.live = bar

    def _generate(self, name: str, end: int, minutes: int, start: int | None = None) -> Bars:
        """`minutes` bars whose index ends at `end` (units), walking backwards from it; or, given `start`, a
        walk from `start` bent to end at `end`. Neighbouring minutes share their open and close exactly."""
        rng = random.Random(f"{self.seed}:{self.symbol}:{name}")
        sigma = DAILY_VOL / math.sqrt(DAY_MINUTES)
        steps, volatile = [], False
        for _ in range(minutes):
            if rng.random() < 0.01:
                volatile = not volatile
            steps.append(rng.gauss(0.0, sigma * (2.5 if volatile else 1.0)))
        if start is None:  # backwards from the end
            log_start = math.log(end) - sum(steps)
        else:
            log_start = math.log(start)
            bend = (math.log(end) - log_start - sum(steps)) / minutes
            steps = [s + bend for s in steps]
        points = [int(math.exp(x)) for x in itertools.accumulate(steps, initial=log_start)]
        points[0], points[-1] = start if start is not None else points[0], end
        bars, premium, tick = Bars(), 0.0, self.tick
        for o, c in itertools.pairwise(points):
            high = max(o, c, int(max(o, c) * math.exp(abs(rng.gauss(0.0, sigma * 0.6)))))
            low = min(o, c, int(min(o, c) * math.exp(-abs(rng.gauss(0.0, sigma * 0.6)))))
            index = (o, high, low, c)
            premium = 0.95 * premium + rng.gauss(0.0, 0.00004)
            trade = [int(x * (1 + premium)) // tick * tick for x in index]  # on the tick, floored
            mark = [int(x * (1 + premium / 2)) for x in index]
            qty = max(self.step, int(rng.expovariate(1.0) * self.depth * 40 * SCALE) // self.step * self.step)
            quote = qty * (trade[0] + trade[3]) // 2 // SCALE
            p = int(premium * SCALE)
            bars.append((*trade, qty, quote, rng.randint(20, 400), *mark, *index, p, p, p, p))
        return bars

    # -------------------------------------------------------------------------------- trades

    def trades(self, from_ms: int, to_ms: int) -> Iterator[Trade]:
        """The generated aggregate trades in [from_ms, to_ms), four per minute before the start."""
        t = max(from_ms, self.first_ms) // MINUTE_MS * MINUTE_MS
        while t < min(to_ms, self.start_minute_ms):
            for trade in self._minute_trades(t):
                if from_ms <= trade.time_ms < to_ms:
                    yield trade
            t += MINUTE_MS

    def trades_from_id(self, first_id: int) -> Iterator[Trade]:
        """Generated aggregate trades from id `first_id` on, in id order."""
        if first_id > self.generated_trades:
            return
        t = self.first_ms + (max(first_id, 1) - 1) // TRADES_PER_MINUTE * MINUTE_MS
        while t < self.start_minute_ms:
            yield from (trade for trade in self._minute_trades(t) if trade.id >= first_id)
            t += MINUTE_MS

    @property
    def generated_trades(self) -> int:
        return (self.start_minute_ms - self.first_ms) // MINUTE_MS * TRADES_PER_MINUTE

    def _minute_trades(self, open_ms: int) -> list[Trade]:
        row = self.bar(open_ms)
        assert row is not None
        first = (open_ms - self.first_ms) // MINUTE_MS * TRADES_PER_MINUTE + 1
        o, h, low, c = row[OPEN], row[HIGH], row[LOW], row[CLOSE]
        path = (o, low, h, c) if c >= o else (o, h, low, c)  # a rising minute dips first
        qty = max(self.step, row[VOLUME] // TRADES_PER_MINUTE // self.step * self.step)
        return [Trade(first + k, price, qty, open_ms + k * 15_000, buyer_maker=(k % 2 == 1))
                for k, price in enumerate(path)]  # fmt: skip

    # ------------------------------------------------------------------------------- funding

    def funding(self) -> list[tuple[int, Decimal, Decimal]]:
        """(settlement time, rate, mark) at every funding time before the start with a whole interval of
        history behind it, the rate on that interval's average premium."""
        if self._funding is None:
            rows = []
            interval = self.funding_interval_ms
            t = (self.first_ms + interval - 1) // interval * interval + interval
            while t <= self.start_minute_ms:
                premiums = [premium for _, (premium,) in self.bars(t - interval, t, (PREMIUM_CLOSE,))]
                average = decimal(sum(premiums) // len(premiums))
                mark = self.bar(t - MINUTE_MS)
                assert mark is not None
                rows.append((t, funding_rate(average, self.funding_cap), decimal(mark[MARK_CLOSE])))
                t += interval
            self._funding = rows
        return self._funding


def funding_rate(average_premium: Decimal, cap: Decimal) -> Decimal:
    """Binance's funding rate on the averaged premium index P, capped; on 8 decimals, as Binance prints it."""
    # F = clamp(P + clamp(I − P, −0.05 %, 0.05 %), −cap, cap), I = 0.01 %
    rate = average_premium + min(max(INTEREST - average_premium, D("-0.0005")), D("0.0005"))
    return min(max(rate, -cap), cap).quantize(D("0.00000001"))


# ---------------------------------------------------------------------------------- intervals

INTERVALS_MS = {
    "1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "2h": 120, "4h": 240, "6h": 360, "8h": 480,
    "12h": 720, "1d": 1440, "3d": 4320, "1w": 10080,
}  # fmt: skip  (minutes; "1M" is the calendar month)
WEEK_OFFSET_MS = 4 * DAY_MINUTES * MINUTE_MS  # weeks open on Monday; 1970-01-01 was a Thursday


def bucket_start(interval: str, t: int) -> int:
    """The open time of the `interval` candle that holds time t."""
    if interval == "1M":
        day = dt.datetime.fromtimestamp(t / 1000, dt.UTC)
        return int(dt.datetime(day.year, day.month, 1, tzinfo=dt.UTC).timestamp() * 1000)
    length = INTERVALS_MS[interval] * MINUTE_MS
    offset = WEEK_OFFSET_MS if interval == "1w" else 0
    return (t - offset) // length * length + offset


def bucket_end(interval: str, start: int) -> int:
    """The open time of the candle after the one opening at `start`."""
    if interval == "1M":
        day = dt.datetime.fromtimestamp(start / 1000, dt.UTC)
        nxt = dt.datetime(day.year + day.month // 12, day.month % 12 + 1, 1, tzinfo=dt.UTC)
        return int(nxt.timestamp() * 1000)
    return start + INTERVALS_MS[interval] * MINUTE_MS
