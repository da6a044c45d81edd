"""Metrics: the figures an operator graphs, as a Prometheus endpoint (`runtime.metrics_port`).

Two sources, both read without touching the trading path's locks or awaiting anything:
- counters of what happened, counted from the journal's rows as they are written (the journal's listener
  hook): a counter here and a count of the journal's rows agree by construction;
- gauges of how things stand, read from the running bot when Prometheus scrapes: trading state, equity,
  positions with their notional and liquidation distance, stop coverage, feed ages, the rate limiter's
  budgets and its 429/418 counts, event-loop lag and the journal's commit time.

Names follow Prometheus conventions: `botkit_` prefix, base units in the name (`_seconds`, `_usdt`,
`_ratio`), `_total` on counters.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from botkit.domain import OrderStatus, TradingState
from botkit.guards.market_risk import SHOWN
from botkit.runtime import events

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LAG_PROBE_S = 0.25  # how often the event loop's lag is measured
FINAL = {s.value for s in OrderStatus if s.final}
SEEN_FINAL = 50_000  # client ids remembered as finished (an order reported final twice counts once)


class Counts:
    """What the journal's rows add up to (the listener; one dict update a row)."""

    def __init__(self) -> None:
        self.intents: Counter[str] = Counter()  # by source
        self.verdicts: Counter[str] = Counter()  # by decision
        self.rejections: Counter[str] = Counter()  # by reason code
        self.orders: Counter[str] = Counter()  # by final state
        self.fills: Counter[tuple[str, str]] = Counter()  # by (symbol, side)
        self.trips: Counter[str] = Counter()  # by trigger
        self.guard_cuts: Counter[str] = Counter()  # by symbol
        self.stop_events: Counter[str] = Counter()  # by action
        self.alert_failures: Counter[str] = Counter()  # by destination
        self._finished: dict[str, None] = {}  # insertion-ordered set of finished client ids

    def offer(self, kind: str, symbol: str | None, client_id: str | None, data: dict[str, Any]) -> None:
        if kind == events.IntentSeen.KIND:
            self.intents[data.get("source") or "strategy"] += 1
        elif kind == events.VerdictGiven.KIND:
            self.verdicts[str(data.get("decision"))] += 1
            for reason in data.get("reasons") or ():
                self.rejections[str(reason)] += 1
        elif kind == events.OrderReported.KIND:
            status = str(getattr(data.get("status"), "value", data.get("status")))
            if status in FINAL and client_id is not None and client_id not in self._finished:
                self._finished[client_id] = None
                if len(self._finished) > SEEN_FINAL:
                    del self._finished[next(iter(self._finished))]
                self.orders[status] += 1
        elif kind == events.Filled.KIND:
            self.fills[(symbol or "", str(getattr(data.get("side"), "value", data.get("side"))))] += 1
        elif kind == events.SwitchChanged.KIND and data.get("event") == "tripped":
            self.trips[str(data.get("trigger"))] += 1
        elif kind == events.GuardCut.KIND:
            self.guard_cuts[symbol or ""] += 1
        elif kind == events.StopChanged.KIND:
            self.stop_events[str(data.get("action"))] += 1
        elif kind == events.AlertFailed.KIND:
            self.alert_failures[str(data.get("destination"))] += 1


class LoopLag:
    """How late the event loop runs a callback it was asked to run on time (a busy loop delays orders)."""

    def __init__(self) -> None:
        self.last = 0.0
        self.worst = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_PROBE_S
            await asyncio.sleep(LAG_PROBE_S)
            self.last = max(0.0, loop.time() - due)
            self.worst = max(self.worst, self.last)


