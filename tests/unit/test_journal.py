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
    loop = asyncio.get_running_loop()
    journal.record("fill", qty="1")
    handing = journal._handing  # held for a batch, its hand-over due within the linger (the loop's own timer) ...
    assert journal.written == 0 and handing is not None and handing.when() <= loop.time() + journal_module.LINGER_S
    async with asyncio.timeout(10):  # ... and committed without any flush: a condition polled, not a timed wait
        while journal.written == 0:
            await asyncio.sleep(0.005)
    journal.close()


def _session_rows(journal):
    """A bot's life in rows: an order settled with a fill, one still open with a partial fill, a stop
    placed, a latched trip in force, and plenty of market snapshots."""
    from botkit.runtime import events

    journal.record("session.started", mode="demo", strategy="x", symbols=["BTC/USDT:USDT"], config={}, params={})
    journal.write(events.OrderSending(symbol="BTC/USDT:USDT", client_id="bk-a", side="buy", type="market",
                                      qty=D("0.5"), price=None, reduce_only=False, tag=None, source="strategy"))
    journal.write(events.OrderReported(symbol="BTC/USDT:USDT", client_id="bk-a", source="create", status="filled",
                                       filled=D("0.5"), side="buy", type="market", qty=D("0.5")))
    journal.write(events.OrderSending(symbol="BTC/USDT:USDT", client_id="bk-b", side="buy", type="limit",
                                      qty=D("0.3"), price=D(49000), reduce_only=False, tag=None, source="strategy"))
    journal.write(events.OrderReported(symbol="BTC/USDT:USDT", client_id="bk-b", source="stream", status="open",
                                       filled=D("0.1"), side="buy", type="limit", qty=D("0.3"), price=D(49000)))
    journal.write(events.StopChanged(symbol="BTC/USDT:USDT", client_id="bk-s", action="placed", status="open",
                                     side="sell", type="stop_market", qty=D("0.6"), trigger=D(48000)))
    journal.write(events.StopChanged(symbol="BTC/USDT:USDT", client_id="bk-t", action="placed", status="open",
                                     side="sell", type="take_profit_market", qty=D("0.6"), trigger=D(55000)))
    journal.write(events.SwitchChanged(event="tripped", trigger="drawdown", state="HALTED", figures="equity=90"))
    for n in range(400):
        journal.record("account", equity=str(10_000 + n), symbols={"BTC/USDT:USDT": {"mark": "50000.1" * 20}})


async def test_a_rotated_journal_reconciles_a_restart_as_the_whole_history_would(tmp_path):
    from botkit.runtime.orders import JournalHistory
    from botkit.runtime.reconcile import carried_rows, latched_trips

    whole = Journal(tmp_path / "whole.sqlite", "s1")
    _session_rows(whole)
    await whole.flush()
    whole.close()
    path = tmp_path / "rotating.sqlite"
    rotating = Journal(path, "s1", rotate_bytes=60_000, carry=carried_rows)
    _session_rows(rotating)
    await rotating.flush()
    for n in range(400):  # more rows: the file passes the limit again, and the carried rows carry over twice
        rotating.record("account", equity=str(n), symbols={"BTC/USDT:USDT": {"mark": "50000.1" * 20}})
    await rotating.flush()
    rotating.close()
    assert rotating.rotations >= 2 and rotating.rotation_failed is None
    archives = sorted(p.name for p in tmp_path.glob("rotating.*.sqlite"))
    assert len(archives) == rotating.rotations

    def seen(p):
        history = JournalHistory(read_events(p, JournalHistory.KINDS))
        return ([s.client_id for s in history.unsettled()], history.positions(), history.stop_triggers,
                latched_trips(p))  # fmt: skip

    assert seen(path) == seen(tmp_path / "whole.sqlite") == (
        ["bk-b"], {"BTC/USDT:USDT": D("0.6")}, {"BTC/USDT:USDT": D(48000)}, {"drawdown": "equity=90"})
    kinds = [e.kind for e in read_events(path)]
    assert "journal.rotated" in kinds and kinds.count("session.started") == 1
    # every row written is in one of the files; the archives keep them all
    rows = sum(1 for a in archives for e in read_events(tmp_path / a) if e.kind == "account")
    assert rows + sum(1 for k in kinds if k == "account") == 800


async def test_without_the_carried_rows_a_restart_on_a_rotated_journal_misses_the_open_order(tmp_path):
    """The attack on rotation: archive the file and start empty. The open order and the position vanish."""
    from botkit.runtime.orders import JournalHistory

    path = tmp_path / "rotating.sqlite"
    rotating = Journal(path, "s1", rotate_bytes=60_000, carry=None)
    _session_rows(rotating)
    await rotating.flush()
    rotating.close()
    history = JournalHistory(read_events(path, JournalHistory.KINDS))
    assert rotating.rotations >= 1 and history.unsettled() == [] and history.positions() == {}


def test_a_listener_that_raises_is_dropped_and_the_rows_and_other_listeners_go_on(tmp_path):
    from botkit.runtime.journal import Journal, read_events

    seen: list[str] = []

    def broken(kind, symbol, client_id, data):
        raise RuntimeError("watcher bug")

    journal = Journal(tmp_path / "j.sqlite", "s")
    journal.listeners = [broken, lambda kind, *rest: seen.append(kind)]
    try:
        journal.record("one")
        journal.record("two")
    finally:
        journal.close()
    assert seen == ["one", "two"] and journal.listeners[0] is not broken and len(journal.listeners) == 1
    assert [e.kind for e in read_events(tmp_path / "j.sqlite")] == ["one", "two"]
