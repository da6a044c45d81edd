"""Runtime parts without a network: order tracking, bars, journal history, strategy loading, `botkit run`'s
refusals."""

from decimal import Decimal as D

import pytest

from botkit.cli import main
from botkit.config import ConfigError
from botkit.domain import Order, OrderStatus
from botkit.runtime.feeds import BarBuilder
from botkit.runtime.journal import Event
from botkit.runtime.orders import JournalHistory, OrderTracker
from botkit.runtime.strategy import load_strategy, make_strategy
from strategies.sma_cross import SmaCross
from tests.support import ROOT

BTC = "BTC/USDT:USDT"


def order(status=OrderStatus.OPEN, filled="0", average=None, cid="bk1", side="buy", qty="3", price="100"):
    return Order(BTC, side, "limit", D(qty), D(price), cid, "1", status, D(filled),
                 D(average) if average else None)  # fmt: skip


def test_the_tracker_reports_each_change_once_and_prices_each_fill_increment():
    tracker = OrderTracker()
    assert tracker.update(order())[0] is not None
    assert tracker.update(order()) == (None, None)  # the same report again: nothing new
    changed, fill = tracker.update(order(filled="1", average="100"))
    assert fill.qty == D(1) and fill.price == D(100)
    # 1 @ 100, then 3 in all averaging 102: the increment of 2 cost (3·102 − 1·100) / 2 = 103
    changed, fill = tracker.update(order(OrderStatus.FILLED, filled="3", average="102"))
    assert changed.status is OrderStatus.FILLED and fill.qty == D(2) and fill.price == D(103)
    assert tracker.fills == 2 and tracker.open() == []


def test_the_tracker_never_reopens_a_final_order_or_shrinks_its_fill():
    tracker = OrderTracker()
    tracker.update(order(OrderStatus.CANCELED, filled="1", average="100"))
    assert tracker.update(order(OrderStatus.OPEN, filled="1", average="100")) == (None, None)  # late stream frame
    tracker.update(order(OrderStatus.OPEN, cid="bk2", filled="2", average="100"))
    changed, fill = tracker.update(order(OrderStatus.CANCELED, cid="bk2", filled="1", average="100"))
    assert changed.filled == D(2) and fill is None


def test_a_final_order_reported_again_after_many_others_is_not_a_new_order_or_fill():
    """Found under timeout-after-accept: forgetting final orders at each reconcile made a late answer for
    one a new order, its fill counted twice. Final orders are remembered, boundedly."""
    tracker = OrderTracker(final_kept=100)
    tracker.update(order(OrderStatus.FILLED, filled="3", average="100", cid="late"))
    for n in range(99):
        tracker.update(order(OrderStatus.FILLED, filled="3", average="100", cid=f"bk{n}"))
    assert tracker.update(order(OrderStatus.FILLED, filled="3", average="100", cid="late")) == (None, None)
    assert tracker.fills == 100 and tracker.open() == []
    for n in range(99, 1000):
        tracker.update(order(OrderStatus.CANCELED, cid=f"bk{n}"))
    assert len(tracker.final) == 100 and tracker.live == {}  # memory stays flat


def test_unknown_orders_count_as_open_exposure():
    tracker = OrderTracker()
    tracker.update(order(OrderStatus.UNKNOWN))
    assert [o.client_id for o in tracker.open()] == ["bk1"]


def event(kind, cid, **data):
    return Event(0, "s", 0, 0.0, kind, BTC, cid, data)


def test_journal_history_adds_up_the_fills_of_this_bots_orders():
    sending = {"type": "market", "qty": "1", "price": None, "reduce_only": False, "tag": None, "source": "strategy"}
    report = {"source": "stream", "average": None, "id": "1", "type": "market", "qty": "1", "price": None}
    history = JournalHistory([
        event("order.sending", "bk1", side="buy", **sending),
        event("order", "bk1", status="filled", filled="0.5", side="buy", **report),
        event("order.sending", "bk2", side="sell", **sending),
        event("order", "bk2", status="open", filled="0.2", side="sell", **report),
        event("order.sending", "bk3", side="sell", **sending),  # sent, never answered
        event("order", "foreign", status="filled", filled="9", side="buy", **report),  # not this bot's: ignored
    ])  # fmt: skip
    assert history.positions() == {BTC: D("0.3")}
    assert [s.client_id for s in history.unsettled()] == ["bk2", "bk3"]
    history.learn("bk3", OrderStatus.FILLED, D("0.3"))
    assert history.positions() == {} and [s.client_id for s in history.unsettled()] == ["bk2"]


def test_bars_close_when_a_trade_of_the_next_bar_arrives():
    bars = BarBuilder(BTC, 5)
    assert bars.add(1_000, D(10), D(1)) is None
    assert bars.add(2_000, D(12), D(1)) is None
    assert bars.add(3_000, D(9), D(2)) is None
    bar = bars.add(5_000, D(11), D(1))
    assert (bar.start_ms, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades) == (
        0, D(10), D(12), D(9), D(9), D(4), 3)  # fmt: skip
    assert bars.add(4_999, D(50), D(1)) is None  # late trade of a closed bar: dropped
    assert bars.add(10_000, D(11), D(1)).close == D(11)


def test_strategies_load_by_name_or_module_class_with_clear_errors():
    assert load_strategy("sma_cross") is SmaCross
    assert load_strategy("strategies.sma_cross:SmaCross") is SmaCross
    with pytest.raises(ConfigError, match=r"no module 'strategies\.nope'"):
        load_strategy("nope")
    with pytest.raises(ConfigError, match="has no Strategy subclass 'Nope'"):
        load_strategy("strategies.sma_cross:Nope")


def test_strategy_parameters_are_validated_one_line_each():
    with pytest.raises(ConfigError) as caught:
        make_strategy(SmaCross, {"typo": 1})
    assert caught.value.problems == [
        "params (SmaCross): typo = 1: unknown setting (check the spelling; see config/demo.toml for every setting)"
    ]
    with pytest.raises(ConfigError) as caught:
        make_strategy(SmaCross, {"fast": 30, "slow": 10})
    assert caught.value.problems == ["params (SmaCross): fast must be shorter than slow"]


def write(tmp_path, text):
    path = tmp_path / "bot.toml"
    path.write_text(text)
    return path


def test_run_refuses_live_without_the_flag_and_with_guardrails_off(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BOTKIT_EXCHANGE__API_KEY", "k" * 16)
    monkeypatch.setenv("BOTKIT_EXCHANGE__API_SECRET", "s" * 16)
    live = write(tmp_path, 'mode = "live"\n[killswitch]\nliq_guard_buffer = 0\n')
    assert main(["run", "--config", str(live)]) == 2
    assert "add --live to confirm" in capsys.readouterr().err
    assert main(["run", "--config", str(live), "--live"]) == 2
    assert "liquidation guard off" in capsys.readouterr().err


def test_run_rejects_an_unknown_strategy_and_bad_params_in_one_line(tmp_path, capsys):
    assert main(["run", "--strategy", "nope", "--config", str(write(tmp_path, ""))]) == 2
    assert capsys.readouterr().err.strip().startswith("botkit: config error: strategy = 'nope'")
    bad = write(tmp_path, "[params]\nfast = 0\n")
    assert main(["run", "--config", str(bad)]) == 2
    assert "params (SmaCross): fast = 0" in capsys.readouterr().err


def test_example_strategies_are_all_loadable():
    for path in sorted((ROOT / "strategies").glob("[!_]*.py")):
        cls = load_strategy(path.stem)
        make_strategy(cls, {})
