"""Funding carry: hold the side that receives funding while the rate is rich (short when longs pay,
long when shorts pay), and close once the rate falls back. A wide stop limits the damage if the price
runs against the carry; botkit sizes the position for that stop.

It needs a market whose funding is rich: |rate| above `enter_rate` (0.03 % a period by default). In a
calm market it waits and never trades. On the emulator: `botkit run --strategy funding_carry --scenario
funding-squeeze` (funding at its cap, settled four times within the run).
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from botkit.runtime.strategy import Context, Quote, Side, Strategy


class FundingCarry(Strategy):
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        enter_rate: Decimal = Field(Decimal("0.0003"), gt=0, description="|rate| per period to enter")
        exit_rate: Decimal = Field(Decimal("0.0001"), ge=0, description="|rate| below which to close")
        stop_pct: Decimal = Field(Decimal("0.05"), gt=0, lt=1)

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.busy: set[str] = set()  # an order of ours for this symbol is on its way

    async def on_quote(self, ctx: Context, quote: Quote) -> None:
        funding, mark = ctx.funding(quote.symbol), quote.mark
        if funding is None or funding.rate is None or mark is None or quote.symbol in self.busy:
            return
        p, rate = self.params, funding.rate
        position = ctx.position(quote.symbol)
        self.busy.add(quote.symbol)
        try:
            if position is None:
                if rate >= p.enter_rate:  # longs pay shorts
                    await ctx.sell(quote.symbol, stop=mark * (1 + p.stop_pct), tag="carry")
                elif rate <= -p.enter_rate:
                    await ctx.buy(quote.symbol, stop=mark * (1 - p.stop_pct), tag="carry")
            else:
                receiving = (position.side is Side.SHORT) == (rate > 0)
                if abs(rate) < p.exit_rate or not receiving:
                    await ctx.close(quote.symbol, tag="carry-exit")
        finally:
            self.busy.discard(quote.symbol)
