"""Replaying a recorded session (botkit.runtime.tape) through the same runtime.

The market data goes in as the session received it, in the same order and at the same (replayed) times,
through the same feed handlers; the account is botkit.sim's engine observing that data, as paper mode's
does. The runtime's own steps are put back where the recording places them among the data: the strategy
is handed its next news at each `deliver`, the account is read at each `read`, and each call that changes
the account (an order, a cancel, a stop) waits for the next `call` of its kind. So a replay of a paper
session under the same config makes the same intents, gets the same verdicts and the same fills as the
session journalled; under another config (`botkit replay --config`), whatever the other settings change
shows, and the replay goes on past it: a call the session made that the replay does not is skipped, a call
the replay makes that the session did not is made at the end.

The recording's own market rules, brackets, fees and starting balance are used (the `start` entry): the
replay is of that market. Left out, as in a backtest: the periodic reconciliation, the stream watchdog,
request-weight budgets, `botkit halt` / `resume`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from botkit.clock import ReplayClock
from botkit.config import BotConfig, effective_settings
from botkit.domain import Book, MarkPrice
from botkit.margin import MarketRules, Tier
from botkit.runtime import events
from botkit.runtime.bot import Bot
from botkit.runtime.journal import read_events
from botkit.runtime.strategy import Strategy
from botkit.runtime.tape import Entry, TapeError, book_of, mark_of, read_tape, trades_of
from botkit.venue.errors import VenueError
from botkit.venue.ids import ClientIds
from botkit.venue.paper import ObservedVenue
from botkit.venue.simulated import InProcess, call_key

QUIESCE_TURNS = 12  # event-loop turns after each entry: every task reacting to it runs until it waits
NO_REST = "a replay has no REST: the recording hands the market to the runtime"


class RecordedVenue(InProcess, ObservedVenue):
    """The engine's account on the recorded market; its account-changing calls wait for their turn."""

    def __init__(self, config: BotConfig, setup: dict[str, Any], *, start_ms: int) -> None:
        super().__init__(ClientIds(config.venue.client_id_prefix, exchange_id="binanceusdm", now_ms=start_ms),
                         "replay", balance=Decimal(str(setup["balance"])), queue=config.paper.queue)  # fmt: skip
        if "taker_fee" in setup:
            self.engine.taker_fee, self.engine.maker_fee = Decimal(setup["taker_fee"]), Decimal(setup["maker_fee"])
        self.rules = {s: _rules(r) for s, r in setup["rules"].items()}
        self.tiers = {s: tuple(_tier(t) for t in rows) for s, rows in setup["tiers"].items()}
        self.market_ids: dict[str, str] = setup.get("market_ids") or {s: s for s in self.rules}
        self.turns: dict[str, deque[tuple[str, asyncio.Future[None]]]] = defaultdict(deque)
        self.following = True  # False once the recording has ended: calls go at once

    async def fetch_tiers(self, symbols: Iterable[str]) -> dict[str, tuple[Tier, ...]]:
        tiers = {}
        for symbol in symbols:
            if symbol not in self.tiers:
                raise VenueError(f"{symbol}: the recording has no market of that name")
            tiers[symbol] = self.tiers[symbol]
            self.track_symbol(symbol, self.market_ids[symbol], self.rules[symbol], tiers[symbol])
        return tiers

    async def fetch_book(self, symbol: str) -> Book:
        raise VenueError(NO_REST)

    async def fetch_mark(self, symbol: str) -> MarkPrice:
        raise VenueError(NO_REST)

    async def _turn(self, call: str, *what: Any) -> None:
        if not self.following:
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.turns[call].append((call_key(what), turn))
        await turn

    def release(self, call: str, key: str | None = None) -> bool:
        """Let the waiting call of this kind go: the one that is the same call (`key`), else the oldest.
        False if none waits (a call whose task was cancelled no longer waits)."""
        waiting = self.turns.get(call)
        if not waiting:
            return False
        for gone in [w for w in waiting if w[1].done()]:
            waiting.remove(gone)
        if not waiting:
            return False
        chosen = next((w for w in waiting if w[0] == key), waiting[0])
        waiting.remove(chosen)
        chosen[1].set_result(None)
        return True

    def release_all(self) -> int:
        released = 0
        for call in list(self.turns):
            while self.release(call):
                released += 1
        return released


