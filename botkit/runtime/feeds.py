"""Market data and the user stream: ccxt.pro WebSocket streams, each update validated and stamped with its
local receive time for the kill switch and the gate.

Streams, per symbol: `book:<symbol>` (top five levels), `mark:<symbol>` (mark, index, funding) and
`trades:<symbol>` (the bars the strategy sees are built from them); for the account: `orders` (the user
stream's order updates). A stream that fails (disconnect, refused reconnect) is retried with full-jitter
exponential backoff, and while it is down its data is polled over REST every `runtime.poll_seconds`, so
prices stay fresh. A stream that stays connected but goes silent is *not* papered over with REST: that
is what the kill switch's stale-feed trigger is for; but it is restarted (every connection dropped and
subscribed again) each time it has been silent for `silence_s`, since a stream can stay silent for good
after the client failed on one bad frame. A frame that does not validate is dropped and journalled; the
data it would have replaced simply ages (fail closed).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from botkit.clock import Clock
from botkit.config import RuntimeConfig
from botkit.domain import Book, MarkPrice, Order, Trade
from botkit.guards.killswitch import KillSwitch
from botkit.log import get_logger
from botkit.runtime import events
from botkit.runtime.journal import Journal
from botkit.runtime.market_state import MarketState
from botkit.runtime.strategy import Bar
from botkit.venue.errors import VenueDataError, VenueError
from botkit.venue.protocol import Venue

log = get_logger("botkit.feeds")
RETRY_BASE_S = 0.5
RESTART_GRACE_S = 1.0  # a watch failing this soon after our own restart is that restart, not an outage
QUIET_UP_S = 2.0  # a reconnected stream with a REST check on its return (the user stream) is up after this


class BarBuilder:
    """OHLCV bars of `seconds` on the exchange's clock, from trades; a bar is complete when a trade of a
    later bar arrives. Intervals without trades produce no bar."""

    def __init__(self, symbol: str, seconds: float) -> None:
        self.symbol, self.seconds = symbol, seconds
        self.span_ms = max(1, int(seconds * 1000))
        self.current: list[Any] | None = None  # [start_ms, open, high, low, close, volume, trades]

    def add(self, time_ms: int, price: Decimal, qty: Decimal) -> Bar | None:
        start = time_ms - time_ms % self.span_ms
        bar = self.current
        if bar is not None and start < bar[0]:
            return None  # a late trade of a bar already closed
        if bar is not None and start == bar[0]:
            bar[2], bar[3], bar[4] = max(bar[2], price), min(bar[3], price), price
            bar[5] += qty
            bar[6] += 1
            return None
        self.current = [start, price, price, price, price, qty, 1]
        return Bar(self.symbol, bar[0], self.seconds, *bar[1:]) if bar is not None else None


class StreamFailed(Exception):
    """A stream's connection or ccxt's handling of it failed (the cause is attached): reconnect."""


@dataclass
class Stream:
    name: str
    watch: Callable[[], Awaitable[Any]]
    handle: Callable[[Any], None]
    poll: Callable[[], Awaitable[Any]] | None = None  # REST fallback while the stream is down
    on_back: Callable[[], Any] | None = None  # after a reconnect (e.g. reconcile orders over REST)


class Feeds:
    def __init__(
        self,
        venue: Venue,
        symbols: list[str],
        *,
        clock: Clock,
        ks: KillSwitch,
        journal: Journal,
        market: MarketState,
        settings: RuntimeConfig,
        timeframe: float,
        silence_s: float,
        on_quote: Callable[[str], None],
        on_bar: Callable[[Bar], None],
        on_order: Callable[[Order, str], None],
        on_orders_back: Callable[[], Awaitable[None]],
    ) -> None:
        self.venue, self.symbols, self.clock, self.ks, self.journal = venue, symbols, clock, ks, journal
        self.market = market  # where every book and mark goes, stamped with its receive time
        self.silence_s = silence_s  # a watched stream silent this long is restarted
        self.restarts = 0
        self._restarted_at = float("-inf")
        self.heard: dict[str, float] = {}  # stream -> when it last delivered a frame (monotonic)
        self.settings = settings
        self.on_quote, self.on_bar, self.on_order = on_quote, on_bar, on_order
        self.bars = {s: BarBuilder(s, timeframe) for s in symbols}
        self.down: dict[str, float] = {}  # stream -> since (monotonic)
        self.frames = 0
        self.bad_frames = 0
        self.polls = 0
        self.streams: list[Stream] = []
        for s in symbols:
            self.streams += [
                Stream(f"book:{s}", partial(venue.watch_book, s), partial(self._book, s), partial(venue.fetch_book, s)),
                Stream(f"mark:{s}", partial(venue.watch_mark, s), partial(self._mark, s), partial(venue.fetch_mark, s)),
                Stream(f"trades:{s}", partial(venue.watch_trades, s), partial(self._trades, s)),
            ]
        self.streams.append(Stream("orders", venue.watch_orders, self._orders, on_back=on_orders_back))
        self.tape: Callable[[str, Any], None] | None = None  # a session recording: each update, as handled

    def handle(self, stream: Stream, update: Any) -> None:
        if self.tape is not None:
            self.tape(stream.name, update)
        stream.handle(update)

    def watched(self) -> list[str]:
        """The streams whose age the kill switch watches (trades and orders may be quiet for a long time)."""
        return [s.name for s in self.streams if s.name.startswith(("book:", "mark:"))]

    def ready(self) -> bool:
        return self.market.ready(self.symbols)

    def tasks(self) -> list[Coroutine[Any, Any, None]]:
        return [*(self._run(stream) for stream in self.streams), self._watchdog()]

    # ------------------------------------------------------------------------------ handlers

    def _book(self, symbol: str, book: Book) -> None:
        self.market.set_book(symbol, book)
        self.ks.feed(f"book:{symbol}", book.timestamp_ms, self.clock.time() * 1000)
        self.on_quote(symbol)

    def _mark(self, symbol: str, mark: MarkPrice) -> None:
        self.market.set_mark(symbol, mark)
        self.ks.feed(f"mark:{symbol}", mark.timestamp_ms, self.clock.time() * 1000)
        if mark.index is not None:
            self.ks.mark_index(symbol, mark.mark, mark.index)
        self.on_quote(symbol)

    def _trades(self, symbol: str, trades: list[Trade]) -> None:
        builder = self.bars[symbol]
        for trade in trades:
            bar = builder.add(trade.timestamp_ms, trade.price, trade.qty)
            if bar is not None:
                self.on_bar(bar)

    def _orders(self, orders: list[Order]) -> None:
        for order in orders:
            self.on_order(order, "stream")

    # ------------------------------------------------------------------------------- streams

    async def _run(self, stream: Stream) -> None:
        failures = 0
        while True:
            try:
                if stream.name in self.down and stream.on_back is not None:
                    await self._receive_or_come_back(stream)
                else:
                    await self.receive(stream)  # the common case: no task, no timer per frame
            except StreamFailed as failed:
                exc = failed.__cause__
                if self.clock.monotonic() - self._restarted_at < RESTART_GRACE_S:  # our own restart: subscribe
                    self.down.setdefault(stream.name, self.clock.monotonic())  # again at once, no REST fallback;
                    continue  # its first frame brings it back up (and reconciles the orders it may have missed)
                failures += 1
                if stream.name not in self.down:
                    self.down[stream.name] = self.clock.monotonic()
                    log.warning("feed.down", stream=stream.name, error=repr(exc)[:200])
                    fallback = "rest polling" if stream.poll is not None else "none"
                    self.journal.write(events.FeedChanged(stream=stream.name, status="down", error=repr(exc)[:300],
                                                          fallback=fallback))  # fmt: skip
                cap = float(self.settings.stream_retry_cap_s)
                await self._fall_back(stream, random.uniform(0, min(cap, RETRY_BASE_S * 2**failures)))
                continue
            if stream.name in self.down:
                await self._back_up(stream)
            failures = 0

    async def _receive_or_come_back(self, stream: Stream) -> None:
        """A user stream may be quiet for hours: reconnected and not failing for QUIET_UP_S, it is back, and
        what it missed meanwhile is learnt over REST now, not at its next message."""
        receiving = asyncio.ensure_future(self.receive(stream))
        sleeper = asyncio.ensure_future(self.clock.sleep(QUIET_UP_S))
        try:
            await asyncio.wait((receiving, sleeper), return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                await self._back_up(stream)
            await receiving
        finally:
            sleeper.cancel()
            receiving.cancel()  # only if this was cancelled itself: otherwise it is done

    async def _back_up(self, stream: Stream) -> None:
        since = self.down.pop(stream.name)
        down_s = self.clock.monotonic() - since
        log.info("feed.up", stream=stream.name, down_s=round(down_s, 3))
        self.journal.write(events.FeedChanged(stream=stream.name, status="up", down_s=down_s))
        if stream.on_back is not None:
            await stream.on_back()

    async def receive(self, stream: Stream) -> None:
        """Wait for the stream's next update and hand it on; a frame the venue could not read is journalled
        and skipped (the stream itself is fine). Raises StreamFailed when the stream failed; a handler's own
        error is a bug and propagates."""
        try:
            update = await stream.watch()
        except VenueDataError as exc:
            self.heard[stream.name] = self.clock.monotonic()
            self._bad_frame(stream, exc)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure of the socket or of ccxt's stream handling
            raise StreamFailed(stream.name) from exc
        self.heard[stream.name] = self.clock.monotonic()
        self.handle(stream, update)
        self.frames += 1

    async def _watchdog(self) -> None:
        """Restart the streams when a watched one that has delivered before has now been connected but silent
        for `silence_s`. A stream that never delivered is the kill switch's business (it trips), and a round
        in which the watchdog itself woke late is skipped: the event loop was stalled, not the stream."""
        period = self.silence_s / 4
        while True:
            due = self.clock.monotonic() + period
            await self.clock.sleep(period)
            now = self.clock.monotonic()
            if now - due > period:
                continue  # the loop was busy: frames may be waiting unread
            silent = [name for name in self.watched()
                      if name not in self.down and name in self.heard and now - self.heard[name] > self.silence_s]
            if silent and now - self._restarted_at >= self.silence_s:
                self._restarted_at = now
                self.restarts += 1
                dropped = self.venue.restart_streams(f"{', '.join(silent)} silent for {self.silence_s:g}s")
                log.warning("feed.silent", streams=silent, silent_s=self.silence_s, restarted=dropped)
                self.journal.write(events.FeedChanged(stream=",".join(silent), status="silent",
                                                      silent_s=self.silence_s, action="restarted the streams"))

    def _bad_frame(self, stream: Stream, exc: VenueDataError) -> None:
        self.bad_frames += 1
        log.warning("feed.bad_frame", stream=stream.name, error=str(exc))
        self.journal.write(events.FeedChanged(stream=stream.name, status="bad_frame", error=str(exc)))

    async def _fall_back(self, stream: Stream, seconds: float) -> None:
        """Until the next reconnect attempt: poll the stream's data over REST (if it has a REST twin)."""
        until = self.clock.monotonic() + seconds
        while True:
            if stream.poll is not None:
                try:
                    update = await stream.poll()
                    self.polls += 1
                    self.handle(stream, update)
                    self.ks.succeeded()
                except VenueDataError as exc:
                    self._bad_frame(stream, exc)
                except VenueError as exc:
                    self.ks.error(f"poll {stream.name}: {exc}")
            left = until - self.clock.monotonic()
            if left <= 0:
                return
            await self.clock.sleep(min(left, float(self.settings.poll_seconds)))
