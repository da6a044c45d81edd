"""Benchmark of the risk gate: median and p99 of `Gate.check` with every check enabled (target: p50 under
10 µs, p99 under 25 µs on a 2-core machine), the same with 1,000 open orders and 100 positions (target:
within 1.2× of the figure without them), and the accepted order with the float screen off (every check
through the exact Decimal sizing).

    python bench/gate.py            # full run
    python bench/gate.py --smoke    # a few hundred calls, to keep the benchmark working in CI
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

from _stats import measure

from botkit.config import BotConfig
from botkit.domain import Order, OrderIntent, OrderStatus, Position, Side, TradingState
from botkit.guards.gate import Gate, MarketView, Snapshot
from botkit.margin import MarketRules, tiers_from_ccxt

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
TIERS = tiers_from_ccxt(json.loads((Path(__file__).parent.parent / "config/tiers/BTCUSDT.json").read_text()))
RULES = MarketRules(step=D("0.001"), tick=D("0.1"), min_qty=D("0.001"), max_qty=D(1000), min_notional=D(100))
NOW = 1000.0


def market(mid: D) -> MarketView:
    bids = tuple((mid - D("0.1") * (i + 1), D(2)) for i in range(10))
    asks = tuple((mid + D("0.1") * i, D(2)) for i in range(10))
    return MarketView(RULES, TIERS, 10, mid, NOW, bids, asks, NOW)


# every check enabled: book depth floor, clamping off, generous rate budget so the check itself is timed
CONFIG = BotConfig(
    limits={"orders_per_10s": 10**9, "orders_per_minute": 10**9, "max_open_orders": 50, "max_positions": 3},
    killswitch={"min_book_depth_notional": 1000},
)
SNAPSHOT = Snapshot(
    now=NOW,
    state=TradingState.ACTIVE,
    markets={BTC: market(D(50000)), ETH: market(D(3000))},
    positions={ETH: Position(ETH, Side.SHORT, D(1), D(3000), D(3000), D(3300), "isolated", D(300), D(10), D(0))},
    open_orders=[  # resting on the other symbol: scanned for exposure, not part of the BTC long being sized
        Order(ETH, "buy", "limit", D("0.01"), D(2900 - i), f"bk{i}", str(i), OrderStatus.OPEN) for i in range(10)
    ],
    equity=D(10_000),
    available=D(9_000),
    peak_equity=D(10_500),
    day_start_equity=D(10_200),
)
LONG = OrderIntent(BTC, "buy", D("0.05"), stop=D(49000))

# a busy account: 100 positions (each its own market) and 1,000 resting orders spread over them
BUSY_CONFIG = BotConfig(
    limits={"orders_per_10s": 10**9, "orders_per_minute": 10**9, "max_open_orders": 1000, "max_positions": 200,
            "max_total_notional": 10**9},
    killswitch={"min_book_depth_notional": 1000},
)  # fmt: skip
OTHERS = [f"C{i}/USDT:USDT" for i in range(100)]
BUSY = replace(
    SNAPSHOT,
    markets={BTC: market(D(50000)), ETH: market(D(3000)), **{s: market(D(10)) for s in OTHERS}},
    positions={s: Position(s, Side.LONG, D(1), D(10), D(10), D(9), "isolated", D(1), D(10), D(0)) for s in OTHERS},
    open_orders=[Order(OTHERS[i % 100], "buy", "limit", D(1), D(9), f"o{i}", str(i), OrderStatus.OPEN)
                 for i in range(1000)],
)  # fmt: skip

CASES: dict[str, tuple[OrderIntent, Snapshot]] = {
    "market long, accepted": (LONG, SNAPSHOT),
    "same, 1,000 orders, 100 positions": (LONG, BUSY),
    "limit long, accepted": (replace(LONG, type="limit", price=D("49950.05")), SNAPSHOT),
    "market long, rejected on risk": (replace(LONG, qty=D("0.5")), SNAPSHOT),
    "adding to a position": (OrderIntent(ETH, "sell", D("0.5"), stop=D(3050)), SNAPSHOT),
    "reduce-only shrink": (OrderIntent(ETH, "buy", None, reduce_only=True), SNAPSHOT),
    "no qty: largest safe": (replace(LONG, qty=None), SNAPSHOT),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="few calls; checks the benchmark still runs")
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    calls = 300 if args.smoke else args.calls
    print(f"gate.check, {calls} calls each{' (smoke)' if args.smoke else ''}; target p50 ≤ 10 µs, p99 ≤ 25 µs")
    print(f"{'case':36} {'verdict':15} {'median µs':>10} {'p99 µs':>10}")
    medians = {}
    for name, (intent, snap) in [*CASES.items(), ("market long, screen off", (LONG, SNAPSHOT))]:
        gate = Gate(BUSY_CONFIG if snap is BUSY else CONFIG)
        gate.screen = "screen off" not in name
        verdict = gate.check(intent, snap)
        medians[name], p99 = measure(lambda g=gate, i=intent, s=snap: g.check(i, s), calls)
        print(f"{name:36} {verdict.decision.value:15} {medians[name]:10.1f} {p99:10.1f}")
    ratio = medians["same, 1,000 orders, 100 positions"] / medians["market long, accepted"]
    print(f"1,000 open orders and 100 positions: {ratio:.2f}× the median without them (target ≤ 1.2×)")


if __name__ == "__main__":
    main()
