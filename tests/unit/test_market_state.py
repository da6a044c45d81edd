"""Market state: the freshest mark from any source reaches the gate and the liquidation guard. Found by an
adversary: with the WebSocket mark stream frozen during a crash and REST healthy, the guard read only the
frozen stream, made no cut, and the position was liquidated."""

from decimal import Decimal as D

from botkit.clock import ManualClock
from botkit.domain import MarkPrice
from botkit.margin import MarketRules
from botkit.runtime.market_state import MarketState
from tests.support import BTC_TIERS

BTC = "BTC/USDT:USDT"


async def test_a_mark_read_with_the_positions_replaces_a_frozen_stream():
    clock = ManualClock()
    market = MarketState(clock)
    market.rules[BTC], market.tiers[BTC], market.leverage[BTC] = MarketRules(D("0.001"), D("0.1")), BTC_TIERS, 10
    market.set_mark(BTC, MarkPrice(BTC, D(50000), D(50000), None, None, None))
    await clock.advance(5)  # the stream froze at 50000 ...
    market.set_account_mark(BTC, D(46000))  # ... while the account read sees the crash
    assert market.mark(BTC) == (D(46000), clock.monotonic())
    view = market.view(BTC)
    assert view.mark == D(46000) and view.mark_at == clock.monotonic()
    await clock.advance(1)
    market.set_mark(BTC, MarkPrice(BTC, D(45900), D(45900), None, None, None))  # the stream is back: newest wins
    assert market.mark(BTC) == (D(45900), clock.monotonic())
