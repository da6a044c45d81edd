"""The journal's schema: every kind written by the runtime reads back as its typed event, Decimals as
Decimals; a journal written by the previous schema (plain rows of the same fields) still reads."""

import sqlite3
from decimal import Decimal as D

from botkit.domain import OrderIntent
from botkit.runtime import events
from botkit.runtime.journal import SCHEMA_VERSION, Journal, read_events


def test_every_kind_round_trips(tmp_path):
    path = tmp_path / "journal.sqlite"
    journal = Journal(path, "s")
    written = [
        events.SessionStarted(mode="demo", strategy="X", symbols=["BTC/USDT:USDT"], config={}, params={}),
        events.SessionStopped(reason="duration", state="ACTIVE", equity_end=D("10000.5")),
        events.Reconciled(at="start", positions={"BTC/USDT:USDT": "0.1"}),
        events.IntentSeen(symbol="BTC/USDT:USDT", source="strategy", intent=OrderIntent("BTC/USDT:USDT", "buy")),
        events.VerdictGiven(symbol="BTC/USDT:USDT", source="strategy", decision="ACCEPT", qty=D("0.091")),
        events.OrderSending(symbol="BTC/USDT:USDT", client_id="bk-1", side="buy", type="limit", qty=D("0.003"),
                            price=D("49990.0")),
        events.OrderReported(symbol="BTC/USDT:USDT", client_id="bk-1", source="create", status="open",
                             filled=D(0), side="buy", type="limit", qty=D("0.003"), price=D("49990.0")),
        events.OrderFailed(client_id="bk-2", final=True, error="x", reasons=["STATE_HALTED"]),
        events.Filled(symbol="BTC/USDT:USDT", client_id="bk-1", side="buy", qty=D("0.001"), price=D("49990")),
        events.FundingPaid(symbol="BTC/USDT:USDT", amount=D("-0.12"), id="f1", time_ms=1),
        events.SwitchChanged(event="tripped", trigger="manual", state="HALTED", figures="reason=x"),
        events.RulesChanged(symbol="BTC/USDT:USDT", leverage=5),
        events.HaltAction(action="flatten", qty=D("0.1"), result="ok"),
        events.GuardCut(symbol="BTC/USDT:USDT", figures="distance=0.01"),
        events.FeedChanged(stream="book:BTC/USDT:USDT", status="silent", silent_s=2.0),
        events.AccountSnapshot(state="ACTIVE", equity=D("10000"), symbols={"BTC/USDT:USDT": {"mark": "1"}}),
        events.StrategyFailed(hook="on_quote", error="E", action="skip"),
        events.RuntimeFailed(where="runtime", error="E"),
        events.StopSending(symbol="BTC/USDT:USDT", client_id="bk-3", side="sell", type="stop_market",
                           qty=D("0.003"), trigger=D("49000.0"), why="entry"),
        events.StopChanged(symbol="BTC/USDT:USDT", client_id="bk-3", action="placed", status="open", side="sell",
                           type="stop_market", qty=D("0.003"), trigger=D("49000.0"), why="entry"),
        events.JournalCarried(positions={"BTC/USDT:USDT": "-0.003"}),
        events.JournalRotated(previous="bot.20261201T000000000000Z.sqlite", carried=7),
        events.AlertFailed(destination="telegram", error="HTTP 502: bad gateway", attempts=5, alerts=3),
    ]
    assert {type(e) for e in written} == set(events.KINDS.values())  # every kind is here
    for event in written:
        journal.write(event)
    journal.close()
    read = [events.decode(row) for row in read_events(path)]
    for before, after in zip(written, read, strict=True):
        assert type(after) is type(before) and after.symbol == before.symbol and after.client_id == before.client_id
        if not isinstance(before, events.IntentSeen):  # an intent reads back as its fields
            assert after == before, (before, after)
    assert isinstance(read[5].qty, D) and read[5].qty == D("0.003")


def test_a_journal_of_the_previous_schema_still_reads(tmp_path):
    path = tmp_path / "old.sqlite"
    journal = Journal(path, "s")
    journal.record("order.sending", symbol="BTC/USDT:USDT", client_id="bk1", side="buy", type="market",
                   qty="0.5", price=None, reduce_only=False, tag=None, source="strategy")  # fmt: skip
    journal.record("killswitch", event="tripped", trigger="manual", state="HALTED", figures="reason=x")
    journal.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    sending, switch = (events.decode(row) for row in read_events(path))
    assert isinstance(sending, events.OrderSending) and sending.qty == D("0.5") and sending.side == "buy"
    assert isinstance(switch, events.SwitchChanged) and switch.trigger == "manual"
    Journal(path, "t").close()  # a writer moves the file to the current schema
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
