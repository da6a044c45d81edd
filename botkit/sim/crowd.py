"""A crowd of leveraged positions for the emulator's market (the `crowded-squeeze` scenario): a population of
synthetic isolated positions, drawn from a seed, that the exchange liquidates when the mark reaches their
liquidation prices. Each liquidation is a market order that reaches the book `latency_steps` after the
mark crossed, walks the book's bids (or asks), and moves the price by what it consumed; that move can
reach the next positions' liquidation prices. So a cascade's size and speed come from the book's depth,
the leverage mix and the latency, not from a scripted path.

- **positions**: `positions` of them, `side` (the crowded side), entries at or below the price for longs
  (above for shorts: they bought on the way in; half-normal in log, `entry_spread`; one that would already
  be past its liquidation opens at the price),
  notional `notional` in all (each an exponential share: a few large ones), leverage drawn from
  `leverages` (leverage, weight). Liquidation price, one-way isolated with the symbol's first bracket:
  long L = E·(1 − 1/lev + mmr), short L = E·(1 + 1/lev − mmr).
- **impact**: a forced sell of Q walks the moving bid levels, then beyond them a deep book of the same
  density as the emulator's fixed levels (a level every 10 ticks, 4 × the symbol's depth each), both
  thinned by the scenario's `depth_mult`; the price it reached is the impact. `impact_to_index` of the log
  move goes into the index (the spot markets follow), the rest into the perpetual's premium, which
  reverts (the mark, smoothed, follows the mid).
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class CrowdSpec:
    """The crowd's make-up (see the module's docstring); part of a Scenario."""

    positions: int = 400
    notional: float = 40_000_000.0  # USDT, all positions together
    side: str = "long"
    leverages: tuple[tuple[int, float], ...] = ((10, 0.25), (20, 0.35), (50, 0.25), (100, 0.15))
    entry_spread: float = 0.004  # stdev of log(entry / start price)
    latency_steps: int = 2  # from the mark crossing to the forced order reaching the book
    impact_to_index: float = 0.6


@dataclass
class _Position:
    qty: float
    entry: float
    leverage: int
    liquidation: float


class Crowd:
    """One symbol's crowd: who is liquidated when, and the forced orders due at each step."""

    def __init__(self, spec: CrowdSpec, seed: int, symbol: str, price: float, mmr: float) -> None:
        self.spec = spec
        rng = random.Random(f"{seed}:{symbol}:crowd")
        levs, weights = zip(*spec.leverages, strict=True)
        shares = [rng.expovariate(1.0) for _ in range(spec.positions)]
        scale = spec.notional / sum(shares) if shares else 0.0
        sign = 1 if spec.side == "long" else -1
        self.open: list[_Position] = []
        for share in shares:
            leverage = rng.choices(levs, weights)[0]
            entry = price * math.exp(-sign * abs(rng.gauss(0.0, spec.entry_spread)))  # bought on the way in
            # one-way isolated, first bracket: long E·(1 − 1/lev + mmr), short E·(1 + 1/lev − mmr)
            liquidation = entry * (1 - sign / leverage + sign * mmr)
            if (price - liquidation) * sign <= 0:  # it would be gone before the start: opened at the price
                entry, liquidation = price, price * (1 - sign / leverage + sign * mmr)
            self.open.append(_Position(share * scale / entry, entry, leverage, liquidation))
        # nearest to the price first: a long's highest liquidation price, a short's lowest
        self.open.sort(key=lambda p: -sign * p.liquidation)
        self.sign = sign
        self.pending: deque[tuple[int, float]] = deque()  # (step due, qty)
        self.liquidated: list[tuple[int, float, float]] = []  # (step, qty, liquidation price)

    def cross(self, step: int, mark: float) -> None:
        """Every position the mark has reached is liquidated: its forced order is due `latency_steps` on."""
        while self.open and (mark - self.open[0].liquidation) * self.sign <= 0:
            position = self.open.pop(0)
            self.pending.append((step + self.spec.latency_steps, position.qty))
            self.liquidated.append((step, position.qty, position.liquidation))

    def open_qty(self) -> float:
        """The crowd's positions not liquidated yet, in base units (part of the open interest)."""
        return sum(p.qty for p in self.open)

    def due(self, step: int) -> float:
        """The forced orders' quantity that reaches the book at this step."""
        qty = 0.0
        while self.pending and self.pending[0][0] <= step:
            qty += self.pending.popleft()[1]
        return qty


def walk(levels: list[tuple[Decimal, Decimal]], qty: float, beyond_qty: float, beyond_gap: float) -> float:
    """The price a market order of `qty` reaches walking `levels` (best first), and beyond them levels of
    `beyond_qty` every `beyond_gap` in price (away from the top)."""
    if not levels:
        return 0.0
    left, price = qty, float(levels[0][0])
    for level_price, level_qty in levels:
        price = float(level_price)
        left -= float(level_qty)
        if left <= 0:
            return price
    direction = -1.0 if len(levels) < 2 or levels[1][0] < levels[0][0] else 1.0
    return price + direction * beyond_gap * math.ceil(left / beyond_qty)
