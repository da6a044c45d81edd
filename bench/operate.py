"""Benchmark of what operating a bot costs the trading path: the journal's `record` of a row with no watcher,
and with the panel's recent events, the metrics' counts and the alerts' queue listening (what every row of a
running bot with metrics and alerts pays); and one Prometheus scrape of a bot holding positions.

    python bench/operate.py            # full run
    python bench/operate.py --smoke    # a few hundred rows, to keep the benchmark working in CI
"""

from __future__ import annotations

import argparse
import tempfile
from collections import deque
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace

from _stats import measure

from botkit.config import AlertsConfig
from botkit.domain import Side, TradingState
from botkit.guards.market_risk import Figures
from botkit.operate.alerts import Alerts
from botkit.operate.metrics import Metrics
from botkit.runtime import events
from botkit.runtime.journal import Journal
from botkit.runtime.news import Stats

FILL = events.Filled(symbol="BTC/USDT:USDT", client_id="bk-1", side="buy", qty=D("0.003"), price=D("50000.1"))
VERDICT = events.VerdictGiven(symbol="BTC/USDT:USDT", source="strategy", decision="REJECT", reasons=["RISK_BUDGET"])
TRIP = events.SwitchChanged(event="tripped", trigger="drawdown", state="HALTED", figures="drawdown=0.06 max=0.05")


def bot_like(journal: Journal, positions: int) -> SimpleNamespace:
    """What the metrics read of a bot: its status, its venue's limiter (none here) and its journal."""
    held = [{"symbol": f"S{i:02d}/USDT:USDT", "side": Side.LONG.value, "qty": D("1.5"), "notional": D("1500.3"),
             "distance": D("0.08"), "pnl": D("-3.2"), "stop_held": True} for i in range(positions)]  # fmt: skip
    figures = Figures(sigma=1e-4, vol_annual=0.56, vol_interval=0.017, funding_rate=1e-4, funding_annual=0.11,
                      funding_z=0.4, basis=0.0003, basis_drift=0.0001, vol_ratio=1.1, open_interest=80_000.0,
                      oi_change=0.02).as_dict()  # every early-warning figure known: the most a scrape writes
    status = {"state": TradingState.ACTIVE, "trips": {}, "equity": D(10_000), "open_orders": 20, "positions": held,
              "feed_ages": {f"mark:S{i:02d}/USDT:USDT": 0.2 for i in range(positions)}, "stats": Stats(),
              "market_risk": {f"S{i:02d}/USDT:USDT": figures for i in range(positions)}}  # fmt: skip
    return SimpleNamespace(status=lambda: status, venue=SimpleNamespace(), journal=journal)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    rows = 300 if args.smoke else 50_000
    with tempfile.TemporaryDirectory() as folder:
        journal = Journal(Path(folder) / "bench.sqlite", "bench")
        try:
            for name, event in (("fill", FILL), ("verdict", VERDICT), ("trip", TRIP)):
                journal.listeners = []
                bare = measure(lambda e=event: journal.write(e), rows)
                metrics = Metrics(bot_like(journal, 0))
                alerts = Alerts(AlertsConfig(webhook_url="http://127.0.0.1:9/hook", queue_size=10**6), "bench")
                recent: deque[object] = deque(maxlen=30)  # as the bot's panel keeps them
                journal.listeners = [lambda k, s, c, d, r=recent: r.append(d), metrics.counts.offer, alerts.offer]
                watched = measure(lambda e=event: journal.write(e), rows)
                print(f"journal row ({name}): {bare[0]:.2f} µs p50 ({bare[1]:.2f} p99) alone; "
                      f"{watched[0]:.2f} µs p50 ({watched[1]:.2f} p99) with the panel, metrics and alerts listening "
                      f"(+{watched[0] - bare[0]:.2f} µs)")  # fmt: skip
            for positions in (1, 50):
                metrics = Metrics(bot_like(journal, positions))
                scrape = measure(metrics.render, 30 if args.smoke else 2_000)
                print(f"scrape with {positions} positions: {scrape[0] / 1000:.2f} ms p50 ({scrape[1] / 1000:.2f} p99), "
                      f"{len(metrics.render()) / 1024:.1f} KiB")  # fmt: skip
        finally:
            journal.close()


if __name__ == "__main__":
    main()
