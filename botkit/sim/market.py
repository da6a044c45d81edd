"""A seeded, deterministic synthetic market for the emulator.

The market advances in fixed steps of simulated time (`step_ms`). Everything a step produces (index,
book, trades, mark, funding) is a function of the seed, the scenario and the step number alone, so the
same seed gives the same market bit for bit, however fast the emulator is paced in real time.

- index: geometric random walk with calm/volatile regimes, rare jumps, and the scenario's drift/crash;
- book: 20 levels a side around a mid that carries a small mean-reverting premium over the index, and
  480 more beyond them, one every 10 ticks, each with a quantity fixed by its price (see `levels`);
- mark: index + an exponentially smoothed basis (mid − index), plus any divergence a fault injects;
- funding: Binance's rule on the averaged premium (history.funding_rate);
- history: a month of minute bars and funding rates before the start (history.py), recorded on from it.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from botkit.margin import Tier, cum_from_rates, floor_to_step
from botkit.sim.crowd import Crowd, CrowdSpec, walk
from botkit.sim.history import LiveBar, SymbolHistory, funding_rate

D = Decimal
BOOK_LEVELS = 20  # levels a side that move every step
OUTER_LEVELS = 480  # beyond them, levels at a fixed quantity per price: 500 levels a side in all
OUTER_GAP = 10  # ticks between two of those fixed levels
ZERO = D(0)
RECENT_TRADES = 10_000  # live trades kept for the trade history endpoints


def _tiers(rows: list[tuple[int, int, str, int]]) -> tuple[Tier, ...]:
    """Brackets from (floor, cap, mmr, max leverage), with cum from the recurrence as Binance does."""
    cums = cum_from_rates([(D(f), D(m)) for f, _, m, _ in rows])
    return tuple(Tier(D(f), D(c), D(m), cum, lev) for (f, c, m, lev), cum in zip(rows, cums, strict=True))


@dataclass(frozen=True)
class SymbolSpec:
    """One perpetual's exchange filters, brackets and synthetic-price parameters."""

    symbol: str
    base: str
    quote: str
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    tiers: tuple[Tier, ...]
    start_price: float
    volatility: float  # stdev of the log return per step in the calm regime
    depth: Decimal  # quantity near the top of the book
    percent_up: Decimal = D("1.05")
    percent_down: Decimal = D("0.95")
    liquidation_fee: Decimal = D("0.0125")
    funding_cap: Decimal = D("0.0075")


SPECS: tuple[SymbolSpec, ...] = (
    SymbolSpec(
        symbol="BTCUSDT",
        base="BTC",
        quote="USDT",
        tick=D("0.1"),
        step=D("0.001"),
        min_qty=D("0.001"),
        max_qty=D("1000"),
        market_max_qty=D("120"),
        min_notional=D("100"),
        tiers=_tiers(
            [
                (0, 50_000, "0.004", 125),
                (50_000, 600_000, "0.005", 100),
                (600_000, 3_000_000, "0.0065", 75),
                (3_000_000, 12_000_000, "0.01", 50),
                (12_000_000, 70_000_000, "0.02", 25),
                (70_000_000, 100_000_000, "0.025", 20),
                (100_000_000, 230_000_000, "0.05", 10),
                (230_000_000, 480_000_000, "0.1", 5),
                (480_000_000, 600_000_000, "0.125", 4),
                (600_000_000, 800_000_000, "0.15", 3),
                (800_000_000, 1_200_000_000, "0.25", 2),
                (1_200_000_000, 1_800_000_000, "0.5", 1),
            ]
        ),
        start_price=50_000.0,
        volatility=0.00012,
        depth=D("2"),
    ),
    SymbolSpec(
        symbol="ETHUSDT",
        base="ETH",
        quote="USDT",
        tick=D("0.01"),
        step=D("0.001"),
        min_qty=D("0.001"),
        max_qty=D("10000"),
        market_max_qty=D("2000"),
        min_notional=D("20"),
        tiers=_tiers(
            [
                (0, 50_000, "0.005", 100),
                (50_000, 500_000, "0.0065", 75),
                (500_000, 8_000_000, "0.01", 50),
                (8_000_000, 50_000_000, "0.02", 25),
                (50_000_000, 80_000_000, "0.025", 20),
                (80_000_000, 150_000_000, "0.05", 10),
                (150_000_000, 300_000_000, "0.1", 5),
                (300_000_000, 400_000_000, "0.125", 4),
                (400_000_000, 500_000_000, "0.15", 3),
                (500_000_000, 800_000_000, "0.25", 2),
                (800_000_000, 1_200_000_000, "0.5", 1),
            ]
        ),
        start_price=3_000.0,
        volatility=0.00015,
        depth=D("30"),
    ),
)