def _rules(r: dict[str, Any]) -> MarketRules:
    return MarketRules(step=Decimal(r["step"]), tick=Decimal(r["tick"]), min_qty=Decimal(r["min_qty"]),
                       max_qty=Decimal(r["max_qty"]) if r["max_qty"] is not None else None,
                       min_notional=Decimal(r["min_notional"]))  # fmt: skip


def _tier(t: dict[str, Any]) -> Tier:
    return Tier(Decimal(t["floor"]), Decimal(t["cap"]), Decimal(t["mmr"]), Decimal(t["cum"]), int(t["max_leverage"]))


@dataclass
class Replayed:
    """What a replay did, and where it could not follow the recording."""

    entries: int = 0
    journal: str = ""
    missed: dict[str, int] = field(default_factory=dict)  # what the session did that the replay did not
    extra: int = 0  # calls the replay made that the session did not (made at the end)
    unmatched: int = 0  # calls made in the session's place for one of the same kind that differed


class Replay:
    """One replay of a recording (see the module's docstring)."""

    def __init__(self, config: BotConfig, strategy: Strategy, recording: Path, journal: Path) -> None:
        self.entries = iter(read_tape(recording))
        self.setup = self._until_start()
        first = self._start
        self.clock = ReplayClock(first.mono, wall_offset=first.wall_ms / 1000 - first.mono)
        config = config.model_copy(update={"journal": config.journal.model_copy(update={"path": Path(journal)}),
                                           "symbols": list(self.setup["rules"])})  # fmt: skip
        self.venue = RecordedVenue(config, self.setup, start_ms=first.wall_ms)
        self.bot = Bot(config, strategy, clock=self.clock, venue=self.venue)
        self.bot.journal.wait_durable = False
        self.streams = {stream.name: stream for stream in self.bot.feeds.streams}
        self.tokens: asyncio.Queue[str] = asyncio.Queue()
        self.result = Replayed(journal=str(journal))

    def _until_start(self) -> dict[str, Any]:
        for entry in self.entries:
            if entry.kind == "start":
                self._start = entry
                return entry.data
        raise TapeError("the recording has no start entry: the session never began trading")

    async def run(self) -> Replayed:
        bot = self.bot
        bot.journal.write(events.SessionStarted(
            mode="replay", strategy=type(bot.strategy).__name__, symbols=bot.symbols,
            config=effective_settings(bot.config), params=bot.strategy.params.model_dump(mode="json"),
        ))  # fmt: skip
        bot.ks.exempt("account")  # read where the recording says, not on a timer
        bot.ks.inbox = None
        tasks: list[asyncio.Task[Any]] = []
        try:
            await bot.start_up()
            loop = asyncio.get_running_loop()
            tasks = [loop.create_task(bot.ks.run()), loop.create_task(bot.stops.run()),
                     loop.create_task(self._dispatch())]  # fmt: skip
            for entry in self.entries:
                self.clock.set(entry.mono)
                if entry.kind == "stop":
                    break  # the session's tasks ended here: so do these (a hook in flight is cut off too)
                await self._apply(entry)
                self.result.entries += 1
                await _quiesce()
            else:
                self._missed("the session's end (the recording stops short)")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.venue.following = False  # the shutdown's cancels go at once
            self.result.extra = self.venue.release_all()
            await _quiesce()
            await bot.shut_down()
        return self.result

    async def _apply(self, entry: Entry) -> None:
        kind, data = entry.kind, entry.data
        if kind == "book":
            book = book_of(data)
            self.venue.observe_book(book)
            self.streams[f"book:{book.symbol}"].handle(book)
        elif kind == "mark":
            mark = mark_of(data)
            self.venue.observe_mark(mark)
            self.streams[f"mark:{mark.symbol}"].handle(mark)
        elif kind == "trades":
            trades = trades_of(data)
            self.venue.observe_trades(data["symbol"], trades)
            self.streams[f"trades:{data['symbol']}"].handle(trades)
        elif kind == "orders":
            updates = self.venue.updates
            orders = [updates.get_nowait() for _ in range(min(int(data["count"]), updates.qsize()))]
            if len(orders) < int(data["count"]):
                self._missed("order updates", int(data["count"]) - len(orders))
            if orders:
                self.streams["orders"].handle(orders)
        elif kind == "read":
            await self.bot.reader.read()
        elif kind == "deliver":
            self.tokens.put_nowait(data.get("hook", "news"))
        elif kind == "call" and not self._release(data):
            await _quiesce()  # the replay may be a few turns behind
            if not self._release(data):
                self._missed(data["call"])

    def _release(self, data: dict[str, Any]) -> bool:
        """The recorded call's turn: the same call if the replay is making it (else the oldest of its kind,
        as a replay under another config makes its own)."""
        waiting = {key for key, turn in self.venue.turns.get(data["call"], ()) if not turn.done()}
        if waiting and data.get("key") not in waiting:
            self.result.unmatched += 1
        return self.venue.release(data["call"], data.get("key"))

    async def _dispatch(self) -> None:
        """The strategy's side: each piece of news where the recording delivered one."""
        dispatcher = self.bot.dispatcher
        while True:
            token = await self.tokens.get()
            if token == "on_start":
                dispatcher.watch(self.bot.feeds.watched())
                await dispatcher.hook("on_start")
                continue
            news = dispatcher.next_news()
            if news is None:
                self._missed("news")
                continue
            await dispatcher.deliver(news)

    def _missed(self, what: str, n: int = 1) -> None:
        self.result.missed[what] = self.result.missed.get(what, 0) + n


