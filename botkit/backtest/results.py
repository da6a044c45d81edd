"""What a backtest shows a trader: the trades (entry, exit, quantity, fees, funding, PnL, why each closed),
the equity and drawdown curve, and the figures (return, drawdown, Sharpe and Sortino on daily returns, win
rate, profit factor, exposure, funding paid and received, fees, rejections by reason, the closest approach
to liquidation). Money is Decimal, from the engine's own fills and payments; the curve and the ratios
derived from it are floats (they are statistics, not amounts).
"""

from __future__ import annotations

import math
from array import array
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botkit.domain import OrderType
from botkit.runtime.journal import read_events

if TYPE_CHECKING:
    from botkit.backtest.history import SymbolHistory
    from botkit.backtest.venue import HistoryVenue

ZERO = Decimal(0)
DAY_MS = 86_400_000
REASONS = {"strategy": "signal", "liquidation_guard": "liquidation guard", "flatten": "halt (flatten)",
           "stop": "unprotected (closed)", "crowding": "crowding (cut)"}  # fmt: skip


@dataclass
class Trade:
    symbol: str
    side: str  # long or short
    entry_ms: int
    exit_ms: int | None  # None: still open at the end
    qty: Decimal  # the largest size held
    entry_price: Decimal  # average of the opening fills
    exit_price: Decimal | None  # average of the closing fills (the mark, for a liquidation)
    fees: Decimal
    funding: Decimal  # received (+) or paid (-)
    pnl: Decimal  # net: price PnL + funding - fees (a liquidation: the margin lost)
    closed_by: str  # signal, stop, take-profit, liquidation guard, liquidation, ... or "open at end"


@dataclass
class Closest:
    """The nearest the mark came to a position's liquidation price."""

    symbol: str
    time_ms: int
    mark: Decimal
    liquidation: Decimal
    distance: Decimal  # |mark - liquidation| / mark


@dataclass
class Results:
    strategy: str
    symbols: list[str]
    interval: str
    first_ms: int
    last_ms: int
    bars: int
    seconds: float  # wall time of the run
    journal: str
    equity_start: Decimal
    equity_end: Decimal
    total_return: float
    max_drawdown: float
    sharpe: float | None
    sortino: float | None
    trades: list[Trade]
    win_rate: float | None
    profit_factor: float | None
    exposure: float  # share of bars with a position open
    fees: Decimal
    funding_paid: Decimal
    funding_received: Decimal
    liquidations: int
    rejections: dict[str, int]
    closest: Closest | None
    curve: list[tuple[int, float, float]]  # (time, equity, drawdown), at most CURVE_POINTS of them
    notes: list[str] = field(default_factory=list)  # what the run assumed or could not find, stated

    @property
    def bars_per_second(self) -> float:
        return self.bars / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, Decimal):
                return str(value)
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [plain(v) for v in value]
            return value

        data = plain(asdict(self))
        data["bars_per_second"] = round(self.bars_per_second)
        return data

    def text(self) -> str:
        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{x * 100:.2f}%"

        def num(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.2f}"

        lines = [
            f"backtest of {self.strategy} on {', '.join(self.symbols)}, {self.interval} bars, "
            f"{_day(self.first_ms)} to {_day(self.last_ms)} ({self.bars} bars in {self.seconds:.1f}s, "
            f"{self.bars_per_second:,.0f} bars/s)",
            f"  equity       {_money(self.equity_start, 2)} -> {_money(self.equity_end, 2)} USDT  "
            f"(return {pct(self.total_return)}, "
            f"max drawdown {pct(self.max_drawdown)})",
            f"  daily ratios Sharpe {num(self.sharpe)}, Sortino {num(self.sortino)}",
            f"  trades       {len(self.trades)} (win rate {pct(self.win_rate)}, profit factor "
            f"{num(self.profit_factor)}), exposure {pct(self.exposure)}",
            f"  costs        fees {_money(self.fees)}, funding paid {_money(self.funding_paid)}, "
            f"received {_money(self.funding_received)} USDT",
            f"  liquidations {self.liquidations}",
        ]
        if self.closest is not None:
            c = self.closest
            lines.append(f"  closest to liquidation: {c.symbol} at {_moment(c.time_ms)}, mark {c.mark} vs "
                         f"liquidation {c.liquidation} ({pct(float(c.distance))} away)")  # fmt: skip
        if self.rejections:
            lines.append("  rejections   " + ", ".join(f"{k} {v}" for k, v in sorted(self.rejections.items())))
        if self.trades:
            lines.append("  trades:")
            lines.append("    side   entry               exit                qty        entry px   exit px    "
                         "fees       funding    pnl        closed by")  # fmt: skip
            for t in self.trades[:TRADES_SHOWN]:
                lines.append(
                    f"    {t.side:<6} {_moment(t.entry_ms):<19} {_moment(t.exit_ms) if t.exit_ms else '-':<19} "
                    f"{t.qty!s:<10} {t.entry_price!s:<10} {t.exit_price if t.exit_price is not None else '-'!s:<10} "
                    f"{_money(t.fees):<10} {_money(t.funding):<10} {_money(t.pnl):<10} {t.closed_by}"
                )
            if len(self.trades) > TRADES_SHOWN:
                lines.append(f"    ... {len(self.trades) - TRADES_SHOWN} more (all in the JSON)")
        lines += [f"  note: {note}" for note in self.notes]
        lines.append(f"  journal: {self.journal}")
        return "\n".join(lines)