def synthetic_specs(count: int) -> tuple[SymbolSpec, ...]:
    """`count` more perpetuals, S01USDT, S02USDT, ...: ETHUSDT's filters and brackets at prices from 1 to
    2,000, for runs that trade many symbols at once."""
    eth = SPECS[1]
    return tuple(
        replace(eth, symbol=f"S{i:02d}USDT", base=f"S{i:02d}", start_price=float(1 + i * 137 % 2000),
                tick=D("0.001"), min_notional=D(5))
        for i in range(1, count + 1)
    )  # fmt: skip



@dataclass(frozen=True)
class Scenario:
    """A named market condition. Times are seconds of simulated time since the emulator started."""

    name: str
    drift: float = 0.0  # log drift per step
    vol_mult: float = 1.0
    jump_prob: float = 0.0005
    crash_at: float | None = None  # flash crash: start, fall, duration, then recover part of it
    crash_drop: float = 0.15
    crash_seconds: float = 30.0
    crash_recovery: float = 0.5
    crash_depth_mult: float = 0.1  # books this much thinner during the crash
    stall_at: float | None = None  # WebSocket market data frozen from stall_at for stall_seconds
    stall_seconds: float = 60.0
    funding_pinned: bool = False  # funding at its cap
    tighten_at: float | None = None  # brackets cut their max leverage at this time ...
    tighten_factor: int = 2  # ... to this fraction of it (at least 1x)
    depth_mult: float = 1.0  # every book this much deeper (or thinner, below 1)
    crowd: CrowdSpec | None = None  # leveraged positions the exchange liquidates into the book (sim/crowd.py)
    premium_build: float = 0.0  # from build_at until crash_at, the premium pushed this much a step crowd-ward
    build_at: float = 0.0  # when the crowd starts to build up (premium_build, stir)
    stir: float = 1.0  # volatility grows (exponentially) to this multiple from build_at to crash_at, and stays

    def fitted(self, run_s: float, speed: float, stale_s: float) -> Scenario:
        """The same market with its events placed within a run of `run_s` real seconds at `speed`, for a
        bot whose stale-feed limit is `stale_s`: a crash once positions exist (halfway), a stall long enough
        to trip the stale-feed guard that ends with time to recover, brackets cut while positions are held."""
        sim = run_s * speed
        changes: dict[str, Any] = {}
        if self.crash_at is not None:
            changes |= {"crash_at": 0.5 * sim, "crash_seconds": min(self.crash_seconds, 0.05 * sim)}
            if self.build_at:  # the build-up keeps its share of the time before the crash
                changes["build_at"] = self.build_at * 0.5 * sim / self.crash_at
        if self.stall_at is not None:
            stall_real = max(1.5 * stale_s, 0.15 * run_s)
            start = max(0.9 * run_s - 2 * stall_real, 0.5 * run_s)  # data back with time left to resume
            changes |= {"stall_at": start * speed, "stall_seconds": stall_real * speed}
        if self.tighten_at is not None:
            changes["tighten_at"] = 0.7 * sim
        return replace(self, **changes)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("calm", vol_mult=0.6, jump_prob=0.0),
        Scenario("trend", drift=0.000004),
        Scenario("flash-crash", crash_at=30.0),
        Scenario("feed-stall", stall_at=20.0),
        Scenario("funding-squeeze", funding_pinned=True),
        Scenario("limits-tighten", tighten_at=30.0, tighten_factor=16),
        # longs crowd in, paying rising funding into a widening premium; a 2 % dip reaches the most
        # leveraged, and their liquidations walk a thin book into the next ones
        Scenario("crowded-squeeze", vol_mult=0.6, jump_prob=0.0, crash_at=120.0, crash_drop=0.02,
                 crash_seconds=10.0, crash_recovery=0.0, crash_depth_mult=1.0, depth_mult=0.02, crowd=CrowdSpec(),
                 premium_build=0.00005, build_at=30.0, stir=3.0),
        # the demo: a trend the strategy follows, a crash into its position, then a stalled feed it recovers from
        Scenario("demo", drift=0.000004, crash_at=300.0, stall_at=400.0),
    )
}


@dataclass
class Trade:
    id: int
    price: Decimal
    qty: Decimal
    buyer_maker: bool
    time_ms: int


