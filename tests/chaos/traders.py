"""Strategies for the chaos suite. They keep asking for risk whatever the state, so that the guardrails,
not the strategy's good manners, are what keeps them safe."""

from __future__ import annotations

import time
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from botkit.runtime.strategy import Context, Quote, Strategy


class Churn(Strategy):
    """Every `every_s`, on each symbol, one step of a cycle: a market order sized by the gate (no quantity)
    with a stop, a resting limit order near the book, a cancel of everything resting, a close. Creates,
    cancels and fills all the time, on both sides."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        every_s: float = Field(0.15, gt=0)
        stop_bps: Decimal = Field(Decimal("100"), gt=0)
        limit_qty: Decimal = Field(Decimal("0.003"), gt=0)
        limit_offset_bps: Decimal = Field(Decimal("5"), ge=0)

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.steps: dict[str, int] = {}
        self.last: dict[str, float] = {}

    async def on_quote(self, ctx: Context, quote: Quote) -> None:
        p = self.params
        now = time.monotonic()
        if quote.bid is None or quote.ask is None or now - self.last.get(quote.symbol, 0.0) < p.every_s:
            return
        self.last[quote.symbol] = now
        step = self.steps.get(quote.symbol, 0)
        self.steps[quote.symbol] = step + 1
        side = "buy" if step // 4 % 2 == 0 else "sell"
        sign = 1 if side == "buy" else -1
        stop_of = lambda price: price * (1 - sign * p.stop_bps / 10_000)  # noqa: E731
        order = ctx.buy if side == "buy" else ctx.sell
        match step % 4:
            case 0:
                reference = quote.ask if side == "buy" else quote.bid
                await order(quote.symbol, stop=stop_of(reference), tag="churn-market")
            case 1:
                price = (quote.bid if side == "buy" else quote.ask) * (1 - sign * p.limit_offset_bps / 10_000)
                await order(
                    quote.symbol, p.limit_qty, stop=stop_of(price), type="limit", price=price, tag="churn-limit"
                )
            case 2:
                for resting in ctx.open_orders(quote.symbol):
                    await ctx.cancel(resting)
            case 3:
                await ctx.close(quote.symbol, tag="churn-close")


class Holder(Strategy):
    """Opens the largest position the gate allows for a wide stop, then holds it and asks again whenever it
    is flat: the exposure a crash or a funding squeeze works against."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        side: str = Field("buy", pattern="^(buy|sell)$")
        stop_pct: Decimal = Field(Decimal("0.04"), gt=0, lt=1)

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.busy: set[str] = set()

    async def on_quote(self, ctx: Context, quote: Quote) -> None:
        p = self.params
        if quote.mark is None or ctx.position(quote.symbol) is not None or quote.symbol in self.busy:
            return
        self.busy.add(quote.symbol)
        try:
            sign = 1 if p.side == "buy" else -1
            order = ctx.buy if p.side == "buy" else ctx.sell
            await order(quote.symbol, stop=quote.mark * (1 - sign * p.stop_pct), tag="hold")
        finally:
            self.busy.discard(quote.symbol)