async def _quiesce() -> None:
    for _ in range(QUIESCE_TURNS):
        await asyncio.sleep(0)


# ------------------------------------------------------------------------------ the decisions


Decision = tuple[Any, ...]


def decisions(journal: Path) -> list[tuple[str, Decision]]:
    """The last session's intents, verdicts and fills from a journal, as comparable values (no ids, no
    times, no snapshot figures)."""
    rows: list[tuple[str, Decision]] = []
    for event in read_events(journal, ["session.started", "intent", "verdict", "fill"]):
        d = event.data
        if event.kind == "session.started":
            rows = []
        elif event.kind == "intent":
            intent = d["intent"]
            rows.append(("intent", (d["source"], event.symbol, intent.get("side"), intent.get("qty"),
                                    intent.get("type"), intent.get("price"), intent.get("stop"),
                                    intent.get("reduce_only"), intent.get("tag"))))  # fmt: skip
        elif event.kind == "verdict":
            rows.append(("verdict", (d["source"], event.symbol, d["decision"], d.get("qty"), d.get("price"),
                                     tuple(d.get("reasons", ())), d.get("revised", False))))  # fmt: skip
        else:
            rows.append(("fill", (event.symbol, d["side"], d["qty"], d.get("price"))))
    return rows


def changed_verdicts(before: Path, after: Path) -> list[str]:
    """Each verdict of the replay that differs from the session's, intent by intent, in one line each."""
    def pairs(journal: Path) -> list[tuple[Decision, Decision]]:
        rows, out, intent = decisions(journal), [], None
        for kind, value in rows:
            if kind == "intent":
                intent = value
            elif kind == "verdict" and intent is not None:
                out.append((intent, value))  # the verdict on the latest intent
        return out

    was, now = pairs(before), pairs(after)
    lines = []
    for n, (old, new) in enumerate(zip(was, now, strict=False), start=1):
        if old != new:
            (intent, verdict), (intent2, verdict2) = old, new
            what = f"{intent[0]} {intent[2]} {intent[1]} qty={intent[3] or '-'} stop={intent[6] or '-'} tag={intent[8]}"
            if intent != intent2:
                what += f" (now asked: {intent2[2]} {intent2[1]} qty={intent2[3] or '-'} stop={intent2[6] or '-'})"
            lines.append(f"#{n} {what}: was {verdict[2]} qty={verdict[3]} {list(verdict[5])} -> now "
                         f"{verdict2[2]} qty={verdict2[3]} {list(verdict2[5])}")  # fmt: skip
    if len(was) != len(now):
        lines.append(f"the session judged {len(was)} intents, the replay {len(now)}")
    return lines
