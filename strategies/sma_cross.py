"""Trend following: go with a crossing of a fast and a slow moving average of bar closes, with a
volatility stop (a multiple of the average true range) that trails in the trade's favour. Size is left
to botkit: no quantity means the largest one the sizing rules and the risk budget allow for that stop.
The stop itself is held by the exchange (botkit places it when the entry fills); the strategy only moves
it, with `ctx.move_stop`, so the position stays protected if the bot dies.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from botkit.runtime.strategy import Bar, Context, Order, OrderSide, Side, Strategy, Verdict


class SmaCross(Strategy):
    timeframe = 5.0  # seconds of exchange time per bar

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        fast: int = Field(5, ge=1)
        slow: int = Field(20, ge=2)
        atr_bars: int = Field(14, ge=1)
        atr_mult: Decimal = Field(Decimal("3"), gt=0)

        @model_validator(mode="after")
        def fast_below_slow(self):
            if self.fast >= self.slow:
                raise ValueError("fast must be shorter than slow")
            return self

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.closes: dict[str, deque[Decimal]] = {}
        self.ranges: dict[str, deque[Decimal]] = {}

    async def on_bar(self, ctx: Context, bar: Bar) -> None:
        p = self.params
        closes = self.closes.setdefault(bar.symbol, deque(maxlen=p.slow + 1))
        ranges = self.ranges.setdefault(bar.symbol, deque(maxlen=p.atr_bars))
        previous = closes[-1] if closes else bar.close
        ranges.append(max(bar.high, previous) - min(bar.low, previous))  # true range
        closes.append(bar.close)
        if len(closes) <= p.slow:
            return
        fast_now, slow_now = _mean(list(closes)[-p.fast :]), _mean(list(closes)[-p.slow :])
        fast_before, slow_before = _mean(list(closes)[-p.fast - 1 : -1]), _mean(list(closes)[-p.slow - 1 : -1])
        atr = _mean(ranges)
        position = ctx.position(bar.symbol)
        if fast_before <= slow_before and fast_now > slow_now:  # crossed up
            await self.enter(ctx, bar.symbol, OrderSide.BUY, bar.close - p.atr_mult * atr, position)
        elif fast_before >= slow_before and fast_now < slow_now:  # crossed down
            await self.enter(ctx, bar.symbol, OrderSide.SELL, bar.close + p.atr_mult * atr, position)
        elif position is not None and (stop := ctx.stop(bar.symbol)) is not None and stop.trigger is not None:
            trail = bar.close - p.atr_mult * atr if position.side is Side.LONG else bar.close + p.atr_mult * atr
            if (trail - stop.trigger) * (1 if position.side is Side.LONG else -1) > 0:  # only in the trade's favour
                await ctx.move_stop(bar.symbol, trail)  # a refusal (reason codes) leaves the stop where it is

    async def enter(self, ctx: Context, symbol: str, side: OrderSide, stop: Decimal, position) -> None:
        if position is not None:
            if position.side is side.opens:
                return  # already with the trend
            await ctx.close(symbol, tag="reverse")
        result = await (ctx.buy if side is OrderSide.BUY else ctx.sell)(symbol, stop=stop, tag="cross")
        if not isinstance(result, Verdict):  # else the gate or the venue said no (reason codes in the verdict)
            ctx.log.info("entered", symbol=symbol, side=side, stop=str(stop))

    async def on_stop_triggered(self, ctx: Context, stop: Order) -> None:
        ctx.log.info("stopped out", symbol=stop.symbol, trigger=str(stop.trigger))


def _mean(values) -> Decimal:
    values = list(values)
    return sum(values, Decimal(0)) / len(values)
