"""A session recording (`botkit run --record DIR`): the market data the bot saw, each update stamped with
its receive time, in the order the runtime handled it, written to `DIR/tape.jsonl`.

One JSON array per line: `[mono, wall_ms, kind, data]`. Market data (what the feeds handed on, after
validation; from the streams or, while one was down, from its REST poll):

    book    {"symbol", "bids", "asks", "time_ms"}          the top of the book
    mark    {"symbol", "mark", "index", "funding_rate", "next_funding_ms", "time_ms"}
    trades  {"symbol", "trades": [[price, qty, time_ms], ...]}
    orders  {"count"}                                       the user stream delivered this many order updates

and where the runtime's own steps fell among them, so that a replay can put each at the same place:

    start    the session's rules and brackets, once trading began (everything before it is start-up)
    deliver  the strategy was handed its next piece of news
    read     the account was read
    call     {"call", "key"}: a call that changes the account (create_order, cancel_order, place_stop, ...)
             was made, and what it was: recorded by a simulated account only (paper mode), whose fills the
             replay reproduces
    stop     {"reason"}: the session's tasks ended (what follows is its shutdown)

Decimals are written as exact strings. Lines are buffered and written every `FLUSH_EVERY` entries and at
the end: a killed process loses at most those.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from botkit.clock import Clock, SystemClock
from botkit.domain import Book, MarkPrice, Trade
from botkit.runtime.journal import encode

FILE = "tape.jsonl"
FLUSH_EVERY = 500


class TapeError(Exception):
    """A recording that cannot be written or read: one line."""


class Tape:
    """The recording of one session (see the module's docstring)."""

    def __init__(self, folder: Path, clock: Clock | None = None) -> None:
        """`clock`: the bot's (the bot sets it when given the tape)."""
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.path = folder / FILE
            self._file = self.path.open("x", encoding="utf-8")  # never over an earlier session's recording
        except FileExistsError:
            raise TapeError(f"{folder / FILE} exists: record each session into its own folder") from None
        except OSError as exc:
            raise TapeError(f"{folder}: cannot record there: {exc.strerror}") from None
        self.clock: Clock = clock or SystemClock()
        self._lines: list[str] = []
        self.entries = 0

    def record(self, kind: str, data: dict[str, Any] | None = None) -> None:
        self._lines.append(encode([self.clock.monotonic(), int(self.clock.time() * 1000), kind, data or {}]))
        self.entries += 1
        if len(self._lines) >= FLUSH_EVERY:
            self.flush()

    def update(self, stream: str, update: Any) -> None:
        """A feed's update, as its handler received it."""
        if isinstance(update, Book):
            self.record("book", {"symbol": update.symbol, "bids": update.bids, "asks": update.asks,
                                 "time_ms": update.timestamp_ms})  # fmt: skip
        elif isinstance(update, MarkPrice):
            self.record("mark", {"symbol": update.symbol, "mark": update.mark, "index": update.index,
                                 "funding_rate": update.funding_rate, "next_funding_ms": update.next_funding_ms,
                                 "time_ms": update.timestamp_ms})  # fmt: skip
        elif stream == "orders":
            self.record("orders", {"count": len(update)})
        else:
            symbol = stream.partition(":")[2]
            self.record("trades", {"symbol": symbol, "trades": [[t.price, t.qty, t.timestamp_ms] for t in update]})

    def flush(self) -> None:
        if self._lines and not self._file.closed:
            self._file.write("\n".join(self._lines) + "\n")
            self._file.flush()
        self._lines = []

    def close(self) -> None:
        self.flush()
        self._file.close()


# ---------------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Entry:
    mono: float
    wall_ms: int
    kind: str
    data: dict[str, Any]


def read_tape(folder: Path) -> Iterator[Entry]:
    path = Path(folder) / FILE
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise TapeError(f"{path}: no recording there ({exc.strerror})") from None
    with handle:
        for n, line in enumerate(handle, start=1):
            try:
                mono, wall_ms, kind, data = json.loads(line)
            except ValueError:
                raise TapeError(f"{path}: line {n} is not a recording entry") from None
            yield Entry(float(mono), int(wall_ms), str(kind), data)


def book_of(data: dict[str, Any]) -> Book:
    return Book(data["symbol"], tuple((Decimal(p), Decimal(q)) for p, q in data["bids"]),
                tuple((Decimal(p), Decimal(q)) for p, q in data["asks"]), data["time_ms"])  # fmt: skip


def mark_of(data: dict[str, Any]) -> MarkPrice:
    def dec(value: Any) -> Decimal | None:
        return Decimal(value) if value is not None else None

    mark = dec(data["mark"])
    assert mark is not None
    return MarkPrice(data["symbol"], mark, dec(data["index"]), dec(data["funding_rate"]), data["next_funding_ms"],
                     data["time_ms"])  # fmt: skip


def trades_of(data: dict[str, Any]) -> list[Trade]:
    return [Trade(data["symbol"], Decimal(p), Decimal(q), t) for p, q, t in data["trades"]]

