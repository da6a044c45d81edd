"""The journal: one append-only SQLite file per bot that explains every decision afterwards.

Every event is one row of `events` (kind, symbol, client id, JSON data, wall and monotonic time); the
kinds and their fields are `botkit.runtime.events`. Rows are never updated or deleted (triggers refuse
it). The file runs in WAL mode: a killed process loses at most the rows still queued in memory and
never corrupts what was committed.

Writes never block the event loop: rows gather in a batch that a writer thread commits in one
transaction (group commit). `await durable(...)` waits until its row is committed; the runtime uses it
before an order leaves, so every order on the exchange is in the journal even if the process is killed
right after sending. A durable row's batch is handed over at the end of the loop iteration, serving
every order waiting in it; other rows wait up to LINGER_S for one (a thread hand-off costs more than the
commit itself), so a killed process loses at most that much of the rows that are not write-ahead.

Rotation: once the file passes `rotate_bytes` (or a UTC day ends, with `rotate_daily`), the writer
renames it to `<stem>.<UTC time>.sqlite` next to it and starts a new file at the same path. The new file
opens with the rows `carry` picks from the old one (the runtime's: what a restart reconciliation needs,
see `botkit.runtime.reconcile.carried_rows`), so a bot restarted on the new file misses nothing.

One bot per journal: the journal holds an OS lock on `<journal>.lock` while it is open; a second bot on
the same file is refused with the other process's id. A journal that cannot write (a full disk, the file
deleted or replaced under the bot) never blocks a caller forever and never fails silently: the rows wait
in a bounded backlog and are retried with every later batch, `durable()` raises JournalError, and
`on_failure` is told (the runtime trips its kill switch) on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Protocol

import msgspec

from botkit.log import get_logger

SCHEMA_VERSION = 2  # 2: the kinds and fields of botkit.runtime.events (a superset of 1's rows)
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
log = get_logger("botkit.journal")
_INSERT = "INSERT INTO events (session, wall_ms, mono, kind, symbol, client_id, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
BACKLOG_ROWS = 100_000  # rows kept in memory while the journal cannot write (the oldest go first)
LINGER_S = 0.02  # the longest a row that is not write-ahead waits for its batch to be handed over
BATCH_ROWS = 2_000  # ... or until this many rows are waiting


class Writable(Protocol):
    """A typed journal event (see botkit.runtime.events)."""

    KIND: ClassVar[str]

    @property
    def symbol(self) -> str | None: ...

    @property
    def client_id(self) -> str | None: ...

    def data(self) -> dict[str, Any]: ...


class JournalError(Exception):
    """A journal file that cannot be used (missing, not SQLite, a newer schema, in use, unwritable): one
    clear line."""


def to_json(value: Any) -> Any:
    """Plain JSON data: Decimals as exact strings, enums by value, dataclasses as objects."""
    return json.loads(encode(value))


def encode(value: Any) -> str:
    """Compact JSON text of an event's data: msgspec writes Decimals as exact strings, enums by value and
    dataclasses as objects in C; `_plain` is asked only for what it cannot write."""
    try:
        return _ENCODER.encode(value).decode()
    except (TypeError, UnicodeEncodeError):  # a key that is not text, a lone surrogate: the slow, thorough way
        return _THOROUGH.encode(_keys_as_text(value))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, datetime | date | Path):
        return str(value)
    return repr(value)


def _keys_as_text(value: Any) -> Any:
    value = _plain(value) if not isinstance(value, dict | list | tuple | str | int | float | bool | None) else value
    if isinstance(value, dict):
        return {str(_plain(k) if not isinstance(k, str) else k): _keys_as_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_keys_as_text(v) for v in value]
    return value


_ENCODER = msgspec.json.Encoder(enc_hook=_plain, decimal_format="string")
_THOROUGH = json.JSONEncoder(separators=(",", ":"), default=_plain)  # escapes what UTF-8 cannot hold


class Journal:
    """The append-only SQLite journal of one bot (see the module's docstring)."""

    def __init__(
        self, path: Path, session: str, *, clock: Any = None, on_failure: Callable[[str], Any] | None = None,
        rotate_bytes: int | None = None, rotate_daily: bool = False,
        carry: Callable[[Path], list[Row]] | None = None,
    ) -> None:  # fmt: skip
        self.path = Path(path)
        self.rotate_bytes, self.rotate_daily, self.carry = rotate_bytes, rotate_daily, carry
        self.rotations = 0
        self.rotation_failed: str | None = None  # why the last rotation failed, if it did
        self.session = session
        self.on_failure = on_failure  # called on the event loop's thread when writing fails
        self._mono = clock.monotonic if clock is not None else time.monotonic
        self._wall = clock.time if clock is not None else time.time
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._batch: list[Any] = []  # (row, waiter) items waiting to be handed to the writer
        self._handing: asyncio.Handle | None = None  # the scheduled hand-over of the batch
        self._soon = False  # whether that hand-over is at the end of this loop iteration
        self.written = 0  # rows committed
        self.commits = 0  # transactions that committed them
        # False only in a backtest: its orders reach no exchange, so none can be ahead of its row; the rows
        # still all land, in order, and a journal that cannot write still fails every durable write
        self.wait_durable = True
        self.failed: str | None = None  # why the last write failed (None: the journal writes)
        self._loop: asyncio.AbstractEventLoop | None = None
        # Called with every row as it is queued (kind, symbol, client id, data), on the caller's thread:
        # what the panel, the metrics and the alerts count is what the journal holds. They must be quick.
        self.listeners: list[Callable[[str, str | None, str | None, dict[str, Any]], None]] = []
        self.commit_seconds = 0.0  # time spent committing (the writer thread's), over `commits`
        if not self.path.parent.is_dir():
            raise JournalError(f"{self.path}: the folder {self.path.parent} does not exist")
        self._lock = hold_lock(self.path)
        try:
            conn = _connect(self.path)  # set up (and check the version) here, so a bad file fails at once
            conn.close()
            self._identity = _identity(self.path)
        except BaseException:
            os.close(self._lock)
            raise
        self._closed = False
        self._thread = threading.Thread(target=self._write_forever, name="botkit-journal", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------ writing

    def write(self, event: Writable) -> None:
        """Queue one typed event (botkit.runtime.events); returns at once."""
        self.record(event.KIND, symbol=event.symbol, client_id=event.client_id, **event.data())

    async def write_durable(self, event: Writable) -> None:
        """Queue one typed event and wait until it is committed; JournalError if it cannot be."""
        await self.durable(event.KIND, symbol=event.symbol, client_id=event.client_id, **event.data())

    def record(self, kind: str, *, symbol: str | None = None, client_id: str | None = None, **data: Any) -> None:
        """Queue one event given as its kind and fields; returns at once."""
        if self._closed:
            return
        if self._loop is None:
            with contextlib.suppress(RuntimeError):
                self._loop = asyncio.get_running_loop()
        row = (self.session, int(self._wall() * 1000), self._mono(), kind, symbol, client_id,
               encode(data))  # fmt: skip
        self._add((row, None))
        for listener in self.listeners:
            try:
                listener(kind, symbol, client_id, data)
            except Exception as exc:  # a watcher's bug must not stop the record or the order behind it
                self.listeners = [other for other in self.listeners if other is not listener]  # (a new list: the
                log.error("journal.listener_failed", listener=repr(listener), error=repr(exc))  # loop reads the old)

    def _add(self, item: tuple[Any, Any]) -> None:
        """Into the batch: handed over at the end of this loop iteration when someone waits on it, else
        within LINGER_S (straight to the writer outside a running loop, or from another thread)."""
        loop = self._loop
        if loop is None or asyncio._get_running_loop() is not loop:  # (no exception raised off the loop)
            self._hand_over()
            self._queue.put(item)
            return
        self._batch.append(item)
        if self._soon:
            return
        if item[1] is not None or len(self._batch) >= BATCH_ROWS:
            if self._handing is not None:
                self._handing.cancel()
            self._handing, self._soon = loop.call_soon(self._hand_over), True
        elif self._handing is None:
            self._handing = loop.call_later(LINGER_S, self._hand_over)

    def _hand_over(self) -> None:
        if self._handing is not None:
            self._handing.cancel()
        self._handing, self._soon = None, False
        batch, self._batch = self._batch, []
        if batch:
            self._queue.put(batch)

    async def durable(
        self, kind: str, *, symbol: str | None = None, client_id: str | None = None, **data: Any
    ) -> None:
        """Queue one event and wait until it is committed (without blocking the event loop); JournalError
        if it cannot be."""
        if self.failed is not None:
            self.record(kind, symbol=symbol, client_id=client_id, **data)  # kept in the backlog, retried
            raise JournalError(f"{self.path}: the journal cannot write: {self.failed}")
        self.record(kind, symbol=symbol, client_id=client_id, **data)
        if not self.wait_durable:
            return
        if not await self.flush():
            raise JournalError(f"{self.path}: the journal cannot write: {self.failed}")

    async def flush(self) -> bool:
        """Wait until everything queued so far is written; False if it could not be."""
        if self._closed:
            return self.failed is None
        loop = asyncio.get_running_loop()
        self._loop = loop
        done: asyncio.Future[bool] = loop.create_future()
        self._add((None, (loop, done)))
        return await done

    def close(self) -> None:
        """Commit what is queued and stop the writer (blocking; call once, at shutdown)."""
        if self._closed:
            return
        self._closed = True
        self._hand_over()
        self._queue.put((None, None))
        self._thread.join(timeout=10)
        os.close(self._lock)

    def _write_forever(self) -> None:
        conn = _connect(self.path)
        opened_day = _day(self._wall())
        backlog: list[Any] = []
        try:
            while True:
                batch = _items(self._queue.get())
                while True:  # everything already waiting goes into the same transaction
                    try:
                        batch += _items(self._queue.get_nowait())
                    except queue.Empty:
                        break
                rows = backlog + [row for row, _ in batch if row is not None]
                if rows:
                    backlog = self._write(conn, rows)
                if not backlog and (self.rotate_bytes is not None or self.rotate_daily) and self._due(opened_day):
                    conn, opened_day = self._rotate(conn), _day(self._wall())
                ok = not backlog
                stop = False
                for row, waiter in batch:
                    if row is None and waiter is None:
                        stop = True
                    elif waiter is not None:
                        loop, done = waiter
                        loop.call_soon_threadsafe(_resolve, done, ok)
                if stop:
                    return
        finally:
            conn.close()

    def _write(self, conn: sqlite3.Connection, rows: list[Any]) -> list[Any]:
        """Commit the rows; on failure keep them (bounded) for the next batch and report the failure once."""
        try:
            if _identity(self.path) != self._identity:
                raise JournalError("the journal file was deleted or replaced while the bot was writing it")
            started = time.perf_counter()
            with conn:
                conn.executemany(_INSERT, rows)
            self.commit_seconds += time.perf_counter() - started
        except (sqlite3.Error, OSError, JournalError) as exc:
            error = str(exc) or type(exc).__name__
            first = self.failed is None
            self.failed = error
            if first and self.on_failure is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(self.on_failure, error)
            return rows[-BACKLOG_ROWS:]
        self.written += len(rows)
        self.commits += 1
        self.failed = None
        return []

    def _due(self, opened_day: str) -> bool:
        """Whether the file should be rotated now (size, or a new UTC day)."""
        if self.rotate_daily and _day(self._wall()) != opened_day:
            return True
        if self.rotate_bytes is None:
            return False
        size = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                size += os.stat(f"{self.path}{suffix}").st_size
        return size >= self.rotate_bytes

    def _rotate(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """Archive the file and put a new one in its place that starts with the carried rows (see the module's
        docstring). The new file is made in full before the old one moves; on any failure the old one stays in
        use, the failure is reported, and the rotation is tried again after the next batch."""
        following = self.path.with_name(self.path.name + ".next")
        stamp = datetime.fromtimestamp(self._wall(), UTC).strftime("%Y%m%dT%H%M%S%fZ")
        archive = self.path.with_name(f"{self.path.stem}.{stamp}{self.path.suffix or '.sqlite'}")
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if busy:  # a reader holds the log: the archive would lose what is only in it
                return conn
            carried = self.carry(self.path) if self.carry is not None else []
            with contextlib.suppress(FileNotFoundError):
                os.remove(following)
            fresh = _connect(following)
            with fresh:
                fresh.executemany(_INSERT, carried)
                fresh.execute(_INSERT, (self.session, int(self._wall() * 1000), self._mono(), "journal.rotated", None,
                                        None, encode({"previous": archive.name, "carried": len(carried)})))  # fmt: skip
            fresh.close()
            conn.close()
            os.replace(self.path, archive)
        except Exception as exc:  # a full disk, a file that vanished: keep writing where we were
            with contextlib.suppress(OSError):
                os.remove(following)
            conn = conn if _usable(conn) else self._reopen(conn)
            self._rotate_failed(conn, str(exc) or type(exc).__name__)
            return conn
        try:
            os.replace(following, self.path)
        except OSError as exc:
            os.replace(archive, self.path)  # back as it was
            conn = self._reopen(conn)
            self._rotate_failed(conn, str(exc))
            return conn
        self._identity = _identity(self.path)
        self.rotations += 1
        self.rotation_failed = None
        return self._reopen(conn)

    def _reopen(self, closed: sqlite3.Connection) -> sqlite3.Connection:
        """A connection to the file at the path; the closed one if even that fails (the next write then
        fails, and is reported as any write failure)."""
        try:
            return _connect(self.path)
        except (JournalError, sqlite3.Error, OSError):
            return closed

    def _rotate_failed(self, conn: sqlite3.Connection, error: str) -> None:
        """Said in the journal itself (it still writes: only the archiving failed), once per error."""
        if error == self.rotation_failed:
            return
        self.rotation_failed = error
        with contextlib.suppress(sqlite3.Error), conn:
            conn.execute(_INSERT, (self.session, int(self._wall() * 1000), self._mono(), "journal.rotated", None, None,
                                   encode({"previous": None, "carried": 0, "error": error})))  # fmt: skip


Row = tuple[str, int, float, str, str | None, str | None, str]  # session, wall_ms, mono, kind, symbol, client id, data


def _day(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d")


def _usable(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.Error:
        return False
    return True


def _items(handed: Any) -> list[Any]:
    """A hand-off is one (row, waiter) item or a loop iteration's list of them."""
    return handed if isinstance(handed, list) else [handed]


def _resolve(done: asyncio.Future[bool], ok: bool) -> None:
    if not done.done():
        done.set_result(ok)


def _identity(path: Path) -> tuple[int, int]:
    """(device, inode) of the file at the path: another file there means the journal was replaced."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise JournalError("the journal file was deleted while the bot was writing it") from None
    return st.st_dev, st.st_ino


def lock_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".lock")


def hold_lock(path: Path) -> int:
    """Take the journal's lock (one bot per journal) and write our pid into it; JournalError naming the
    process that holds it. Returns the lock's file descriptor (closing it releases the lock)."""
    where = lock_path(path)
    try:
        fd = os.open(where, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise JournalError(f"{path}: cannot create its lock {where}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise JournalError(f"{path}: in use by another botkit process (pid {holder}); one bot per journal") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def is_locked(path: Path) -> bool:
    """True while a bot holds the journal (without taking the lock)."""
    try:
        fd = os.open(lock_path(path), os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


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
        elif int(row[0]) < SCHEMA_VERSION:  # older rows stay readable as they are; new ones follow this schema
            with conn:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
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
