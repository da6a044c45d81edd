"""A market maker: a grid of limit orders on both sides of the mid, kept in place as the market moves.
It keeps many orders working, so it leans on the rate limits, the open-order limit and the cancel
guards. Each level is its own small trade with a stop beyond it; once the position reaches its cap,
only the side that reduces it is quoted.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from botkit.runtime.strategy import Context, OrderSide, OrderType, Quote, Side, Strategy, TradingState


class GridMaker(Strategy):
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        levels: int = Field(3, ge=1, le=20, description="orders per side")
        spacing_bps: Decimal = Field(Decimal("8"), gt=0, description="between levels, and from the mid")
        qty: Decimal = Field(Decimal("0.003"), gt=0, description="per order")
        stop_bps: Decimal = Field(Decimal("150"), gt=0, description="each level's stop, beyond its price")
        max_position: Decimal = Field(Decimal("0.03"), gt=0, description="quote one side only beyond this")
        refresh_seconds: float = Field(1.0, gt=0)

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.refreshed: dict[str, float] = {}

    async def on_quote(self, ctx: Context, quote: Quote) -> None:
        p = self.params
        if quote.bid is None or quote.ask is None or ctx.state is not TradingState.ACTIVE:
            return
        now = ctx.now.timestamp()  # the bot's clock (virtual in a replay or a test)
        if now - self.refreshed.get(quote.symbol, 0.0) < p.refresh_seconds:
            return
        self.refreshed[quote.symbol] = now
        mid, step = (quote.bid + quote.ask) / 2, p.spacing_bps / 10_000
        position = ctx.position(quote.symbol)
        held = Decimal(0) if position is None else position.qty if position.side is Side.LONG else -position.qty
        wanted = {}
        if held < p.max_position:
            wanted |= {(OrderSide.BUY, k): mid * (1 - step * k) for k in range(1, p.levels + 1)}
        if held > -p.max_position:
            wanted |= {(OrderSide.SELL, k): mid * (1 + step * k) for k in range(1, p.levels + 1)}
        keep = set()
        for order in ctx.open_orders(quote.symbol):
            level = next((key for key, price in wanted.items()
                          if key[0] == order.side and key not in keep and order.price is not None
                          and abs(order.price - price) <= mid * step / 2), None)  # fmt: skip
            if level is None:
                await ctx.cancel(order)  # off the grid now
            else:
                keep.add(level)
        for (side, k), price in wanted.items():
            if (side, k) in keep:
                continue
            stop = price * (1 - p.stop_bps / 10_000) if side is OrderSide.BUY else price * (1 + p.stop_bps / 10_000)
            await (ctx.buy if side is OrderSide.BUY else ctx.sell)(
                quote.symbol, p.qty, stop=stop, type=OrderType.LIMIT, price=price, tag=f"grid-{side}-{k}"
            )
