"""The journal: one append-only SQLite file per bot that explains every decision afterwards.

Every event is one row of `events` (kind, symbol, client id, JSON data, wall and monotonic time); the
kinds are listed in `KINDS`. Rows are never updated or deleted (triggers refuse it). The file runs in
WAL mode: a killed process loses at most the rows still queued in memory and never corrupts what was
committed.

Writes never block the event loop: `record()` queues a row for a writer thread that commits in batches.
`await durable(...)` also waits until the row is committed; the runtime uses it before an order leaves,
so every order on the exchange is in the journal even if the process is killed right after sending.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    session TEXT NOT NULL,
    wall_ms INTEGER NOT NULL,
    mono REAL NOT NULL,
    kind TEXT NOT NULL,
    symbol TEXT,
    client_id TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind);
CREATE INDEX IF NOT EXISTS events_client_id ON events (client_id);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
"""
KINDS = {
    "session.started": "a run began: the config snapshot (secrets masked) and the strategy",
    "session.stopped": "a run ended: why, and the summary",
    "reconcile": "what a start-up or periodic reconciliation found and did",
    "intent": "what the strategy (or a guard) asked for, with the snapshot figures the gate used",
    "verdict": "the gate's answer: decision, quantity, reason codes and figures",
    "order.sending": "an accepted intent about to leave, with its client id (committed before it is sent)",
    "order": "an order's state as the venue reported it (every change)",
    "order.failed": "a create or cancel the venue refused or could not complete",
    "fill": "a fill: quantity and price of the increment",
    "funding": "a funding payment received or paid",
    "killswitch": "a trigger tripped or cleared, or the trading state changed",
    "rules": "the exchange's market rules or leverage brackets changed (re-read), or the leverage lowered to fit",
    "halt.action": "what the bot did on a halt: cancels, flattening",
    "liquidation_guard": "a reduce-only slice cut because the mark came near the liquidation price",
    "feed": "a stream went down, fell back to REST polling, or came back",
    "snapshot": "after each account refresh: equity, and per symbol book top, mark, index, funding, position",
    "strategy.error": "a strategy hook raised",
    "error": "a runtime error the bot survived",
}


class JournalError(Exception):
    """A journal file that cannot be used (missing, not SQLite, a newer schema): one clear line."""


def to_json(value: Any) -> Any:
    """Plain JSON data: Decimals as exact strings, enums by value, dataclasses as objects."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    if isinstance(value, datetime | date | Path):
        return str(value)
    return value


class Journal:
    def __init__(self, path: Path, session: str, *, clock: Any = None) -> None:
        self.path = Path(path)
        self.session = session
        self._mono = clock.monotonic if clock is not None else time.monotonic
        self._wall = clock.time if clock is not None else time.time
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path)  # set up (and check the version) here, so a bad file fails at once
        conn.close()
        self._closed = False
        self._thread = threading.Thread(target=self._write_forever, name="botkit-journal", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------ writing

    def record(self, kind: str, *, symbol: str | None = None, client_id: str | None = None, **data: Any) -> None:
        """Queue one event; returns at once."""
        if self._closed:
            return
        row = (self.session, int(self._wall() * 1000), self._mono(), kind, symbol, client_id,
               json.dumps(to_json(data), separators=(",", ":"), default=repr))  # fmt: skip
        self._queue.put((row, None))

    async def durable(self, kind: str, *, symbol: str | None = None, client_id: str | None = None, **data: Any):
        """Queue one event and wait until it is committed (without blocking the event loop)."""
        self.record(kind, symbol=symbol, client_id=client_id, **data)
        await self.flush()

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queue.put((None, (loop, done)))
        await done

    def close(self) -> None:
        """Commit what is queued and stop the writer (blocking; call once, at shutdown)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put((None, None))
        self._thread.join(timeout=10)

    def _write_forever(self) -> None:
        conn = _connect(self.path)
        try:
            while True:
                batch = [self._queue.get()]
                while True:  # everything already waiting goes into the same transaction
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                rows = [row for row, _ in batch if row is not None]
                if rows:
                    with conn:
                        conn.executemany(
                            "INSERT INTO events (session, wall_ms, mono, kind, symbol, client_id, data) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)",
                            rows,
                        )
                    self.written += len(rows)
                stop = False
                for row, waiter in batch:
                    if row is None and waiter is None:
                        stop = True
                    elif waiter is not None:
                        loop, done = waiter
                        loop.call_soon_threadsafe(_resolve, done)
                if stop:
                    return
        finally:
            conn.close()


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a killed process loses nothing committed
        conn.executescript(SCHEMA)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            with conn:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            conn.close()
            raise JournalError(f"{path}: journal schema {row[0]} is newer than this botkit ({SCHEMA_VERSION})")
        return conn
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{path}: not a usable journal: {exc}") from None


# ---------------------------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    id: int
    session: str
    wall_ms: int
    mono: float
    kind: str
    symbol: str | None
    client_id: str | None
    data: dict[str, Any]


def read_events(path: Path, kinds: Iterable[str] | None = None, *, last: bool = False) -> Iterator[Event]:
    """The journal's events in order (read-only; safe while a bot is writing); `last`: only the newest."""
    if not Path(path).exists():
        raise JournalError(f"{path}: no such journal")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{path}: cannot open the journal: {exc}") from None
    try:
        query = "SELECT id, session, wall_ms, mono, kind, symbol, client_id, data FROM events"
        wanted = list(kinds) if kinds is not None else None
        args: list[Any] = []
        if wanted is not None:
            query += f" WHERE kind IN ({', '.join('?' * len(wanted))})"
            args = wanted
        order = " ORDER BY id DESC LIMIT 1" if last else " ORDER BY id"
        for row in conn.execute(query + order, args):
            yield Event(row[0], row[1], row[2], row[3], row[4], row[5], row[6], json.loads(row[7]))
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{path}: not a usable journal: {exc}") from None
    finally:
        conn.close()
