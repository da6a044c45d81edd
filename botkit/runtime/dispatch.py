"""Dispatch: news to the strategy's hooks, one at a time, in order. Quotes coalesce (the strategy sees the
latest book top and mark, not every frame). A hook that fails in any way (an exception, and also a
CancelledError, SystemExit or KeyboardInterrupt it raises itself) is journalled and handled per
`runtime.on_strategy_error`: skip the event, or halt. Dispatch itself keeps running: the guardrails and
the stops the strategy manages must not die with one bad hook.
"""

from __future__ import annotations

import asyncio
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from botkit.clock import Clock
from botkit.config import BotConfig
from botkit.guards.killswitch import KillSwitch
from botkit.log import get_logger
from botkit.runtime import events
from botkit.runtime.journal import Journal
from botkit.runtime.market_state import MarketState
from botkit.runtime.news import (
    BarClosed,
    Denied,
    Filled,
    News,
    OrderChanged,
    QuoteMoved,
    StateChanged,
    Stats,
    StopTriggered,
)
from botkit.runtime.strategy import Context, Strategy, located

log = get_logger("botkit.dispatch")
HOOKS = ("on_start", "on_quote", "on_bar", "on_fill", "on_order", "on_rejected", "on_state", "on_stop_triggered",
         "on_stop")  # fmt: skip


class Dispatcher:
    """The strategy's side of the news: a queue and the hooks."""

    def __init__(self, config: BotConfig, *, clock: Clock, strategy: Strategy, ctx: Context, journal: Journal,
                 ks: KillSwitch, market: MarketState, stats: Stats) -> None:  # fmt: skip
        self.config, self.clock, self.strategy, self.ctx = config, clock, strategy, ctx
        self.journal, self.ks, self.market, self.stats = journal, ks, market, stats
        self._queue: deque[News] = deque()
        self._ready = asyncio.Event()
        self._pending_quotes: set[str] = set()
        # the hooks the strategy's class overrides: the base class's are no-ops, not worth a coroutine each
        self.tape: Callable[..., None] | None = None  # a session recording: where each delivery fell
        self._overridden = {name for name in HOOKS if getattr(type(strategy), name) is not getattr(Strategy, name)}

    def put(self, news: News) -> None:
        if isinstance(news, QuoteMoved):
            if news.symbol in self._pending_quotes:
                return  # quotes coalesce: the strategy sees the latest
            self._pending_quotes.add(news.symbol)
        self._queue.append(news)
        self._ready.set()

    async def run(self, symbols: list[str], watched: list[str]) -> None:
        await self._await_first_data(symbols, watched)
        if self.tape is not None:
            self.tape("deliver", {"hook": "on_start"})
        await self.hook("on_start")
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            await self.deliver(self._queue.popleft())

    async def drain(self) -> bool:
        """Deliver the news queued so far, now (a backtest's driver, between path points); whether any was."""
        delivered = False
        while self._queue:
            await self.deliver(self._queue.popleft())
            delivered = True
        return delivered

    def next_news(self) -> News | None:
        return self._queue.popleft() if self._queue else None

    async def deliver(self, news: News) -> None:
        if self.tape is not None:
            self.tape("deliver")
        self.stats.dispatched += 1
        match news:
            case QuoteMoved(symbol):
                self._pending_quotes.discard(symbol)
                await self.hook("on_quote", self.market.quote(symbol))
            case BarClosed(bar):
                await self.hook("on_bar", bar)
            case OrderChanged(order):
                await self.hook("on_order", order)
            case Filled(fill):
                await self.hook("on_fill", fill)
            case Denied(verdict):
                await self.hook("on_rejected", verdict)
            case StateChanged(state, event):
                await self.hook("on_state", state, event)
            case StopTriggered(stop):
                await self.hook("on_stop_triggered", stop)

    async def _await_first_data(self, symbols: list[str], watched: list[str]) -> None:
        """Strategies start once every price has arrived; a stream that never delivers is then watched
        anyway, so it trips the stale-feed trigger instead of being ignored."""
        limit = max(10.0, 3 * float(self.config.killswitch.stale_feed_seconds))
        deadline = self.clock.monotonic() + limit
        while not self.market.ready(symbols) and self.clock.monotonic() < deadline:
            await self.clock.sleep(0.05)
        self.watch(watched)

    def watch(self, streams: list[str]) -> None:
        """From now on the kill switch holds these streams to their age limit."""
        for stream in streams:
            if stream not in self.ks.streams:
                self.ks.watch(stream)

    async def hook(self, name: str, *args: Any) -> None:
        if name not in self._overridden and name not in vars(self.strategy):
            return  # the base class's no-op
        try:
            await getattr(self.strategy, name)(self.ctx, *args)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the runtime is cancelling dispatch: a real cancellation
            self._failed(name, exc)  # the strategy raised it itself
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            self._failed(name, exc)

    def _failed(self, hook: str, exc: BaseException) -> None:
        action = self.config.runtime.on_strategy_error
        self.stats.strategy_errors += 1
        error, where = f"{type(exc).__name__}: {exc}", located(exc)
        detail = "".join(traceback.format_exception(exc))
        log.error("strategy.error", hook=hook, error=error, at=where, action=action, traceback=detail)
        self.journal.write(events.StrategyFailed(hook=hook, error=error, action=action, where=where,
                                                 traceback=detail))  # fmt: skip
        if action == "halt":
            self.ks.strategy_failed(f"hook={hook} error={error}")
