"""What the bot's routine reads cost a minute, against what the exchange allows.

The account reader, the reconciler, the rules refresh and the stop keeper's check of the exchange's stops
read on timers the config sets; the feeds poll
over REST while a stream is down. Each read is priced by the venue (its real route and the limiter's own
cost table), so the figure is what the limiter will charge. Start-up and `botkit check` refuse settings
whose steady reads alone would use up the weight that reads may spend: the budget then runs dry, reads
queue without end and the account goes stale (a 0.5 s account refresh and a 1 s reconcile spend about
7,000 weight a minute on Binance against its 2,400).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from botkit.config import BotConfig
from botkit.venue.protocol import Venue

ACCOUNT_READS_PER_PERIOD = 2  # after fills the account is re-read early, at most twice a period


@dataclass(frozen=True)
class ReadPlan:
    """Request weight a minute by source, and the weight a minute routine reads may spend."""

    steady: dict[str, float]  # account, reconcile, rules, stops: always running
    polling: float  # added while every stream is down and polled over REST
    capacity: float | None  # None: the exchange has no weight budget botkit knows of

    @property
    def steady_total(self) -> float:
        return sum(self.steady.values())

    def problem(self) -> str | None:
        """One line when the steady reads alone exceed what reads may spend, else None."""
        if self.capacity is None or self.steady_total <= self.capacity:
            return None
        parts = ", ".join(f"{name} {weight:.0f}" for name, weight in self.steady.items())
        return (
            f"routine reads would spend {self.steady_total:.0f} request weight a minute ({parts}) but reads may "
            f"spend {self.capacity:.0f}: raise runtime.account_seconds, runtime.reconcile_seconds or "
            "stops.check_seconds, or trade fewer symbols"
        )

    def polling_warning(self) -> str | None:
        if self.capacity is None or self.steady_total + self.polling <= self.capacity:
            return None
        return (
            f"while every stream is down, REST polling adds {self.polling:.0f} weight a minute "
            f"({self.steady_total + self.polling:.0f} of {self.capacity:.0f}): reads will queue; "
            "raise runtime.poll_seconds to poll less often"
        )


async def plan_reads(config: BotConfig, venue: Venue, symbols: list[str]) -> ReadPlan:
    """Price every routine read. Needs the venue's markets (and on Binance its brackets) loaded: call it
    after the first account read."""
    rt = config.runtime

    async def weight(*reads: Callable[[], Awaitable[Any]]) -> float:
        return sum([await venue.price(read) for read in reads])

    account = await weight(venue.fetch_balance, partial(venue.fetch_positions, symbols))
    reconcile = await weight(
        venue.fetch_open_orders,
        *(partial(venue.fetch_margin_settings, s) for s in symbols),
        *(partial(venue.fetch_open_interest, s) for s in symbols),
        venue.fetch_clock_offset,
        partial(venue.fetch_funding_payments, 0),
    )
    rules = await weight(venue.load_markets, partial(venue.fetch_tiers, symbols))
    poll = await weight(*(partial(read, s) for s in symbols for read in (venue.fetch_book, venue.fetch_mark)))
    stops = await weight(*(partial(venue.fetch_open_stops, s) for s in symbols))
    rules_every = max(float(rt.rules_seconds), float(rt.reconcile_seconds))  # rules are re-read by the reconciler
    steady = {
        "account": account * ACCOUNT_READS_PER_PERIOD * 60 / float(rt.account_seconds),
        "reconcile": reconcile * 60 / float(rt.reconcile_seconds),
        "rules": rules * 60 / rules_every,
    }
    if config.stops.enabled:
        steady["stops"] = stops * 60 / float(config.stops.check_seconds)
    return ReadPlan(steady, poll * 60 / float(rt.poll_seconds), venue.read_capacity())