@dataclass
class SymbolState:
    """Everything the exchange shows about one symbol at the current step."""

    spec: SymbolSpec
    tiers: tuple[Tier, ...]
    min_notional: Decimal
    log_price: float
    index: Decimal = D(0)
    mid: Decimal = D(0)
    mark: Decimal = D(0)
    premium: float = 0.0  # mid over index, mean-reverting
    basis_ema: float = 0.0
    premium_avg: float = 0.0  # averaged premium index for funding
    funding_rate: Decimal = D("0.0001")
    bids: list[tuple[Decimal, Decimal]] = field(default_factory=list)
    asks: list[tuple[Decimal, Decimal]] = field(default_factory=list)
    update_id: int = 1_000_000
    trade_id: int = 0
    trades: list[Trade] = field(default_factory=list)  # this step's trades
    recent: deque[Trade] = field(default_factory=lambda: deque(maxlen=RECENT_TRADES))
    last: Decimal = D(0)  # the last trade's price (the mid's, on the tick, before any trade)
    day_open: Decimal = D(0)
    day_high: Decimal = D(0)
    day_low: Decimal = D(0)
    day_volume: Decimal = D(0)
    day_quote_volume: Decimal = D(0)
    day_count: int = 0
    volatile: bool = False
    mark_bias_bps: Decimal = D(0)  # injected mark/index divergence


