"""The account: balance and positions as last read from the venue (`AccountReader`), moved at once by
every fill (with `margin.move_position`, the same arithmetic the sim engine uses) so the gate never sizes
against a position a fill has changed; the next read replaces them with the exchange's figures.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from botkit.clock import Clock, sleep_until_set
from botkit.config import BotConfig
from botkit.domain import Balance, OrderSide, Position, Side
from botkit.guards.exposure import Exposure
from botkit.guards.killswitch import KillSwitch
from botkit.guards.market_risk import Crowding, crowded
from botkit.margin import move_position
from botkit.runtime import events
from botkit.runtime.journal import Journal
from botkit.runtime.market_state import MarketState
from botkit.runtime.news import AccountRead, Crowded, Sink
from botkit.runtime.strategy import Fill
from botkit.venue.errors import VenueError
from botkit.venue.protocol import Venue

ZERO = Decimal(0)


def signed(position: Position | None) -> Decimal:
    """A position's quantity with its sign: > 0 long, < 0 short, 0 flat."""
    if position is None:
        return ZERO
    return position.qty if position.side is Side.LONG else -position.qty


class AccountState:
    """Balance and positions of this bot's account."""

    def __init__(self) -> None:
        self.balance: Balance | None = None
        self.positions: dict[str, Position] = {}
        # what the positions, open orders and reservations commit, as running totals (the gate's read)
        self.exposure = Exposure()
        self.equity_start: Decimal | None = None
        self.fills: Counter[str] = Counter()  # fills applied per symbol: a read that one overtook is out of date there

    @property
    def equity(self) -> Decimal | None:
        return self.balance.total if self.balance is not None else None

    def read(self, balance: Balance, positions: list[Position], raced: set[str] | frozenset[str] = frozenset()) -> None:
        """The venue's figures replace ours, except the positions of the `raced` symbols: a fill moved them
        while the read was in flight, so the read's figures may predate it (a stale flat would make the stop
        keeper cancel a live position's stop); the next read brings them."""
        fresh = {p.symbol: p for p in positions if p.symbol not in raced}
        fresh |= {symbol: self.positions[symbol] for symbol in raced if symbol in self.positions}
        self.balance, self.positions = balance, fresh
        self.exposure.positions(fresh)
        if self.equity_start is None:
            self.equity_start = balance.total

    def apply_fill(self, fill: Fill) -> None:
        """Move the local position by one fill until the next read."""
        self.fills[fill.symbol] += 1
        held = self.positions.get(fill.symbol)
        before = signed(held)
        delta = fill.qty if fill.side == OrderSide.BUY else -fill.qty
        price = fill.price or (held.entry if held else None)
        if price is None:  # no price for a position that did not exist: the next read brings it
            if before + delta == 0:
                self.positions.pop(fill.symbol, None)
                self.exposure.position(fill.symbol, None)
            return
        move = move_position(before, held.entry if held else ZERO, delta, price)
        if move.qty == 0:
            self.positions.pop(fill.symbol, None)
            self.exposure.position(fill.symbol, None)
            return
        side = Side.LONG if move.qty > 0 else Side.SHORT
        base = held or Position(fill.symbol, side, abs(move.qty), move.entry, None, None, "isolated", None, None, ZERO)
        # An isolated position cut in part keeps its liquidation price (the margin leaves in proportion), so the
        # liquidation guard still sees it between slices; opened, added to or flipped: unknown until the read.
        reduced = held is not None and held.side is side and abs(move.qty) < abs(before)
        liquidation = held.liquidation if reduced and held is not None else None
        moved = replace(base, side=side, qty=abs(move.qty), entry=move.entry, liquidation=liquidation)
        self.positions = {**self.positions, fill.symbol: moved}
        self.exposure.position(fill.symbol, moved)


