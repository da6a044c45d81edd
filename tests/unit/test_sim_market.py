"""The synthetic market: deterministic per seed, and each scenario does what it says."""

from decimal import Decimal as D

import pytest

from botkit.domain import OrderSide, OrderType
from botkit.margin import cum_from_rates
from botkit.sim.market import SPECS, Market, book_changes, book_side, levels


def _trace(market: Market, steps: int) -> list[tuple]:
    rows = []
    for _ in range(steps):
        market.step()
        for state in market.symbols.values():
            rows.append((state.index, state.mark, state.funding_rate, tuple(state.bids), tuple(state.asks),
                         tuple((t.price, t.qty) for t in state.trades), state.update_id))  # fmt: skip
    return rows


def test_same_seed_same_market_bit_for_bit():
    assert _trace(Market(seed=3, scenario="trend"), 500) == _trace(Market(seed=3, scenario="trend"), 500)
    assert _trace(Market(seed=3), 50) != _trace(Market(seed=4), 50)


def test_brackets_have_cum_consistent_with_the_recurrence():
    for spec in SPECS:
        assert [t.cum for t in spec.tiers] == cum_from_rates([(t.floor, t.mmr) for t in spec.tiers])
        assert all(a.cap == b.floor for a, b in zip(spec.tiers, spec.tiers[1:], strict=False))


@pytest.mark.parametrize(("scenario", "window"), [("calm", 1), ("calm", 3), ("flash-crash", 5)])
def test_depth_changes_rebuild_the_whole_500_level_book(scenario, window):
    """A client that takes a 500-level snapshot at any step of a diff's window and applies the diff holds
    the exchange's book, level for level: with one step or several in a window, through a crash that moves
    the book further than its depth, and when a level came and went inside the window."""
    market = Market(seed=1, scenario=scenario)
    state = market.symbols["BTCUSDT"]
    marks = {side: book_side(state, side) for side in ("bids", "asks")}
    local: dict[str, dict] = {}
    for i in range(450 if scenario == "flash-crash" else 150):
        market.step()
        for side in ("bids", "asks"):
            marks[side].watch(state, side)
        if i % window == window // 2:  # the client's REST snapshot, taken inside the window
            local = {side: dict(levels(state, side, 500)) for side in ("bids", "asks")}
        if i % window != window - 1:
            continue
        for side in ("bids", "asks"):
            new = book_side(state, side)
            for price, qty in book_changes(state.spec, side, marks[side], new):
                if qty:
                    local[side][price] = qty
                else:
                    local[side].pop(price, None)
            marks[side] = new
            book = levels(state, side, 500)
            assert sorted(local[side].items(), reverse=side == "bids") == book and len(book) == 500
        assert state.bids[0][0] < state.asks[0][0]


def test_flash_crash_drops_ten_to_twenty_percent_then_recovers_partly():
    market = Market(seed=2, scenario="flash-crash")
    state = market.symbols["BTCUSDT"]
    while market.elapsed_s < 29.9:
        market.step()
    before, depth_before = state.index, sum(q for _, q in state.bids)
    while market.elapsed_s < 45:
        market.step()
    depth_crash = sum(q for _, q in state.bids)
    while market.elapsed_s < 59.9:
        market.step()
    low = state.index
    while market.elapsed_s < 120:
        market.step()
    assert D("0.80") <= low / before <= D("0.90")
    assert depth_crash < depth_before / 4  # thin books during the fall
    assert low < state.index < before  # partial recovery


def test_funding_squeeze_pins_funding_at_its_cap():
    market = Market(seed=1, scenario="funding-squeeze")
    market.step()
    assert all(s.funding_rate == s.spec.funding_cap for s in market.symbols.values())


def test_limits_tighten_cuts_max_leverage_to_a_sixteenth_mid_session():
    market = Market(seed=1, scenario="limits-tighten")
    assert market.symbols["BTCUSDT"].tiers[0].max_leverage == 125
    while market.elapsed_s < 31:
        market.step()
    assert market.symbols["BTCUSDT"].tiers[0].max_leverage == 7  # 125 // 16: below the leverage bots trade at


def test_funding_rate_follows_binance_clamp_in_calm_markets():
    market = Market(seed=5, scenario="calm")
    for _ in range(300):
        market.step()
    for state in market.symbols.values():
        assert -state.spec.funding_cap <= state.funding_rate <= state.spec.funding_cap


def test_funding_times_fire_on_the_interval():
    market = Market(seed=1, start_ms=0, funding_interval_s=10)
    due = [market.now_ms for _ in range(250) if market.step()]
    assert due == [10_000, 20_000]


