"""The client-side liquidation path: when a position's mark comes within a buffer of its liquidation
price, botkit cuts the position itself in reduce-only slices, a pause apart, instead of leaving the whole
position to the exchange's liquidation engine (which takes all of the isolated margin and a fee). Inside
half the buffer there is no time left for slices: the whole remainder is cut at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from botkit.clock import Clock, SystemClock
from botkit.domain import OrderIntent, OrderSide, Position, Side
from botkit.margin import MarketRules, cut_qty, plain


@dataclass
class LiquidationGuard:
    buffer: Decimal  # act when |mark - liquidation| <= buffer · mark
    slice: Decimal  # fraction of the position cut per slice
    pause_s: float  # between slices of one symbol
    clock: Clock = field(default_factory=SystemClock)
    _last: dict[str, float] = field(default_factory=dict)

    def check(self, position: Position, mark: Decimal, rules: MarketRules) -> tuple[OrderIntent, str] | None:
        """The next reduce-only slice and the figures behind it, or None (far enough, or pausing)."""
        liq = position.liquidation
        if liq is None or liq <= 0 or position.qty <= 0 or mark <= 0:
            return None
        distance = (mark - liq) / mark if position.side is Side.LONG else (liq - mark) / mark
        if distance > self.buffer:
            return None
        now = self.clock.monotonic()
        if now - self._last.get(position.symbol, float("-inf")) < self.pause_s:
            return None
        self._last[position.symbol] = now
        fraction = self.slice if distance > self.buffer / 2 else Decimal(1)
        qty = cut_qty(position.qty, fraction, rules)
        side = OrderSide.closing(position.side)
        figures = (f"symbol={position.symbol} mark={plain(mark)} liq={plain(liq)} distance={distance:.4f} "
                   f"buffer={plain(self.buffer)} slice={plain(qty)} of {plain(position.qty)}")  # fmt: skip
        return OrderIntent(position.symbol, side, qty, reduce_only=True, tag="liquidation-guard"), figures
