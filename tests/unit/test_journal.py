"""The journal: append-only, versioned, Decimal-exact, and a SIGKILL never corrupts it."""

import asyncio
import signal
import sqlite3
import subprocess
import sys
from decimal import Decimal as D

import pytest

from botkit.domain import OrderIntent, TradingState
from botkit.runtime.journal import SCHEMA_VERSION, Journal, JournalError, read_events
from tests.support import ROOT


async def test_events_come_back_in_order_with_exact_decimals(tmp_path):
    journal = Journal(tmp_path / "j.sqlite", "s1")
    intent = OrderIntent("BTC/USDT:USDT", "buy", D("0.123"), stop=D("49000.1"))
    journal.record("intent", symbol=intent.symbol, intent=intent, state=TradingState.ACTIVE)
    await journal.durable("order.sending", symbol=intent.symbol, client_id="bk1", qty=D("0.10"))
    journal.close()
    first, second = read_events(tmp_path / "j.sqlite")
    assert first.kind == "intent" and first.data["intent"]["qty"] == "0.123" and first.data["state"] == "ACTIVE"
    assert second.client_id == "bk1" and second.data == {"qty": "0.10"} and second.session == "s1"
    assert [e.kind for e in read_events(tmp_path / "j.sqlite", ["order.sending"])] == ["order.sending"]


async def test_durable_returns_only_once_the_row_is_committed(tmp_path):
    journal = Journal(tmp_path / "j.sqlite", "s1")
    await journal.durable("order.sending", client_id="bk1")
    other = sqlite3.connect(tmp_path / "j.sqlite")  # another reader sees it at once
    assert other.execute("SELECT client_id FROM events").fetchall() == [("bk1",)]
    other.close()
    journal.close()


def test_rows_cannot_be_changed_or_deleted(tmp_path):
    journal = Journal(tmp_path / "j.sqlite", "s1")
    journal.record("error", error="x")
    journal.close()
    conn = sqlite3.connect(tmp_path / "j.sqlite")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET kind = 'other'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")


def test_a_newer_schema_or_a_foreign_file_is_refused(tmp_path):
    Journal(tmp_path / "j.sqlite", "s1").close()
    conn = sqlite3.connect(tmp_path / "j.sqlite")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(JournalError, match="newer than this botkit"):
        Journal(tmp_path / "j.sqlite", "s2")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(JournalError, match="not a usable journal"):
        Journal(tmp_path / "junk.sqlite", "s1")


WRITER = """
import asyncio, sys
from botkit.runtime.journal import Journal
async def main():
    journal = Journal(sys.argv[1], "s1")
    n = 0
    while True:
        n += 1
        journal.record("fill", qty=str(n))
        if n % 50 == 0:
            await journal.durable("order.sending", client_id=f"bk{n}")
            print(n, flush=True)
asyncio.run(main())
"""


def test_sigkill_while_writing_loses_at_most_the_rows_in_flight(tmp_path):
    path = tmp_path / "j.sqlite"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    acknowledged = 0
    while acknowledged < 2000:
        acknowledged = int(writer.stdout.readline())
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    durable = {e.client_id for e in read_events(path, ["order.sending"])}
    assert {f"bk{n}" for n in range(50, acknowledged + 1, 50)} <= durable  # every acknowledged row survived


def test_reading_a_missing_journal_is_a_clear_error(tmp_path):
    with pytest.raises(JournalError, match="no such journal"):
        list(read_events(tmp_path / "missing.sqlite"))


def test_record_after_close_is_ignored(tmp_path):
    journal = Journal(tmp_path / "j.sqlite", "s1")
    journal.close()
    journal.record("error", error="late")  # a task finishing during shutdown must not crash it
    asyncio.run(journal.flush())
    assert list(read_events(tmp_path / "j.sqlite")) == []


async def test_one_hand_off_and_one_commit_serve_every_row_and_waiter_of_a_loop_iteration(tmp_path):
    journal = Journal(tmp_path / "j.sqlite", "s1")
    for n in range(5):
        journal.record("fill", qty=str(n))
    waiters = [asyncio.ensure_future(journal.durable("order.sending", client_id=f"bk{n}")) for n in range(3)]
    await asyncio.wait_for(asyncio.gather(*waiters), 10)
    assert journal.commits == 1 and journal.written == 8
    journal.close()
    assert [e.kind for e in read_events(tmp_path / "j.sqlite")] == ["fill"] * 5 + ["order.sending"] * 3


async def test_a_row_nobody_waits_for_is_committed_within_the_linger(tmp_path):
    from botkit.runtime import journal as journal_module

    journal = Journal(tmp_path / "j.sqlite", "s1")
    journal.record("fill", qty="1")
    assert journal.written == 0  # held for a batch ...
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(10):
        while journal.written == 0:  # ... and committed without any flush
            await asyncio.sleep(0.005)
    assert loop.time() - started < journal_module.LINGER_S + 1.0
    journal.close()