class Market:
    """All symbols, advanced together one step at a time."""

    def __init__(
        self,
        seed: int = 1,
        scenario: str | Scenario = "calm",
        *,
        start_ms: int = 1_700_000_000_000,
        step_ms: int = 100,
        funding_interval_s: float = 8 * 3600,
        specs: tuple[SymbolSpec, ...] = SPECS,
        history_days: int = 30,
    ) -> None:
        if isinstance(scenario, str):
            if scenario not in SCENARIOS:
                raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
            scenario = SCENARIOS[scenario]
        if step_ms <= 0 or funding_interval_s <= 0:
            raise ValueError("step_ms and funding_interval_s must be positive")
        self.seed, self.scenario = seed, scenario
        self.start_ms, self.step_ms = start_ms, step_ms
        self.funding_interval_ms = int(funding_interval_s * 1000)
        self.steps = 0
        self.skipped_ms = 0  # simulated time jumped over without steps (see skip)
        self.symbols: dict[str, SymbolState] = {}
        self.history: dict[str, SymbolHistory] = {}
        self._rng: dict[str, random.Random] = {}
        self.crowds: dict[str, Crowd] = {}
        crash = self._crash_drift()
        for spec in specs:
            self._rng[spec.symbol] = random.Random(f"{seed}:{spec.symbol}")
            state = SymbolState(spec, spec.tiers, spec.min_notional, math.log(spec.start_price))
            self.symbols[spec.symbol] = state
            self.history[spec.symbol] = history = SymbolHistory(
                seed, spec.symbol, start_ms, history_days, _index(state.log_price), spec.tick, spec.step, spec.depth,
                self.funding_interval_ms, spec.funding_cap,
            )  # fmt: skip
            state.trade_id = history.generated_trades  # live trade ids follow the generated history's
            self._refresh(state, self._rng[spec.symbol], crash, first=True)
        self.next_funding_ms = self._next_funding_after(self.start_ms)

    # ---------------------------------------------------------------------------------------- time

    @property
    def now_ms(self) -> int:
        return self.start_ms + self.steps * self.step_ms + self.skipped_ms

    @property
    def elapsed_s(self) -> float:
        return self.steps * self.step_ms / 1000

    def _next_funding_after(self, ms: int) -> int:
        return (ms // self.funding_interval_ms + 1) * self.funding_interval_ms

    def feed_stalled(self) -> bool:
        s = self.scenario
        return s.stall_at is not None and s.stall_at <= self.elapsed_s < s.stall_at + s.stall_seconds

    def step(self) -> int | None:
        """Advance one step; the funding time it crossed, if it crossed one (the caller settles funding as
        of that time, as Binance stamps it, not as of the step that happened to cross it)."""
        self.steps += 1
        if self.scenario.tighten_at is not None and self.elapsed_s >= self.scenario.tighten_at:
            self.tighten_brackets(factor=self.scenario.tighten_factor)
            self.scenario = replace(self.scenario, tighten_at=None)
        crash = self._crash_drift()
        s = self.scenario
        for name, state in self.symbols.items():
            if s.crowd is not None and name not in self.crowds and self.elapsed_s >= s.build_at:
                # the crowd piles in as it starts to build up: entries near the mark of that moment
                self.crowds[name] = Crowd(s.crowd, self.seed, name, float(state.mark), float(state.spec.tiers[0].mmr))
            self._refresh(state, self._rng[name], crash)
            crowd = self.crowds.get(name)
            if crowd is not None:
                crowd.cross(self.steps, float(state.mark))
        if self.now_ms >= self.next_funding_ms:
            due, self.next_funding_ms = self.next_funding_ms, self._next_funding_after(self.now_ms)
            return due
        return None

    # --------------------------------------------------------------------------------- price model

    def _crash_drift(self) -> tuple[float, float]:
        """Extra log drift per step and depth multiplier from a flash crash, if one is under way."""
        s = self.scenario
        if s.crash_at is None:
            return 0.0, 1.0
        t = self.elapsed_s
        steps = s.crash_seconds * 1000 / self.step_ms
        if s.crash_at <= t < s.crash_at + s.crash_seconds:
            return math.log(1 - s.crash_drop) / steps, s.crash_depth_mult
        if s.crash_at + s.crash_seconds <= t < s.crash_at + 3 * s.crash_seconds:
            bottom = 1 - s.crash_drop
            target = bottom + s.crash_drop * s.crash_recovery
            return math.log(target / bottom) / (2 * steps), 0.5
        return 0.0, 1.0

    def _stirred(self) -> float:
        """The volatility's multiple as the crowd builds: stir^((t − build_at) / (crash_at − build_at)), then
        stir from the crash on (a steady growth: the recent volatility stays above its slower average)."""
        s, t = self.scenario, self.elapsed_s
        if s.stir == 1.0 or s.crash_at is None or t < s.build_at:
            return 1.0
        if t >= s.crash_at:
            return s.stir
        return s.stir ** ((t - s.build_at) / (s.crash_at - s.build_at))

    def _refresh(
        self, st: SymbolState, rng: random.Random, crash_drift: tuple[float, float], first: bool = False
    ) -> None:
        spec, s = st.spec, self.scenario
        crash, depth_mult = crash_drift
        forced: Trade | None = None  # a liquidated crowd's order, this step
        if not first:
            if rng.random() < (0.002 if not st.volatile else 0.01):
                st.volatile = not st.volatile
            sigma = spec.volatility * s.vol_mult * (3.0 if st.volatile else 1.0) * self._stirred()
            ret = s.drift + crash + rng.gauss(0.0, sigma)
            if rng.random() < s.jump_prob:
                ret += rng.gauss(0.0, sigma * 25)
            st.log_price += ret
            st.premium = 0.98 * st.premium + rng.gauss(0.0, 0.00003)
            crowd = self.crowds.get(spec.symbol)
            if crowd is not None:
                forced = self._forced(st, crowd)
                if s.premium_build and s.build_at <= self.elapsed_s and (s.crash_at is None or
                                                                          self.elapsed_s < s.crash_at):
                    st.premium += s.premium_build * crowd.sign
        tick = spec.tick
        index = _index(st.log_price)
        st.index = index
        mid = floor_to_step(index * (1 + D(repr(st.premium))), tick)
        spread_ticks = 1 + (rng.random() < (0.5 if st.volatile else 0.1)) * rng.randint(1, 4)
        best_bid = mid - tick * (spread_ticks // 2)
        best_ask = best_bid + tick * spread_ticks
        st.mid = (best_bid + best_ask) / 2
        basis = float((st.mid - index) / index)
        st.basis_ema = basis if first else 0.9 * st.basis_ema + 0.1 * basis
        mark = index * (1 + D(repr(st.basis_ema)) + st.mark_bias_bps / 10_000)
        st.mark = floor_to_step(mark, D("0.00000001"))
        premium = float((st.mark - index) / index)
        st.premium_avg = premium if first else 0.999 * st.premium_avg + 0.001 * premium
        averaged = D(repr(st.premium_avg)).quantize(D("0.00000001"))
        st.funding_rate = spec.funding_cap if s.funding_pinned else funding_rate(averaged, spec.funding_cap)

        scale = float(spec.depth) * depth_mult * s.depth_mult
        st.bids = [(best_bid - tick * self._gap(i), self._qty(spec, rng, i, scale)) for i in range(BOOK_LEVELS)]
        st.asks = [(best_ask + tick * self._gap(i), self._qty(spec, rng, i, scale)) for i in range(BOOK_LEVELS)]
        st.update_id += 1  # one book update a step (depth streams diff the book between their own updates)
        st.trades = [forced] if forced is not None else []
        for _ in range(0 if first else rng.randint(0, 3)):
            buyer_maker = rng.random() < 0.5
            price = best_bid if buyer_maker else best_ask
            qty = max(spec.step, floor_to_step(D(repr(rng.expovariate(4.0) * scale / 4)), spec.step))
            st.trade_id += 1
            st.trades.append(Trade(st.trade_id, price, qty, buyer_maker, self.now_ms))
        st.recent.extend(st.trades)
        self._record(st)

    def _forced(self, st: SymbolState, crowd: Crowd) -> Trade | None:
        """The crowd's forced orders due now walk the book as it stands (the last step's) and move the
        price by what they consumed: part in the index, the rest in the premium (see sim/crowd.py)."""
        qty = crowd.due(self.steps)
        if qty <= 0 or st.mid <= 0:
            return None
        spec, selling = st.spec, crowd.sign > 0  # a long crowd's liquidations sell
        deep = 4 * float(spec.depth) * self.scenario.depth_mult  # the fixed levels' density, thinned alike
        price = walk(st.bids if selling else st.asks, qty, deep, float(spec.tick) * OUTER_GAP)
        price = max(price, float(st.mid) * 0.5) if selling else price  # at most a halving in one step
        move = math.log(price / float(st.mid))
        share = crowd.spec.impact_to_index
        st.log_price += move * share
        st.premium += move * (1 - share)
        st.trade_id += 1  # the forced order's print (a sell is the taker: the buyer made the price)
        return Trade(st.trade_id, floor_to_step(D(repr(price)), spec.tick),
                     max(spec.step, floor_to_step(D(repr(qty)), spec.step)), selling, self.now_ms)  # fmt: skip

    @staticmethod
    def _gap(level: int) -> int:
        return level + level * level // 4  # 1-tick steps near the top, wider further out

    @staticmethod
    def _qty(spec: SymbolSpec, rng: random.Random, level: int, scale: float) -> Decimal:
        qty = scale * (1 + 0.5 * level) * (0.5 + rng.random())
        return max(spec.step, floor_to_step(D(repr(qty)), spec.step))

    def skip(self, ms: int) -> None:
        """Jump the clock ahead without steps (the market stands still; history fills the minutes)."""
        self.skipped_ms += ms

    def _record(self, st: SymbolState) -> None:
        price = st.trades[-1].price if st.trades else floor_to_step(st.mid, st.spec.tick)
        st.last = price
        premium = ((st.mid - st.index) / st.index).quantize(D("0.00000001"))
        history = self.history[st.spec.symbol]
        minute = self.now_ms // 60_000 * 60_000
        bar = history.live
        if bar is None or bar.open_ms != minute:
            bar = LiveBar(minute, [price] * 4, [st.mark] * 4, [st.index] * 4, [premium] * 4)
            history.roll(bar)
        else:
            bar.update(price, st.mark, st.index, premium)
        if not st.day_open:
            st.day_open = st.day_high = st.day_low = price
        st.day_high, st.day_low = max(st.day_high, price), min(st.day_low, price)
        for trade in st.trades:
            bar.volume += trade.qty
            bar.quote_volume += trade.qty * trade.price
            bar.trades += 1
            st.day_volume += trade.qty
            st.day_quote_volume += trade.qty * trade.price
            st.day_count += 1

    # ------------------------------------------------------------------------------- rule changes

    def tighten_brackets(self, symbol: str | None = None, factor: int = 2) -> None:
        """Cut every bracket's max leverage to 1/factor of it (at least 1x), as venues do in stressed markets."""
        for name, st in self.symbols.items():
            if symbol in (None, name):
                st.tiers = tuple(replace(t, max_leverage=max(1, t.max_leverage // factor)) for t in st.tiers)

    def last_price(self, symbol: str) -> Decimal:
        return self.symbols[symbol].last


def _index(log_price: float) -> Decimal:
    """The index price of a point of the walk, on 8 decimals."""
    return floor_to_step(D(repr(math.exp(log_price))), D("0.00000001"))


# ----------------------------------------------------------------------------------- the deep book


def _outer_qty(spec: SymbolSpec, slot: int) -> Decimal:
    """2 to 6 times the top's depth, on the step, fixed by the slot (a multiplicative hash)."""
    steps = int(spec.depth / spec.step) * (500 + slot * 2654435761 % 1000) // 250
    return spec.step * max(1, steps)


def outer_slots(spec: SymbolSpec, side: str, edge: Decimal) -> tuple[int, int]:
    """The fixed levels beyond a side's last moving level at `edge`, as a range of slots (slot n is the
    price n × OUTER_GAP ticks): the OUTER_LEVELS slots strictly beyond the edge."""
    width = spec.tick * OUTER_GAP
    if side == "bids":
        top = math.ceil(edge / width) - 1
        return max(1, top - OUTER_LEVELS + 1), top
    bottom = math.floor(edge / width) + 1
    return bottom, bottom + OUTER_LEVELS - 1


def levels(st: SymbolState, side: str, limit: int) -> list[tuple[Decimal, Decimal]]:
    """The best `limit` levels of one side ("bids" or "asks"): the moving ones, then the fixed ones beyond
    the last of them, one every OUTER_GAP ticks, each with a quantity fixed by its price (2 to 6 times the
    top's depth, from a multiplicative hash), so the deep book stays put while the top moves."""
    inner = st.bids if side == "bids" else st.asks
    rows = inner[:limit]
    if limit > len(inner) and inner:
        spec, width = st.spec, st.spec.tick * OUTER_GAP
        lo, hi = outer_slots(spec, side, inner[-1][0])
        slots = range(hi, lo - 1, -1) if side == "bids" else range(lo, hi + 1)
        rows += [(n * width, _outer_qty(spec, n)) for n in itertools.islice(slots, limit - len(inner))]
    return rows


@dataclass
class BookSide:
    """One side of the book as a depth stream last sent it, and what has moved since: every price whose
    moving level changed at some step, and the lowest and highest edge (a diff must name a level that came
    and went between two sends: a client's snapshot may have been taken in between)."""

    inner: dict[Decimal, Decimal]
    edge: Decimal  # the last moving level's price: the fixed levels start beyond it
    seen: dict[Decimal, Decimal] = field(default_factory=dict)  # the moving levels at the last step watched
    touched: set[Decimal] = field(default_factory=set)
    low_edge: Decimal = D(0)
    high_edge: Decimal = D(0)

    def watch(self, st: SymbolState, side: str) -> None:
        """Note what changed at this step (called every step between two sends)."""
        now = book_side(st, side)
        self.touched.update(p for p in now.inner.keys() | self.seen.keys() if now.inner.get(p) != self.seen.get(p))
        self.seen = now.inner
        if now.inner:  # an empty side has no edge
            self.low_edge, self.high_edge = min(self.low_edge, now.edge), max(self.high_edge, now.edge)


def book_side(st: SymbolState, side: str) -> BookSide:
    """One side's moving levels now; its edge is the last (worst) of them, where the fixed levels begin."""
    levels_now = st.bids if side == "bids" else st.asks
    inner, edge = dict(levels_now), levels_now[-1][0] if levels_now else ZERO
    return BookSide(inner, edge, seen=inner, low_edge=edge, high_edge=edge)


def book_changes(spec: SymbolSpec, side: str, old: BookSide, new: BookSide) -> list[tuple[Decimal, Decimal]]:
    """Every level of one side that changed since `old` was sent, with its quantity now (0: the level is
    gone), best first: those that differ, and those that moved in between (`old.touched`, and the fixed
    levels the edge passed). Only the moving levels and the ends of the fixed range can change, so this
    costs O(moving levels + how far the edge moved)."""
    width = spec.tick * OUTER_GAP
    old_slots, new_slots = outer_slots(spec, side, old.edge), outer_slots(spec, side, new.edge)
    (lo1, hi1), (lo2, hi2) = (outer_slots(spec, side, e) for e in (min(old.low_edge, new.edge),
                                                                   max(old.high_edge, new.edge)))  # fmt: skip
    passed = range(lo1, hi2 + 1) if lo2 - lo1 >= OUTER_LEVELS else [*range(lo1, lo2), *range(hi1 + 1, hi2 + 1)]
    moved = old.touched | {n * width for n in passed}

    def qty(book: BookSide, slots: tuple[int, int], price: Decimal) -> Decimal:
        if price in book.inner:
            return book.inner[price]
        n, off_grid = divmod(price, width)
        return _outer_qty(spec, int(n)) if not off_grid and slots[0] <= n <= slots[1] else ZERO

    changed = []
    for p in set(old.inner) | set(new.inner) | moved:
        q = qty(new, new_slots, p)
        if p in moved or q != qty(old, old_slots, p):
            changed.append((p, q))
    return sorted(changed, reverse=side == "bids")
