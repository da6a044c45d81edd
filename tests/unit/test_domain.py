"""Sides and order types are enums that still compare equal to their strings."""

from decimal import Decimal as D

from botkit.domain import OrderIntent, OrderSide, OrderType, Side


def test_an_intent_given_strings_holds_the_enums():
    intent = OrderIntent("BTC/USDT:USDT", "sell", D("0.1"), "limit", D("50000"))
    assert intent.side is OrderSide.SELL and intent.type is OrderType.LIMIT
    assert intent.side == "sell" and intent.type == "limit"


def test_an_unknown_side_or_type_is_left_for_the_gate_to_name():
    intent = OrderIntent("BTC/USDT:USDT", "hodl", type=[])  # type: ignore[arg-type]
    assert intent.side == "hodl" and intent.type == []


def test_signs_and_the_side_that_closes():
    assert (OrderSide.BUY.sign, OrderSide.SELL.sign) == (1, -1)
    assert OrderSide.BUY.opens is Side.LONG and OrderSide.SELL.opens is Side.SHORT
    assert OrderSide.closing(Side.LONG) is OrderSide.SELL and OrderSide.closing(Side.SHORT) is OrderSide.BUY
