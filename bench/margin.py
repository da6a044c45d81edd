"""Benchmark of the isolated-margin math: median and p99 per call of `max_safe_qty` and of
`liquidation_price` with BTCUSDT-shaped tiers (target: p99 under 50 µs each on a 2-core machine).

    python bench/margin.py            # full run
    python bench/margin.py --smoke    # a few hundred calls, to keep the benchmark working in CI
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from decimal import Decimal as D
from pathlib import Path

from _stats import measure

from botkit.margin import MarketRules, SizingPolicy, TradePlan, liquidation_price, max_safe_qty, tiers_from_ccxt

TIERS = tiers_from_ccxt(json.loads((Path(__file__).parent.parent / "config/tiers/BTCUSDT.json").read_text()))
RULES = MarketRules(step=D("0.001"), tick=D("0.1"), min_qty=D("0.001"), min_notional=D(100))
POLICY = SizingPolicy(
    risk_per_trade=D("0.01"),
    max_leverage=20,
    liq_buffer=D("0.005"),
    taker_fee=D("0.0005"),
    entry_fee=D("0.0005"),
    slippage=D("0.0005"),
    funding_rate=D("0.0001"),
    funding_intervals=3,
)
PLAN = TradePlan(side="long", entry=D(50000), stop=D(49000), leverage=10, equity=D(10000), available=D(10000))
# 20x with a stop the liquidation rule binds on in bracket 2 (the per-bracket closed form)
TIGHT = TradePlan(side="long", entry=D(50000), stop=D(47990), leverage=20, equity=D(10**6), available=D(10**6))

CASES: dict[str, Callable[[], object]] = {
    "max_safe_qty (risk-bound, typical)": lambda: max_safe_qty(PLAN, RULES, POLICY, TIERS),
    "max_safe_qty (liquidation-bound, bracket 2)": lambda: max_safe_qty(TIGHT, RULES, POLICY, TIERS),
    "liquidation_price long, bracket 1": lambda: liquidation_price("long", D("0.1"), D(50000), D(500), TIERS),
    "liquidation_price short, crosses bracket": lambda: liquidation_price("short", D(1), D(49000), D(2000), TIERS),
    "liquidation_price long, bracket 5": lambda: liquidation_price("long", D(400), D(50000), D(10**6), TIERS),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="few calls; checks the benchmark still runs")
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    calls = 300 if args.smoke else args.calls
    print(f"margin math, {calls} calls each{' (smoke)' if args.smoke else ''}; target p99 < 50 µs")
    print(f"{'case':45} {'median µs':>10} {'p99 µs':>10}")
    for name, fn in CASES.items():
        median, p99 = measure(fn, calls)
        print(f"{name:45} {median:10.1f} {p99:10.1f}")


if __name__ == "__main__":
    main()