TRADES_SHOWN = 20
CURVE_POINTS = 2000


class Recorder:
    """Collects what the results need while the replay runs (cheap per bar: the equity, and at each path
    point with a position, its distance to liquidation)."""

    def __init__(self, venue: HistoryVenue, symbols: list[str]) -> None:
        self.venue, self.symbols = venue, symbols
        self.times = array("q")
        self.equity = array("d")
        self.bars_in_position = 0
        self.closest: Closest | None = None
        self._flat: tuple[int, int] = (-1, -1)  # (payments, positions) when the flat equity was last read
        self._flat_equity = 0.0

    def point(self, symbol: str, mark: Decimal, time_ms: int) -> None:
        venue = self.venue
        if not venue.account.position(venue.market_ids[symbol]).qty:
            return
        liquidation = venue.liquidation_price(symbol)
        if liquidation is None or mark <= 0:
            return
        distance = abs(mark - liquidation) / mark
        if self.closest is None or distance < self.closest.distance:
            self.closest = Closest(symbol, time_ms, mark, _q(liquidation), _q(distance))

    def bar(self, now: float, read: Decimal | None = None) -> None:
        """One equity sample: `read`, the equity the bot has just read with a position open, else the
        engine's."""
        venue, account = self.venue, self.venue.account
        open_positions = any(p.qty for p in account.positions.values())
        if open_positions:
            equity = float(read if read is not None else venue.engine.margin_balance(account))
        elif self._flat != (len(account.incomes), len(account.positions)):  # flat: only a payment moves it
            self._flat = (len(account.incomes), len(account.positions))
            equity = self._flat_equity = float(account.wallet_balance)
        else:
            equity = self._flat_equity
        self.bars_in_position += open_positions
        self.times.append(int(now * 1000))
        self.equity.append(equity)

    def finish(self, now: float) -> None:
        if not self.times:
            self.bar(now)

    def results(self, strategy: str, histories: list[SymbolHistory], journal: Path, start: Decimal,
                rejected: dict[str, int], notes: list[str], seconds: float, bars: int) -> Results:  # fmt: skip
        venue, engine, account = self.venue, self.venue.engine, self.venue.account
        trades = _trades(venue, _sources(journal))
        end = engine.margin_balance(account)
        curve, max_dd = _curve(self.times, self.equity)
        daily = _daily_returns(self.times, self.equity, float(start))
        closed = [t for t in trades if t.exit_ms is not None]
        wins = [t for t in closed if t.pnl > 0]
        gross_win = sum((t.pnl for t in closed if t.pnl > 0), ZERO)
        gross_loss = -sum((t.pnl for t in closed if t.pnl < 0), ZERO)
        funding = [i.amount for i in account.incomes if i.income_type == "FUNDING_FEE"]
        fees = -sum((i.amount for i in account.incomes if i.income_type == "COMMISSION"), ZERO)
        return Results(
            strategy=strategy, symbols=self.symbols, interval=histories[0].interval,
            first_ms=min(h.first_ms for h in histories), last_ms=max(h.last_ms for h in histories), bars=bars,
            seconds=seconds, journal=str(journal), equity_start=start, equity_end=end,
            total_return=float(end / start - 1), max_drawdown=max_dd, sharpe=_ratio(daily, downside=False),
            sortino=_ratio(daily, downside=True), trades=trades,
            win_rate=len(wins) / len(closed) if closed else None,
            profit_factor=float(gross_win / gross_loss) if gross_loss else None,
            exposure=self.bars_in_position / len(self.times) if self.times else 0.0, fees=fees,
            funding_paid=-sum((a for a in funding if a < 0), ZERO),
            funding_received=sum((a for a in funding if a > 0), ZERO),
            liquidations=len(engine.liquidations), rejections=rejected, closest=self.closest, curve=curve,
            notes=notes,
        )  # fmt: skip


