"""Strategies for the chaos suite. They keep asking for risk whatever the state, so that the guardrails,
not the strategy's good manners, are what keeps them safe."""

from __future__ import annotations

import asyncio
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


class Burst(Strategy):
    """Whenever flat with nothing resting: `burst` buys at once, each with no quantity (the largest safe
    one); when they are in, hold a moment, close, and go again. Each intent sized as if it were the only one
    would put `burst` times the risk budget on the exchange."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        burst: int = Field(12, ge=1)
        stop_pct: Decimal = Field(Decimal("0.02"), gt=0, lt=1)
        hold_s: float = Field(0.5, ge=0)

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.busy = False
        self.filled_at: float | None = None

    async def on_quote(self, ctx: Context, quote: Quote) -> None:
        p = self.params
        if self.busy or quote.mark is None or ctx.open_orders(quote.symbol):
            return
        self.busy = True
        try:
            if ctx.position(quote.symbol) is None:
                stop = quote.mark * (1 - p.stop_pct)
                await asyncio.gather(*(ctx.buy(quote.symbol, stop=stop, tag="burst") for _ in range(p.burst)))
                self.filled_at = time.monotonic()
            elif self.filled_at is not None and time.monotonic() - self.filled_at > p.hold_s:
                await ctx.close(quote.symbol, tag="burst-close")
        finally:
            self.busy = False


class Ladder(Strategy):
    """A ladder of resting limit buys below the market, each with no quantity (the largest safe one) and one
    stop under the lowest rung, one after the other; cancelled and laid again every few seconds. Each rung
    sized as if the others were not resting would commit a budget per rung."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        rungs: int = Field(6, ge=1)
        step_bps: Decimal = Field(Decimal("10"), gt=0)
        stop_pct: Decimal = Field(Decimal("0.02"), gt=0, lt=1)
        relay_s: float = Field(2.0, gt=0)

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.busy = False
        self.laid_at = 0.0

    async def on_quote(self, ctx: Context, quote: Quote) -> None:
        p = self.params
        if self.busy or quote.bid is None or time.monotonic() - self.laid_at < p.relay_s:
            return
        self.busy = True
        try:
            for resting in ctx.open_orders(quote.symbol):
                await ctx.cancel(resting)
            stop = quote.bid * (1 - p.stop_pct)
            for rung in range(1, p.rungs + 1):
                price = quote.bid * (1 - p.step_bps * rung / 10_000)
                await ctx.buy(quote.symbol, stop=stop, type="limit", price=price, tag=f"rung-{rung}")
            self.laid_at = time.monotonic()
        finally:
            self.busy = False


class OpenAndRest(Strategy):
    """Once: a market buy and a resting limit buy 1 % under the mark, each of `notional`, with a stop 3 %
    under the mark; then it holds them (a bot that is killed while it holds risk)."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        symbol: str = "BTC/USDT:USDT"
        notional: Decimal = Field(Decimal("1000"), gt=0)

    async def on_start(self, ctx: Context) -> None:
        p, cents = self.params, Decimal("0.01")
        mark = ctx.mark(p.symbol)
        qty, stop = (p.notional / mark).quantize(Decimal("0.001")), (mark * Decimal("0.97")).quantize(cents)
        await ctx.buy(p.symbol, qty, stop=stop)
        await ctx.buy(p.symbol, qty, stop=stop, type="limit", price=(mark * Decimal("0.99")).quantize(cents))