def test_emulator_rate_limiter_grace_then_ban():
    from botkit.sim.server import EmulatorSettings, RateLimiter

    now = [120.0]
    limiter = RateLimiter(EmulatorSettings(weight_per_minute=10, ban_seconds=5, ban_grace_s=1.0), now=lambda: now[0])
    assert [limiter.check("ip", 5)[0] for _ in range(2)] == [None, None]
    status, retry_after, _ = limiter.check("ip", 5)
    assert status == 429 and retry_after == 60.0  # until the minute window ends
    now[0] += 0.5
    assert limiter.check("ip", 1)[0] == 429  # in flight when the 429 went out: no ban yet
    now[0] += 1.0
    status, retry_after, _ = limiter.check("ip", 1)
    assert status == 418 and retry_after == 5.0  # kept sending in the cool-down
    now[0] += 5.0
    assert limiter.check("ip", 1)[0] == 418  # the cool-down still runs to the window's end
    now[0] = 180.0 + 5.0 * 2 + 1  # next window, second ban (10 s) over
    assert limiter.check("ip", 1)[0] is None


def test_order_counts_are_the_accounts_and_never_ban():
    from botkit.sim.server import EmulatorSettings, RateLimiter

    now = [100.0]
    limiter = RateLimiter(EmulatorSettings(orders_per_10s=3, orders_per_minute=100), now=lambda: now[0])
    assert [limiter.count_orders("key-a", (1, 1))[0] for _ in range(3)] == [None, None, None]
    broken, retry_after, headers = limiter.count_orders("key-a", (1, 1))
    assert broken == "3 orders per TEN_SECONDS" and retry_after == 10.0 and headers["X-MBX-ORDER-COUNT-10S"] == "3"
    assert limiter.count_orders("key-b", (1, 1))[0] is None  # another account on the same IP
    assert limiter.count_orders("key-a", (1, 1))[0] is not None  # refused again, never banned
    assert limiter.check("ip", 1)[0] is None  # and the IP's other requests go on
    now[0] = 110.0
    assert limiter.count_orders("key-a", (1, 1))[0] is None  # a new 10 s window


def test_queue_assumption_decides_whether_a_trade_at_the_price_fills_a_resting_order():
    from botkit.sim.engine import Engine
    from botkit.sim.market import Trade

    fills = {}
    for queue in ("back", "front"):
        market = Market(seed=5)
        engine = Engine(market, queue=queue)
        account = engine.add_account("k", "s", D(10_000))
        state = market.symbols["BTCUSDT"]
        price = state.bids[0][0] - D("5")
        engine.place_order(account, symbol="BTCUSDT", side=OrderSide.BUY, type=OrderType.LIMIT, qty=D("0.01"),
                           price=price)  # fmt: skip
        state.trades = [Trade(1, price, D("1"), True, market.now_ms)]  # a print at the order's price, none through
        engine.match_resting("BTCUSDT")
        fills[queue] = [(f.price, f.maker) for f in account.fills]
    assert fills == {"back": [], "front": [(price, True)]}


def test_an_engine_keeping_a_bounded_history_forgets_old_final_orders_but_never_an_open_one():
    """Paper mode's engine: a long session's orders, fills and payments stay within twice the bound."""
    from decimal import Decimal as D

    from botkit.sim.engine import Engine, OrderSide, OrderType
    from botkit.sim.market import Market

    market = Market(seed=3)
    engine = Engine(market, history_kept=50)
    account = engine.add_account("k", "s", D(1_000_000))
    resting = engine.place_order(account, symbol="BTCUSDT", side=OrderSide.BUY, type=OrderType.LIMIT,
                                 qty=D("0.01"), price=D(40000), client_id="keep-me")  # fmt: skip
    for n in range(400):
        engine.place_order(account, symbol="BTCUSDT", side=OrderSide.BUY if n % 2 else OrderSide.SELL,
                           type=OrderType.MARKET, qty=D("0.01"), client_id=f"m{n}")  # fmt: skip
    assert len(account.orders) <= 100 and len(account.fills) <= 100 and len(account.incomes) <= 200
    assert account.orders[resting.id].is_open and engine.find_order(account, "BTCUSDT", None, "keep-me") is resting
    last = engine.find_order(account, "BTCUSDT", None, "m399")
    assert last.status == "FILLED"


def test_funding_is_stamped_with_its_funding_time_not_the_step_that_crossed_it():
    """Binance stamps funding on the hour. A market whose steps are off the funding grid (an emulator
    started at the wall clock's millisecond) crosses the funding time 63 ms late; the records say the hour.
    Before, they said the step, and a test jumping a day failed in the five minutes after each funding time."""
    from decimal import Decimal as D

    from botkit.sim.engine import Engine, OrderSide, OrderType
    from botkit.sim.market import Market

    hour = 8 * 3600 * 1000
    due = 1_796_198_400_000
    assert due % hour == 0
    market = Market(seed=2, start_ms=due - 37, step_ms=100)
    engine = Engine(market)
    account = engine.add_account("k", "s", D(100_000))
    engine.place_order(account, symbol="BTCUSDT", side=OrderSide.BUY, type=OrderType.MARKET, qty=D("0.01"))
    engine.step()
    assert market.now_ms == due + 63
    assert {r["fundingTime"] for r in engine.funding_rates} == {due}
    assert [i.time_ms for i in account.incomes if i.income_type == "FUNDING_FEE"] == [due]