def _sources(journal: Any) -> dict[str, tuple[str, str | None]]:
    """client id -> (source, tag) of every order the bot sent, from its journal."""
    return {e.client_id: (e.data.get("source", "strategy"), e.data.get("tag"))
            for e in read_events(journal, ["order.sending"]) if e.client_id}  # fmt: skip


def _trades(venue: HistoryVenue, sources: dict[str, tuple[str, str | None]]) -> list[Trade]:
    """Round trips from the engine's fills, funding payments and liquidations: a trip runs from flat to
    flat (a flip ends one and starts the next)."""
    account = venue.account
    stops = {a.client_id: a.type for a in account.algos.values()}
    liquidations = {order.client_id for order in account.orders.values() if order.type is OrderType.LIQUIDATION}
    happenings: dict[str, list[tuple[int, int, str, Any]]] = defaultdict(list)
    for n, fill in enumerate(account.fills):
        happenings[fill.symbol].append((fill.time_ms, n, "fill", fill))
    for n, income in enumerate(account.incomes):
        if income.income_type == "FUNDING_FEE":
            happenings[income.symbol].append((income.time_ms, n, "funding", income))
    for n, liq in enumerate(venue.engine.liquidations):
        happenings[liq["symbol"]].append((liq["time"], len(account.fills) + n, "liquidation", liq))
    trades: list[Trade] = []
    unified = {market_id: symbol for symbol, market_id in venue.market_ids.items()}
    for market_id, items in happenings.items():
        symbol = unified.get(market_id, market_id)
        items.sort(key=lambda x: (x[0], x[2] == "funding", x[1]))
        trip: dict[str, Any] | None = None
        qty = ZERO
        for time_ms, _, kind, item in items:
            if kind == "funding":
                if trip is not None:
                    trip["funding"] += item.amount
                continue
            if kind == "liquidation":
                if trip is not None:
                    trades.append(_close(symbol, trip, time_ms, Decimal(item["mark"]), "liquidation",
                                         lost=Decimal(item["isolated_wallet_lost"])))  # fmt: skip
                trip, qty = None, ZERO
                continue
            fill = item
            signed = fill.qty * fill.side.sign
            remaining = signed
            if qty and (qty > 0) != (signed > 0):  # closing, in part or whole (or flipping)
                closing = min(abs(signed), abs(qty))
                share = closing / abs(signed)
                assert trip is not None
                trip["fees"] += fill.commission * share
                trip["realized"] += fill.realized_pnl
                trip["exit_qty"] += closing
                trip["exit_value"] += closing * fill.price
                qty += closing if signed > 0 else -closing
                remaining = signed - (closing if signed > 0 else -closing)
                if qty == 0:
                    trades.append(_close(symbol, trip, time_ms, None,
                                         _why(fill.client_id, sources, stops, liquidations)))  # fmt: skip
                    trip = None
                if remaining == 0:
                    continue
                fee_left = fill.commission * (1 - share)
            else:
                fee_left = fill.commission
            if trip is None:
                trip = {"side": "long" if remaining > 0 else "short", "entry_ms": time_ms, "qty": ZERO,
                        "entry_qty": ZERO, "entry_value": ZERO, "exit_qty": ZERO, "exit_value": ZERO,
                        "fees": ZERO, "funding": ZERO, "realized": ZERO}
            trip["fees"] += fee_left
            trip["entry_qty"] += abs(remaining)
            trip["entry_value"] += abs(remaining) * fill.price
            qty += remaining
            trip["qty"] = max(trip["qty"], abs(qty))
        if trip is not None:
            trades.append(_close(symbol, trip, None, None, "open at end"))
    trades.sort(key=lambda t: (t.entry_ms, t.symbol))
    return trades


