"""Fuzzing bad input (hypothesis): config files, CLI arguments, and exchange answers fed through the venue and
the feeds. Whatever arrives, the answer is a validated object or one clear error (never a stray exception
or traceback), and bad data never yields an order: the gate refuses and a create whose answer is unreadable
is treated as of unknown outcome, not as refused.

The exchange's ccxt methods are replaced by functions returning the generated answers: unit level, so that
thousands of shapes run in seconds (tests/integration drives the real client over HTTP).
"""

from __future__ import annotations

import asyncio
import json
import math
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt_async
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botkit.cli import main
from botkit.clock import ManualClock
from botkit.config import BotConfig, ConfigError, KillSwitchConfig, RuntimeConfig, VenueConfig, load_config
from botkit.domain import OrderIntent, OrderStatus, TradingState
from botkit.guards.gate import Gate, MarketView, Snapshot
from botkit.guards.killswitch import KillSwitch
from botkit.margin import MarketRules
from botkit.runtime.feeds import Feeds
from botkit.runtime.journal import Journal, read_events
from botkit.runtime.market_state import MarketState
from botkit.venue.ccxt_venue import CcxtVenue
from botkit.venue.errors import OrderUnresolved, VenueDataError
from tests.support import BTC_TIERS, approved

BTC = "BTC/USDT:USDT"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Values an exchange (or a broken proxy) might send where a number or a name belongs.
atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["", "0", "-1", "1e400", "NaN", "inf", "abc", "0.003", "50000.5", "buy", "open", BTC]),
)
junk = st.recursive(
    atoms,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
numbers = st.one_of(st.sampled_from(["0.003", "50000", 0.003, 50000, 1e-12, 1e30, -1, 0, "nan", float("inf")]), atoms)


def shaped(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict with (some of) the fields an answer should have, each right, wrong or absurd."""
    return st.fixed_dictionaries({}, optional={name: strategy | junk for name, strategy in fields.items()})


ORDER = shaped({
    "id": st.text(max_size=6), "clientOrderId": st.text(max_size=12), "symbol": st.just(BTC),
    "side": st.sampled_from(["buy", "sell"]), "type": st.sampled_from(["limit", "market"]),
    "status": st.sampled_from(["open", "closed", "canceled", "expired", "rejected"]), "amount": numbers,
    "filled": numbers, "price": numbers, "average": numbers, "reduceOnly": st.booleans(), "timestamp": numbers,
})  # fmt: skip
LEVELS = st.lists(st.lists(numbers, min_size=2, max_size=3), max_size=4)
BOOK = shaped({"bids": LEVELS, "asks": LEVELS, "timestamp": numbers})
MARK = shaped({"markPrice": numbers, "indexPrice": numbers, "fundingRate": numbers, "fundingTimestamp": numbers,
               "timestamp": numbers, "info": shaped({"r": numbers, "T": numbers})})  # fmt: skip
POSITION = shaped({"symbol": st.just(BTC), "side": st.sampled_from(["long", "short"]), "contracts": numbers,
                   "entryPrice": numbers, "markPrice": numbers, "liquidationPrice": numbers, "marginMode":
                   st.sampled_from(["isolated", "cross"]), "unrealizedPnl": numbers, "leverage": numbers})  # fmt: skip
BALANCE = st.fixed_dictionaries({}, optional={"USDT": shaped({"free": numbers, "used": numbers, "total": numbers})})
TIERS = st.dictionaries(st.just(BTC), st.lists(shaped({"tier": numbers, "minNotional": numbers, "maxNotional": numbers,
                        "maintenanceMarginRate": numbers, "maxLeverage": numbers}), max_size=3))  # fmt: skip


def answering(value: Any):
    async def call(*args: Any, **kwargs: Any) -> Any:
        return value

    return call


@pytest.fixture(scope="module")
def venue() -> CcxtVenue:
    settings_ = VenueConfig(retry_base_s=0.001, retry_cap_s=0.001, unknown_settle_s=0, max_attempts=2)
    return CcxtVenue(ccxt_async.binanceusdm(), settings_)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def number_ok(value: D | None) -> bool:
    return value is None or value.is_finite()


@FUZZ
@given(raw=ORDER | junk)
def test_an_order_answer_is_a_sane_order_or_a_clear_error(venue, raw):
    venue.exchange.fetch_order = answering(raw)
    try:
        order = run(venue.fetch_order(BTC, client_id="bk1"))
    except VenueDataError as exc:
        assert str(exc)
        return
    assert order.qty > 0 and 0 <= order.filled <= order.qty and order.side in ("buy", "sell")
    assert isinstance(order.status, OrderStatus) and number_ok(order.price) and number_ok(order.average)


@FUZZ
@given(raw=ORDER | junk)
def test_an_unreadable_create_answer_leaves_the_order_unresolved_never_refused(venue, raw):
    """The exchange took the order and answered garbage: it may be live, so it is of unknown outcome (the
    kill switch halts until it is settled), looked up by its client id, never sent again blind."""
    sent = []

    async def create_order(*args: Any) -> Any:
        sent.append(args)
        return raw

    venue.exchange.create_order, venue.exchange.fetch_order = create_order, answering(raw)
    try:
        order = run(venue.create_order(approved(BTC, "buy", "limit", D("0.003"), D("50000")), client_id="bkfuzz1"))
    except OrderUnresolved:
        assert "bkfuzz1" in venue.unresolved
    else:
        assert order.qty > 0 and order.client_id
    finally:
        venue.unresolved.clear()
    assert len(sent) == 1  # exactly once: the retry looked the order up instead


@FUZZ
@given(book=BOOK | junk, mark=MARK | junk, balance=BALANCE | junk, positions=st.lists(POSITION | junk, max_size=2)
       | junk, tiers=TIERS | junk)  # fmt: skip
def test_market_and_account_answers_are_validated_or_refused(venue, book, mark, balance, positions, tiers):
    venue.exchange.fetch_order_book = answering(book)
    venue.exchange.fetch_funding_rate = answering(mark)
    venue.exchange.fetch_balance = answering(balance)
    venue.exchange.fetch_positions = answering(positions)
    venue.exchange.fetch_leverage_tiers = answering(tiers)
    checks = {
        "book": (venue.fetch_book(BTC), lambda b: all(p > 0 and q > 0 for p, q in b.bids + b.asks)
                 and (not b.bids or not b.asks or b.bids[0][0] < b.asks[0][0])),
        "mark": (venue.fetch_mark(BTC), lambda m: m.mark > 0 and m.mark.is_finite() and number_ok(m.index)),
        "balance": (venue.fetch_balance(), lambda b: b.total.is_finite() and b.free.is_finite()),
        "positions": (venue.fetch_positions([BTC]), lambda ps: all(p.qty > 0 and p.entry > 0 for p in ps)),
        "tiers": (venue.fetch_tiers([BTC]), lambda t: all(x.cap > x.floor >= 0 for x in t[BTC])),
    }  # fmt: skip
    for name, (call, sane) in checks.items():
        try:
            result = run(call)
        except VenueDataError as exc:
            assert str(exc), name
            continue
        assert sane(result), f"{name}: {result!r}"


# ------------------------------------------------------------------------------------------- the feeds


def feeds_for(venue: CcxtVenue, tmp_path: Path) -> tuple[Feeds, Journal]:
    clock = ManualClock()
    journal = Journal(tmp_path / "journal.sqlite", "fuzz", clock=clock)

    async def nothing() -> None:
        return None

    feeds = Feeds(venue, [BTC], clock=clock, ks=KillSwitch(KillSwitchConfig(), clock), journal=journal,
                  market=MarketState(clock), settings=RuntimeConfig(), timeframe=60.0, silence_s=5.0,
                  on_quote=lambda s: None,
                  on_bar=lambda b: None, on_order=lambda o, s: None, on_orders_back=nothing)  # fmt: skip
    return feeds, journal


def snapshot(feeds: Feeds) -> Snapshot:
    market = feeds.market
    book, mark = market.books.get(BTC), market.marks.get(BTC)
    rules = MarketRules(step=D("0.001"), tick=D("0.1"), min_qty=D("0.001"), min_notional=D("100"))
    view = MarketView(rules, BTC_TIERS, 10, mark.mark if mark else None, market.mark_at.get(BTC),
                      book.bids if book else (), book.asks if book else (), market.book_at.get(BTC))  # fmt: skip
    return Snapshot(now=feeds.clock.monotonic(), state=TradingState.ACTIVE, markets={BTC: view}, positions={},
                    open_orders=[], equity=D(10_000), available=D(10_000), peak_equity=D(10_000),
                    day_start_equity=D(10_000))  # fmt: skip


WATCHES = {"book": "watch_order_book", "mark": "watch_mark_price", "trades": "watch_trades"}


def deliver(feeds: Feeds, kind: str, raw: Any) -> None:
    """One frame from ccxt's stream of this kind, through the venue's watch into the feeds (as they run)."""
    stream = next(s for s in feeds.streams if s.name.split(":")[0] == kind)

    async def frame(*args: Any, **kwargs: Any) -> Any:
        return raw

    setattr(feeds.venue.exchange, WATCHES[kind], frame)  # type: ignore[attr-defined]
    run(feeds.receive(stream))


@FUZZ
@given(frames=st.lists(st.tuples(st.sampled_from(["book", "mark", "trades"]), BOOK | MARK | junk), max_size=6))
def test_junk_frames_never_reach_the_gate(venue, tmp_path, frames):
    feeds, journal = feeds_for(venue, tmp_path)
    try:
        for kind, raw in frames:
            deliver(feeds, kind, raw)
        book, mark = feeds.market.books.get(BTC), feeds.market.marks.get(BTC)
        if book is not None:  # what the feeds keep was validated
            assert all(p > 0 and q > 0 for p, q in book.bids + book.asks)
        if mark is not None:
            assert mark.mark > 0 and mark.mark.is_finite()
        verdict = Gate(BotConfig()).check(OrderIntent(BTC, "buy", stop=D("49000")), snapshot(feeds))
        if book is None or not book.asks or mark is None:
            assert not verdict.accepted  # no validated price, no order
        if verdict.accepted:
            assert verdict.qty is not None and verdict.qty > 0 and verdict.qty * book.asks[0][0] <= D(10_000)
    finally:
        journal.close()


def test_a_bad_frame_is_journalled_and_the_last_good_data_kept(venue, tmp_path):
    feeds, journal = feeds_for(venue, tmp_path)
    deliver(feeds, "book", {"bids": [["49999", "1"]], "asks": [["50001", "1"]]})
    deliver(feeds, "book", {"bids": [["50002", "1"]], "asks": [["50001", "1"]]})  # crossed
    journal.close()
    assert feeds.market.books[BTC].asks[0][0] == D("50001") and feeds.bad_frames == 1
    [event] = read_events(journal.path, ["feed"])
    assert event.data["status"] == "bad_frame" and "crossed" in event.data["error"]


# ------------------------------------------------------------------------------------ config and CLI


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


SECTIONS = {
    "exchange": ["id", "timeout_ms", "emulator_url"], "venue": ["retry_base_s", "max_attempts", "rate_headroom"],
    "risk": ["risk_per_trade", "max_leverage", "liq_buffer", "taker_fee"],
    "limits": ["max_order_notional", "max_open_orders", "price_band"],
    "killswitch": ["stale_feed_seconds", "max_drawdown", "on_halt"], "runtime": ["leverage", "poll_seconds"],
}  # fmt: skip
scalar = st.one_of(st.booleans(), st.integers(-(10**6), 10**20), st.floats(), st.text(max_size=8),
                   st.sampled_from(["0.01", "cancel", "binanceusdm", "-1", "1e9"]))  # fmt: skip
symbol_lists = st.lists(st.sampled_from([BTC, "BTCUSDT", ""]) | st.text(max_size=6), max_size=3)
top = st.fixed_dictionaries({}, optional={"mode": st.sampled_from(["demo", "live", "paper", "x"]) | scalar,
                                          "symbols": symbol_lists | scalar, "unknown_key": scalar})  # fmt: skip
sections = st.dictionaries(st.sampled_from([*SECTIONS, "bogus"]), st.dictionaries(
    st.sampled_from([k for keys in SECTIONS.values() for k in keys] + ["typo_setting"]), scalar | st.lists(scalar,
    max_size=2), max_size=4), max_size=4)  # fmt: skip


def write_toml(path: Path, top_level: dict[str, Any], tables: dict[str, dict[str, Any]]) -> None:
    lines = [f"{name} = {toml_value(value)}" for name, value in top_level.items()]
    for table, values in tables.items():
        lines += [f"[{table}]", *(f"{name} = {toml_value(value)}" for name, value in values.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@FUZZ
@given(top_level=top, tables=sections)
def test_a_config_file_loads_or_names_every_problem_on_its_own_line(tmp_path, top_level, tables):
    path = tmp_path / "bot.toml"
    write_toml(path, top_level, tables)
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert exc.problems and all(line.startswith(f"{path}:") for line in exc.problems)
    else:
        assert isinstance(config, BotConfig)


@FUZZ
@given(text=st.text(max_size=200) | st.binary(max_size=100).map(lambda b: b.decode("latin-1")))
def test_any_text_as_a_config_file_loads_or_is_refused_clearly(tmp_path, text):
    path = tmp_path / "bot.toml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_config(path)
    except ConfigError as exc:
        assert all(line.startswith(f"{path}:") for line in exc.problems)


TOKENS = ["size", "check-config", "report", "health", "--side", "long", "short", "--entry", "--stop", "--equity",
          "--leverage", "--mmr", "--qty", "--json", "--max-age", "0", "-1", "1e400", "nan", "50000", "49000", "10",
          "125", "126", "0.004", "nowhere.toml", "nowhere.sqlite", "--bogus"]  # fmt: skip


@FUZZ
@given(argv=st.lists(st.sampled_from(TOKENS) | st.text(max_size=6), max_size=10))
def test_any_command_line_ends_in_an_exit_code_never_a_traceback(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code in (0, 1, 2) and "Traceback" not in out + err


@pytest.mark.parametrize("argv", [["check-config", "\x00"], ["report", "a\x00b"], ["size", "--entry", "\x00"]])
def test_a_nul_byte_in_an_argument_is_one_line_not_a_traceback(capsys, argv):
    """Found by the fuzzer above: click's path check raised ValueError on a NUL byte."""
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == "botkit: error: an argument contains a NUL byte"


@FUZZ
@given(entry=numbers, stop=numbers, equity=numbers, leverage=st.integers(-5, 200) | st.text(max_size=4))
def test_the_size_command_with_absurd_numbers_answers_or_refuses_in_one_line(capsys, entry, stop, equity, leverage):
    argv = ["size", "--side", "long", "--entry", str(entry), "--stop", str(stop), "--equity", str(equity),
            "--leverage", str(leverage), "--mmr", "0.004", "--json"]  # fmt: skip
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if code in (0, 1):  # a report: accepted (0) or rejected with its reasons (1)
        report = json.loads(out)
        assert report["verdict"] == ("accept" if code == 0 else "reject") and D(report["qty"]) >= 0
    else:
        assert code == 2 and len(err.strip().splitlines()) == 1
