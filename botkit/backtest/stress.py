"""`botkit backtest --stress crowded`: the replayed history with a crowd of leveraged longs in it, the
emulator's `crowded-squeeze` model (botkit.sim.crowd) driven by the replayed mark instead of a synthetic one.

The crowd (the scenario's CrowdSpec: positions, leverage mix, entries spread around the first price) opens
at the replay's first path point. At every point after it, the mark, moved by what the crowd has done so
far, is checked against the crowd's liquidation prices; each liquidated position is a forced market sell
at that point (the history's points are minutes apart: a forced order's latency is inside one) that walks
a book, and moves the price by what it consumed: `impact_to_index` of the log move stays in the price
from then on (the index and the trade price), the rest is premium that halves at each point after. The
move can reach the next liquidation prices in the same point, and so on: a dip in the history becomes a
cascade where the crowd is leveraged enough.

The history has no book. The book is the scenario's, in proportion to the crowd: in `crowded-squeeze`,
the crowd's notional is 100 times what one 0.1 % of the price of depth holds (40 M USDT against a level
of 8,000 USDT every 0.002 %), so the depth per 0.1 % here is the crowd's notional / DEPTH_RATIO; only that
ratio, the leverage mix and the entries matter, not the crowd's size. The bot's own orders are filled on
the stressed prices as on the history's (the engine's usual spread and slippage), not on this book.
"""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal

from botkit.sim.crowd import Crowd, CrowdSpec, walk

DEPTH_RATIO = 100.0  # the crowd's notional / the book's depth per 0.1 % of the price (crowded-squeeze's)
PREMIUM_KEPT = 0.5  # of the forced sells' premium, what is still there a path point later
ROUNDS = 1000  # liquidation rounds within one point: far more than a crowd of positions can chain


class CrowdedStress:
    """One symbol's crowd over its replay (see the module's docstring)."""

    def __init__(self, spec: CrowdSpec, seed: int, symbol: str, price: float, mmr: float) -> None:
        self.crowd = Crowd(replace(spec, latency_steps=0), seed, symbol, price, mmr)
        self.share = spec.impact_to_index
        self.depth = spec.notional / DEPTH_RATIO  # USDT per 0.1 % of the price
        self.kept = 0.0  # the log move that stays (index and trade price)
        self.premium = 0.0  # the log move that reverts
        self.points = 0

    def move(self, trade: float, mark: float, index: float | None) -> tuple[float, float, float | None]:
        """The path point's trade price, mark and index with the crowd's doing applied."""
        self.points += 1
        self.premium *= PREMIUM_KEPT
        for _ in range(ROUNDS):
            shift = math.exp(self.kept + self.premium)
            self.crowd.cross(self.points, mark * shift)
            qty = self.crowd.due(self.points)
            if qty <= 0:
                break
            now = trade * shift
            # a sell walking levels of depth/price every 0.1 % below the price: at most a halving at once
            reached = max(walk([(Decimal(repr(now)), Decimal(0))], qty, self.depth / now, now * 0.001), now * 0.5)
            move = math.log(reached / now)
            self.kept += move * self.share
            self.premium += move * (1 - self.share)
        shift = math.exp(self.kept + self.premium)
        return trade * shift, mark * shift, index * math.exp(self.kept) if index is not None else None

    def summary(self) -> str:
        liquidated = self.crowd.liquidated
        notional = sum(qty * price for _, qty, price in liquidated)
        return (f"{len(liquidated)} of {len(liquidated) + len(self.crowd.open)} positions liquidated "
                f"({notional:,.0f} USDT at their liquidation prices); the price {math.exp(self.kept) - 1:+.2%} "
                "from the crowd at the end")