class AccountReader:
    """Reads balance and positions every `runtime.account_seconds`, and sooner after a fill (at most twice
    a period: each read costs request weight the orders need). Each read is journalled as a snapshot,
    feeds the positions' marks into the market state, and is announced as AccountRead news."""

    def __init__(self, config: BotConfig, *, clock: Clock, venue: Venue, ks: KillSwitch, journal: Journal,
                 market: MarketState, account: AccountState, symbols: list[str], sink: Sink) -> None:  # fmt: skip
        self.config, self.clock, self.venue, self.ks, self.journal = config, clock, venue, ks, journal
        self.market, self.account, self.symbols, self.sink = market, account, symbols, sink
        self._dirty = asyncio.Event()
        self.tape: Callable[[str], None] | None = None  # a session recording: where each read fell
        self.crowded: dict[str, bool] = {}  # symbol -> crowded, by longs (True) or shorts (False)

    def soon(self) -> None:
        """A fill changed the account: read it before the period is up."""
        self._dirty.set()

    async def read_if_changed(self) -> bool:
        """Read now if a fill changed the account since the last read (a backtest's driver); whether it did."""
        if not self._dirty.is_set():
            return False
        self._dirty.clear()
        await self.read()
        return True

    async def refresh_balance(self) -> None:
        """Read the balance alone (a backtest's driver, every bar with a position open: the equity moves with
        the mark, the positions only with fills, which make a full read)."""
        try:
            balance = await self.venue.fetch_balance()
        except VenueError as exc:
            self.ks.error(f"account: {exc}")
            return
        self.account.balance = balance
        self.ks.equity(balance.total, datetime.fromtimestamp(self.clock.time(), UTC).date())

    async def loop(self) -> None:
        period = float(self.config.runtime.account_seconds)
        self.ks.watch("account", max(float(self.config.killswitch.stale_feed_seconds), 3 * period))
        while True:
            started = self.clock.monotonic()
            await self.read()
            self._dirty.clear()
            await sleep_until_set(self.clock, period, self._dirty)  # a period, or sooner after a fill ...
            # ... but at most twice a period: each read costs request weight the orders need (10 on Binance)
            await self.clock.sleep(max(0.0, started + period / 2 - self.clock.monotonic()))

    async def read(self) -> None:
        if self.tape is not None:
            self.tape("read")
        fills = self.account.fills.copy()
        try:
            balance = await self.venue.fetch_balance()
            positions = await self.venue.fetch_positions(self.symbols)
        except VenueError as exc:
            self.ks.error(f"account: {exc}")
            return
        raced = {symbol for symbol, n in self.account.fills.items() if n != fills[symbol]}
        if raced:
            self.soon()
        self.account.read(balance, positions, raced)
        for position in positions:
            if position.mark is not None:
                self.market.set_account_mark(position.symbol, position.mark)
        self.ks.succeeded()
        self.ks.feed("account")
        self.ks.equity(balance.total, datetime.fromtimestamp(self.clock.time(), UTC).date())
        self._record_snapshot()
        self._crowding()
        self.sink(AccountRead())

    def _crowding(self) -> None:
        """Each held position's market against the crowding thresholds (botkit.guards.market_risk.crowded),
        and a market found crowded while a position was held, until it calms. A crowded market is cut into at
        once (Crowded: the safety room's crowding cut) and then, until the
        figures calm, either holds the kill switch in REDUCING or scales the symbol's risk budget down."""
        settings = self.config.market_risk
        if settings.crowding == "off":
            return
        limits = Crowding(float(settings.crowding_funding_z), float(settings.crowding_basis),
                          float(settings.crowding_vol_ratio))  # fmt: skip
        for symbol in self.symbols:
            held, risk = self.account.positions.get(symbol), self.market.risk.get(symbol)
            # the side the crowd leans: the position's, or, once it is gone (cut, stopped), the one it had:
            # the market stays crowded that way until the figures calm, flat or not
            already = self.crowded.get(symbol)
            long = held.side is Side.LONG if held is not None else already
            found = None
            if long is not None and risk is not None:
                found = crowded(risk.figures(), long, limits, already is not None)
            if settings.crowding == "reduce":
                self.ks.crowding(symbol, found)
            if found is None or long is None:
                if self.crowded.pop(symbol, None) is not None and settings.crowding == "scale":
                    self.market.budget_scale.pop(symbol, None)
                    self.journal.write(events.HaltAction(action="crowding_eased", symbol=symbol,
                                                         result="funding, basis and volatility calmed"))  # fmt: skip
                continue
            self.crowded[symbol] = long
            if already is None:
                if settings.crowding == "scale":
                    self.market.budget_scale[symbol] = settings.crowding_scale
                    self.journal.write(events.HaltAction(action="crowding_scale", symbol=symbol, result=(
                        f"risk budget x{settings.crowding_scale} until it calms: {found}")))  # fmt: skip
                self.sink(Crowded(symbol, found))

    def _record_snapshot(self) -> None:
        """The figures `botkit report` charts over time (price, mark vs index, equity, liquidation distance)."""
        symbols = {}
        for symbol in self.symbols:
            held = self.account.positions.get(symbol)
            symbols[symbol] = self.market.top(symbol) | {
                "position": signed(held),
                "entry": held.entry if held else None,
                "liquidation": held.liquidation if held else None,
            }
        balance = self.account.balance
        self.journal.write(events.AccountSnapshot(state=self.ks.state, equity=balance.total if balance else None,
                                                  available=balance.free if balance else None, symbols=symbols))