class BotCollector(Collector):
    """Every metric, built at scrape time from the counts and the bot's state."""

    def __init__(self, bot: Any, counts: Counts, lag: LoopLag) -> None:
        self.bot, self.counts, self.lag = bot, counts, lag

    def collect(self) -> Iterator[Metric]:
        yield from self._counted()
        yield from self._state()
        yield from self._plumbing()

    def _counted(self) -> Iterator[Metric]:
        c = self.counts
        for name, doc, label, values in (
            ("intents", "Intents seen by the gate, by source.", "source", c.intents),
            ("verdicts", "Gate verdicts, by decision.", "decision", c.verdicts),
            ("rejections", "Reason codes the gate gave, one per code of each verdict.", "reason", c.rejections),
            ("orders", "Orders that reached a final state, by that state.", "state", c.orders),
            ("kill_switch_trips", "Kill-switch trips, by trigger.", "trigger", c.trips),
            ("liquidation_guard_cuts", "Reduce-only slices the liquidation guard cut, by symbol.", "symbol",
             c.guard_cuts),
            ("stop_events", "What became of the exchange-held stops, by action.", "action", c.stop_events),
            ("alert_failures", "Alert messages given up on, by destination.", "destination", c.alert_failures),
        ):  # fmt: skip
            family = CounterMetricFamily(f"botkit_{name}", doc, labels=[label])
            for key, n in sorted(values.items()):
                family.add_metric([key], n)
            yield family
        fills = CounterMetricFamily("botkit_fills", "Fills, by symbol and side.", labels=["symbol", "side"])
        for (symbol, side), n in sorted(c.fills.items()):
            fills.add_metric([symbol, side], n)
        yield fills

    def _state(self) -> Iterator[Metric]:
        status = self.bot.status()
        state = GaugeMetricFamily("botkit_trading_state", "1 for the trading state the bot is in.", labels=["state"])
        for s in TradingState:
            state.add_metric([s.value], 1.0 if status["state"] is s else 0.0)
        yield state
        tripped = GaugeMetricFamily("botkit_trip_active", "1 for each trigger in force.", labels=["trigger"])
        for trigger in sorted(status["trips"]):
            tripped.add_metric([trigger], 1.0)
        yield tripped
        if status["equity"] is not None:
            yield GaugeMetricFamily("botkit_equity_usdt", "Account equity.", value=float(status["equity"]))
        yield GaugeMetricFamily("botkit_open_orders", "Open orders of this bot.", value=status["open_orders"])
        notional = GaugeMetricFamily("botkit_position_notional_usdt", "Position notional at the mark.",
                                     labels=["symbol", "side"])  # fmt: skip
        distance = GaugeMetricFamily("botkit_liquidation_distance_ratio",
                                     "|mark - liquidation price| / mark, per position.", labels=["symbol"])  # fmt: skip
        pnl = GaugeMetricFamily("botkit_unrealized_pnl_usdt", "Unrealized PnL at the mark.", labels=["symbol"])
        covered = 0
        for p in status["positions"]:
            notional.add_metric([p["symbol"], p["side"]], float(p["notional"]))
            if p["distance"] is not None:
                distance.add_metric([p["symbol"]], float(p["distance"]))
            if p["pnl"] is not None:
                pnl.add_metric([p["symbol"]], float(p["pnl"]))
            covered += bool(p["stop_held"])
        yield from (notional, distance, pnl)
        held = len(status["positions"])
        yield GaugeMetricFamily("botkit_stop_coverage_ratio", "Positions with a stop on the exchange / positions "
                                "(1 when flat).", value=covered / held if held else 1.0)  # fmt: skip
        warning = GaugeMetricFamily("botkit_market_risk", "The early warning's figures per symbol (annualised "
                                    "volatility and funding, funding z-score, basis, volatility ratio, open "
                                    "interest).",
                                    labels=["symbol", "figure"])  # fmt: skip
        for symbol, figures in sorted(status["market_risk"].items()):
            for figure in SHOWN:
                if figures[figure] is not None:
                    warning.add_metric([symbol, figure], figures[figure])
        yield warning
        ages = GaugeMetricFamily("botkit_feed_age_seconds", "Age of the newest data per stream.", labels=["stream"])
        for stream, age in status["feed_ages"].items():
            if age is not None:
                ages.add_metric([stream], age)
        yield ages

    def _plumbing(self) -> Iterator[Metric]:
        limiter = getattr(self.bot.venue, "limiter", None)
        if limiter is not None:
            usage = limiter.usage()["budgets"]
            used = GaugeMetricFamily("botkit_rate_budget_used", "Spent in the budget's window (weight or orders).",
                                     labels=["budget"])  # fmt: skip
            left = GaugeMetricFamily("botkit_rate_budget_remaining", "Left in the budget's window, within the "
                                     "client-side limit.", labels=["budget"])  # fmt: skip
            for name, figures in sorted(usage.items()):
                used.add_metric([name], figures["used"])
                left.add_metric([name], max(0.0, figures["limit"] - figures["used"]))
            yield used
            yield left
            yield CounterMetricFamily("botkit_http_429", "HTTP 429 answers (rate limited).", value=limiter.rate_limited)
            yield CounterMetricFamily("botkit_http_418", "HTTP 418 answers (IP banned).", value=limiter.bans)
        yield GaugeMetricFamily("botkit_event_loop_lag_seconds", "How late the event loop ran the last probe.",
                                value=self.lag.last)  # fmt: skip
        yield GaugeMetricFamily("botkit_event_loop_lag_max_seconds", "The worst lag seen since start.",
                                value=self.lag.worst)  # fmt: skip
        journal = self.bot.journal
        yield CounterMetricFamily("botkit_journal_rows", "Journal rows committed.", value=journal.written)
        yield CounterMetricFamily("botkit_journal_commits", "Journal transactions committed.", value=journal.commits)
        yield CounterMetricFamily("botkit_journal_commit_seconds", "Time spent committing the journal (over "
                                  "botkit_journal_commits_total: the write latency).", value=journal.commit_seconds)
        yield GaugeMetricFamily("botkit_journal_failing", "1 while the journal cannot write.",
                                value=0.0 if journal.failed is None else 1.0)  # fmt: skip


class Metrics:
    """One bot's registry: feed `counts.offer` from the journal, run `lag.run`, serve `render()`."""

    def __init__(self, bot: Any) -> None:
        self.counts = Counts()
        self.lag = LoopLag()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BotCollector(bot, self.counts, self.lag))

    def render(self) -> bytes:
        return generate_latest(self.registry)