def _close(symbol: str, trip: dict[str, Any], exit_ms: int | None, exit_price: Decimal | None, why: str, *,
           lost: Decimal = ZERO) -> Trade:  # fmt: skip
    entry_price = trip["entry_value"] / trip["entry_qty"]
    if exit_price is None and trip["exit_qty"]:
        exit_price = trip["exit_value"] / trip["exit_qty"]
    # net PnL = realized PnL of the closing fills − fees + funding − isolated margin lost to a liquidation
    # (the wallet balance's change over the trip: funding paid from the isolated margin is in `lost` too,
    # and counted once, since the wallet balance includes the isolated margin until it is lost)
    pnl = trip["realized"] - trip["fees"] + trip["funding"] - lost
    exit_price = _q(exit_price) if exit_price is not None else None
    return Trade(symbol, trip["side"], trip["entry_ms"], exit_ms, trip["qty"], _q(entry_price), exit_price,
                 _q(trip["fees"]), trip["funding"], _q(pnl), why)  # fmt: skip


def _why(client_id: str, sources: dict[str, tuple[str, str | None]], stops: dict[str, OrderType],
         liquidations: set[str]) -> str:  # fmt: skip
    if client_id in liquidations:
        return "liquidation"
    if client_id in stops:
        return "take-profit" if stops[client_id] is OrderType.TAKE_PROFIT_MARKET else "stop"
    source, tag = sources.get(client_id, ("strategy", None))
    reason = REASONS.get(source, source)
    return f"{reason} ({tag})" if reason == "signal" and tag else reason


def _curve(times: array[int], equity: array[float]) -> tuple[list[tuple[int, float, float]], float]:
    """(time, equity, drawdown) thinned to CURVE_POINTS (each kept point the worst drawdown of its stretch),
    and the maximum drawdown."""
    peak, worst = -math.inf, 0.0
    stride = max(1, math.ceil(len(times) / CURVE_POINTS))
    curve: list[tuple[int, float, float]] = []
    pick: tuple[int, float, float] | None = None
    for i, (t, e) in enumerate(zip(times, equity, strict=True)):
        peak = max(peak, e)
        dd = (peak - e) / peak if peak > 0 else 0.0
        worst = max(worst, dd)
        if pick is None or dd >= pick[2]:
            pick = (t, e, dd)
        if (i + 1) % stride == 0 or i == len(times) - 1:
            curve.append(pick)
            pick = None
    return curve, worst


def _daily_returns(times: array[int], equity: array[float], start: float) -> list[float]:
    closes: dict[int, float] = {}
    for t, e in zip(times, equity, strict=True):
        closes[t // DAY_MS] = e  # the day's last equity
    returns, before = [], start
    for day in sorted(closes):
        returns.append(closes[day] / before - 1 if before else 0.0)
        before = closes[day]
    return returns


def _ratio(returns: list[float], *, downside: bool) -> float | None:
    """Sharpe (or Sortino: downside deviation) of daily returns, annualised by sqrt(365) (perpetuals trade
    every day)."""
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    if downside:
        spread = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    else:
        spread = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))
    return mean / spread * math.sqrt(365) if spread > 0 else None


def _q(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.00000001"))


def _money(value: Decimal, places: int = 4) -> str:
    return f"{value:.{places}f}"


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def _moment(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"
