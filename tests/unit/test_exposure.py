"""The running exposure totals agree with a count from scratch after any sequence of changes (orders
placed, filled in part, cancelled; positions opened, moved, closed; marks moving), and come back to exactly
zero when everything is gone. The gate reads them instead of scanning every order."""

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from botkit.domain import Order, OrderStatus, Position, Side
from botkit.guards.exposure import Exposure

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "XRP/USDT:USDT")


def position(symbol: str, side: Side, qty: D) -> Position:
    return Position(symbol, side, qty, D(100), None, None, "isolated", None, None, D(0))


def order(cid: str, symbol: str, side: str, qty: D, price: D | None, filled: D, status: OrderStatus,
          reduce_only: bool = False) -> Order:  # fmt: skip
    return Order(symbol, side, "limit" if price else "market", qty, price, cid, None, status, filled,
                 reduce_only=reduce_only)  # fmt: skip


def figures(e: Exposure) -> tuple:
    sides = {(s, g): e.side_notional(s, g) for s in SYMBOLS for g in (1, -1)}
    resting = {(s, g): e.resting(s, g, D(7)) for s in SYMBOLS for g in (1, -1)}
    return e.total, sides, resting, e.open_orders, e.positions_held


amounts = st.decimals(D("0.001"), D(50), places=3)
steps = st.lists(st.one_of(
    st.tuples(st.just("order"), st.integers(0, 6), st.sampled_from(SYMBOLS), st.sampled_from(["buy", "sell"]),
              amounts, st.one_of(st.none(), st.decimals(D(1), D(1000), places=2)), st.integers(0, 100),
              st.sampled_from([OrderStatus.OPEN, OrderStatus.UNKNOWN, OrderStatus.FILLED, OrderStatus.CANCELED]),
              st.booleans()),
    st.tuples(st.just("position"), st.sampled_from(SYMBOLS), st.sampled_from([Side.LONG, Side.SHORT]),
              st.decimals(D(0), D(20), places=3)),
    st.tuples(st.just("mark"), st.sampled_from(SYMBOLS), st.decimals(D("0.5"), D(5000), places=4)),
), max_size=40)  # fmt: skip


@settings(max_examples=200, deadline=None, derandomize=True)
@given(steps)
def test_running_totals_match_a_count_from_scratch(plan):
    live = Exposure()
    orders: dict[str, Order] = {}
    positions: dict[str, Position] = {}
    marks: dict[str, D] = {}
    for step in plan:
        if step[0] == "order":
            _, n, symbol, side, qty, price, pct, status, reduce_only = step
            filled = (qty * pct / 100).quantize(D("0.001"))
            o = order(f"c{n}", symbol, side, qty, price, filled, status, reduce_only)
            live.order(o.client_id, o)
            if status.final:
                orders.pop(o.client_id, None)
            else:
                orders[o.client_id] = o
        elif step[0] == "position":
            _, symbol, side, qty = step
            held = position(symbol, side, qty) if qty else None
            live.position(symbol, held)
            if held:
                positions[symbol] = held
            else:
                positions.pop(symbol, None)
        else:
            _, symbol, mark = step
            live.mark(symbol, mark)
            marks[symbol] = mark
        assert figures(live) == figures(Exposure.of(positions, orders.values(), marks))
    for cid in list(orders):
        live.order(cid, None)
    live.positions({})
    assert live.total == 0 and str(live.total) == "0" and live.open_orders == 0 and live.positions_held == 0


def test_worked_figures():
    # long 2 BTC at mark 100 = 200; a resting buy of 3 (1 filled) at 90 = 180; a market buy of 1 at the mark = 100
    # a resting sell of 4 at 110 = 440 on the other side; a reduce-only sell counts as an open order only
    e = Exposure()
    e.mark("B", D(100))
    e.position("B", position("B", Side.LONG, D(2)))
    e.order("a", order("a", "B", "buy", D(3), D(90), D(1), OrderStatus.OPEN))
    e.order("b", order("b", "B", "buy", D(1), None, D(0), OrderStatus.UNKNOWN))
    e.order("c", order("c", "B", "sell", D(4), D(110), D(0), OrderStatus.OPEN))
    e.order("d", order("d", "B", "sell", D(2), D(120), D(0), OrderStatus.OPEN, reduce_only=True))
    assert e.side_notional("B", 1) == D(480) and e.side_notional("B", -1) == D(440) and e.total == D(920)
    assert e.resting("B", 1, D(100)) == (D(3), D(280)) and e.open_orders == 4 and e.positions_held == 1
    e.mark("B", D(200))  # position 400, market buy 200, limit 180
    assert e.side_notional("B", 1) == D(780) and e.total == D(1220)
    e.order("a", order("a", "B", "buy", D(3), D(90), D(3), OrderStatus.FILLED))
    assert e.side_notional("B", 1) == D(600) and e.open_orders == 3
