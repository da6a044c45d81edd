"""The fleet's account figures (botkit.fleet.risk) against numbers worked by hand."""

from decimal import Decimal as D

from botkit.domain import Order, OrderSide, OrderStatus, OrderType, Position, Side
from botkit.fleet.risk import Held, commitments, limit_units, order_held, position_held, units


def order(side="buy", qty="2", price="100", filled="0", reduce_only=False, symbol="BTC"):
    kind = OrderType.LIMIT if price is not None else OrderType.MARKET
    return Order(symbol, OrderSide(side), kind, D(qty), D(price) if price is not None else None, "c1", None,
                 OrderStatus.OPEN, filled=D(filled), reduce_only=reduce_only)  # fmt: skip


def position(side=Side.LONG, qty="2", entry="100", leverage=None, symbol="BTC"):
    return Position(symbol, side, D(qty), D(entry), None, None, "isolated", None,
                    D(leverage) if leverage else None, D(0))  # fmt: skip


def test_an_opening_order_counts_its_unfilled_part_and_its_loss_at_the_stop():
    # 2 @ 100 with 0.5 filled: 1.5 left; notional 1.5·100 = 150; loss 1.5·(100 − 95) = 7.5
    assert order_held(order(filled="0.5"), D(95), None, D(10)) == Held(D(150), D("7.5"))
    # a sell 1 @ 200, stop 210: notional 200, loss 1·10 = 10
    assert order_held(order("sell", "1", "200"), D(210), None, D(10)) == Held(D(200), D(10))
    # a market buy 1 at the mark 50, stop 48: notional 50, loss 2
    assert order_held(order(qty="1", price=None), D(48), D(50), D(10)) == Held(D(50), D(2))
    # no stop known at 10x: notional 100, loss its margin 100 / 10 = 10
    assert order_held(order(qty="1"), None, None, D(10)) == Held(D(100), D(10))
    assert order_held(order(reduce_only=True), D(95), None, D(10)) == Held()
    assert order_held(order(qty="1", price=None), D(95), None, D(10)) == Held()  # no price at all: the next call


def test_a_position_loses_from_the_entry_or_the_mark_whichever_is_more():
    # long 2 @ 100, mark 110, stop 95: notional 220; loss 2·max(0, 100 − 95, 110 − 95) = 30
    assert position_held(position(), D(110), D(95), D(10)) == Held(D(220), D(30))
    # long 2 @ 100, mark 97, stop 95: notional 194; loss 2·max(5, 2) = 10
    assert position_held(position(), D(97), D(95), D(10)) == Held(D(194), D(10))
    # short 3 @ 50, mark 45, stop 52: notional 135; loss 3·max(0, 52 − 50, 52 − 45) = 21
    assert position_held(position(Side.SHORT, "3", "50"), D(45), D(52), D(10)) == Held(D(135), D(21))
    # long 2 @ 100, a trailing stop at 105 in profit, mark 120: loss 2·max(0, −5, 15) = 30
    assert position_held(position(), D(120), D(105), D(10)) == Held(D(240), D(30))
    # no stop, 5x as the exchange reports it: loss 2·100 / 5 = 40 (the market's 10x not used); no mark: the entry
    assert position_held(position(leverage="5"), None, None, D(10)) == Held(D(200), D(40))


def test_a_bots_commitments_add_its_orders_and_list_its_positions_flat_or_not():
    orders = [(order(filled="0.5"), D(95)), (order("sell", "1", "200", symbol="ETH"), D(210)),
              (order(reduce_only=True), None)]  # fmt: skip
    flying = [(order(qty="1", price=None), None)]  # a market buy in flight, no stop known: at the mark 110, 10x
    held = commitments(orders, flying, {"BTC": position()}, ["BTC", "ETH"], {"BTC": D(110)}, {"BTC": D(95)},
                       {"BTC": 10, "ETH": 10})  # fmt: skip
    assert held.orders == Held(D(350), D("17.5")) and held.open_orders == 3  # the reduce-only order is an order
    assert held.in_flight == Held(D(110), D(11)) and held.in_flight_orders == 1
    assert held.positions == {"BTC": Held(D(220), D(30)), "ETH": Held()}


def test_amounts_go_to_redis_rounded_up_and_limits_rounded_down():
    assert units(D("0.00001")) == 1 and units(D("1.00005")) == 10001 and units(D(0)) == 0
    assert limit_units(D("1.00009")) == 10000 and limit_units(None) == -1
