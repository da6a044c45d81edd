"""Safety: what the bot does on its own to cut risk. It is the only room that makes a `RiskCut`.

- The halt response: on HALTED, cancel this bot's open orders (retrying while the venue refuses, e.g.
  during a ban) and, with `on_halt = "cancel_and_flatten"`, close the positions with reduce-only orders.
- Closing a position the exchange no longer protects (its stop already passed, or missing for too long:
  see botkit.runtime.stops), with reduce-only market orders.
- Cutting a position whose market turns crowded toward it (funding, basis and volatility all extreme:
  botkit.guards.market_risk), by `market_risk.crowding_cut` of it, with a reduce-only market order.
- The liquidation guard: when a position's mark (the freshest from any source) comes within the buffer
  of its liquidation price, cut it in reduce-only slices. One decision per symbol is in flight at a time,
  so a burst of mark frames cannot stack up slices.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from botkit.clock import Clock
from botkit.config import BotConfig
from botkit.domain import OrderIntent, OrderSide, TradingState
from botkit.guards.killswitch import KillSwitch, SwitchEvent
from botkit.guards.liquidation import LiquidationGuard
from botkit.log import get_logger
from botkit.margin import cut_qty
from botkit.runtime import events
from botkit.runtime.account import AccountState
from botkit.runtime.execution import _SEAL, RiskCut, Router
from botkit.runtime.journal import Journal
from botkit.runtime.market_state import MarketState

log = get_logger("botkit.safety")
Spawn = Callable[[Coroutine[Any, Any, Any], str], Any]


class Safety:
    """The halt response, the crowding cut and the liquidation guard."""

    def __init__(self, config: BotConfig, *, clock: Clock, ks: KillSwitch, journal: Journal, router: Router,
                 market: MarketState, account: AccountState, spawn: Spawn) -> None:  # fmt: skip
        self.config, self.clock, self.ks, self.journal, self.router = config, clock, ks, journal, router
        self.market, self.account, self.spawn = market, account, spawn
        ks_config = config.killswitch
        self.guard = LiquidationGuard(ks_config.liq_guard_buffer, ks_config.liq_slice,
                                      float(ks_config.liq_slice_pause_seconds), clock)  # fmt: skip
        self._flatten = RiskCut("flatten", _SEAL)
        self._slice = RiskCut("liquidation_guard", _SEAL)
        self._unprotected = RiskCut("stop", _SEAL)
        self._crowding = RiskCut("crowding", _SEAL)
        self._cutting: set[str] = set()  # symbols with a guard slice in flight

    def halted(self, event: SwitchEvent) -> None:
        self.spawn(self._on_halted(event), "on-halt")

    async def _on_halted(self, event: SwitchEvent) -> None:
        attempt = 0
        while self.ks.state is TradingState.HALTED:
            cancelled, total = await self.router.cancel_own()
            attempt += 1
            self.journal.write(events.HaltAction(action="cancel", trigger=event.trigger, cancelled=cancelled,
                                                 of=total, attempt=attempt))  # fmt: skip
            if cancelled == total:
                break
            await self.clock.sleep(min(30.0, float(self.config.runtime.poll_seconds) * 2**attempt))
        if self.config.killswitch.on_halt == "cancel_and_flatten" and self.ks.state is TradingState.HALTED:
            for position in list(self.account.positions.values()):
                side = OrderSide.closing(position.side)
                intent = OrderIntent(position.symbol, side, position.qty, reduce_only=True, tag="flatten")
                result = await self.router.submit(intent, self._flatten)
                self.journal.write(events.HaltAction(action="flatten", symbol=position.symbol, qty=position.qty,
                                                     result=str(result)[:300]))  # fmt: skip

    async def close_unprotected(self, symbol: str, why: str) -> None:
        """Close a position the exchange holds no stop for, in whatever state the bot is in."""
        position = self.account.positions.get(symbol)
        if position is None:
            return
        intent = OrderIntent(symbol, OrderSide.closing(position.side), position.qty, reduce_only=True, tag="stop")
        result = await self.router.submit(intent, self._unprotected)
        self.journal.write(events.HaltAction(action="close_unprotected", symbol=symbol, qty=position.qty,
                                             result=f"{why}: {str(result)[:300]}"))  # fmt: skip

    def ease_crowding(self, symbol: str, figures: str) -> None:
        """The position's market has turned crowded toward it: cut `market_risk.crowding_cut` of it now, before
        a cascade can (the kill switch already went REDUCING, so nothing adds to it)."""
        fraction, position = self.config.market_risk.crowding_cut, self.account.positions.get(symbol)
        rules = self.market.rules.get(symbol)
        if position is None or rules is None or fraction == 0:
            return
        qty = cut_qty(position.qty, fraction, rules)
        intent = OrderIntent(symbol, OrderSide.closing(position.side), qty, reduce_only=True, tag="crowding")
        self.spawn(self._ease(intent, figures), "crowding-cut")

    async def _ease(self, intent: OrderIntent, figures: str) -> None:
        result = await self.router.submit(intent, self._crowding)
        self.journal.write(events.HaltAction(action="crowding_cut", symbol=intent.symbol, qty=intent.qty,
                                             result=f"{figures}: {str(result)[:300]}"))  # fmt: skip

    def check_liquidation(self, symbol: str) -> None:
        """Cut a slice if the position's mark is within the guard's buffer of its liquidation price."""
        position = self.account.positions.get(symbol)
        mark, _ = self.market.mark(symbol)
        if position is None or mark is None or symbol not in self.market.rules or symbol in self._cutting:
            return
        cut = self.guard.check(position, mark, self.market.rules[symbol])
        if cut is not None:
            intent, figures = cut
            log.warning("liquidation_guard.cut", figures=figures)
            self.journal.write(events.GuardCut(symbol=symbol, figures=figures))
            self._cutting.add(symbol)
            self.spawn(self._cut(symbol, intent), "liquidation-guard")

    async def _cut(self, symbol: str, intent: OrderIntent) -> None:
        try:
            await self.router.submit(intent, self._slice)
        finally:
            self._cutting.discard(symbol)

    def check_all(self) -> None:
        for symbol in list(self.account.positions):
            self.check_liquidation(symbol)
