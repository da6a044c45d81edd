"""Mode paper: market data from the emulator's public streams through the real ccxt.pro client, orders
filled in process by botkit.sim. The emulator computes the same orders for a shadow account of its own,
and the two must agree: fills, fees, funding and the liquidation. And the same strategy on the same
market sends the same orders in paper mode as against the emulator."""

import asyncio
from decimal import Decimal as D

from botkit.config import BotConfig
from botkit.domain import OrderSide, OrderStatus, OrderType, StopRequest
from botkit.runtime.bot import Bot
from botkit.runtime.strategy import Strategy
from botkit.sim.faults import parse_plan
from botkit.sim.server import running_emulator
from botkit.venue.ccxt_venue import build_exchange
from botkit.venue.paper import PaperVenue
from tests.integration.conftest import BTC, settings
from tests.integration.test_runtime import FAST_VENUE, bot_config, events, exchange_orders, live_market
from tests.support import approved

LEVERAGE = 20


def paper_config(emu, tmp_path, **changes) -> BotConfig:
    base = {"mode": "paper", "symbols": [BTC], "venue": FAST_VENUE, "journal": {"path": tmp_path / "paper.sqlite"},
            "exchange": {"api_key": emu.api_key, "api_secret": emu.api_secret, "emulator_url": emu.url}}  # fmt: skip
    return BotConfig(**(base | changes))


async def watch(venue: PaperVenue) -> None:
    """What the runtime's feeds do for the paper venue: keep reading its streams."""

    async def loop(read):
        while True:
            await read()

    await asyncio.gather(loop(lambda: venue.watch_book(BTC)), loop(lambda: venue.watch_mark(BTC)),
                         loop(lambda: venue.watch_trades(BTC)))  # fmt: skip


async def step(emu, venue: PaperVenue, steps: int = 1, *, same_book: bool = True) -> None:
    """Advance the emulator's market and wait until the paper venue has seen the last step (and, with
    `same_book`, its book: not once the paper account's own orders have taken from the paper book)."""
    for _ in range(steps):
        emu.advance_steps(1)
        state = venue.market.symbols["BTCUSDT"]
        for _ in range(200):
            await asyncio.sleep(0.005)
            seen = venue.market.now_ms >= emu.market.now_ms
            if seen and (not same_book or state.bids[:5] == emu.market.symbols["BTCUSDT"].bids[:5]):
                break
        else:
            raise AssertionError(f"the paper venue did not see step {emu.market.steps}")
        await asyncio.sleep(0.01)  # the mark and trade frames of the same step


async def test_paper_fills_funding_and_liquidation_agree_with_the_emulator(tmp_path):
    # Funding pinned at its cap and settled every 5 s: a 20x long pays 0.75 % of its notional each time,
    # so its isolated margin drains until the position is liquidated.
    market = settings(scenario="funding-squeeze", funding_interval_s=5.0)
    async with running_emulator(market) as emu:
        config = paper_config(emu, tmp_path)
        venue = PaperVenue(build_exchange(config, emulator_url=emu.url, streaming=True), config)
        engine, shadow = emu.engine, emu.engine.add_account("shadow", "shadow-secret", config.paper.balance)
        watching = asyncio.create_task(watch(venue))
        try:
            await venue.load_markets()
            await venue.fetch_tiers([BTC])
            await venue.ensure_isolated(BTC, LEVERAGE)
            engine.set_margin_type(shadow, "BTCUSDT", "ISOLATED")
            engine.set_leverage(shadow, "BTCUSDT", LEVERAGE)
            await step(emu, venue, 12)  # books, and a mark frame (one a simulated second)
            state = venue.market.symbols["BTCUSDT"]
            observed = (state.mark, list(state.bids), state.funding_rate)
            await venue.fetch_tiers([BTC])  # as the bot's rules refresh does: what was observed stays
            assert venue.market.symbols["BTCUSDT"] is state and (state.mark, state.bids, state.funding_rate) == observed
            assert venue.engine.taker_fee == engine.taker_fee and venue.engine.maker_fee == engine.maker_fee

            # A market order walks the same visible levels.
            paper = await venue.create_order(approved(BTC, "buy", "market", D("0.5")), client_id="bkpaper1")
            emulated = engine.place_order(shadow, symbol="BTCUSDT", side=OrderSide.BUY, type=OrderType.MARKET,
                                          qty=D("0.5"))  # fmt: skip
            assert paper.filled == emulated.filled == D("0.5")
            assert paper.average == emulated.average
            pos, twin = venue.account.position("BTCUSDT"), shadow.position("BTCUSDT")
            assert (pos.qty, pos.entry, pos.isolated_wallet) == (twin.qty, twin.entry, twin.isolated_wallet)
            assert [(f.price, f.qty, f.commission) for f in venue.account.fills] == \
                [(f.price, f.qty, f.commission) for f in shadow.fills]  # fmt: skip

            # A resting limit order fills when the market trades through it, at its price, as maker.
            bid = emu.market.symbols["BTCUSDT"].bids[0][0]
            price = bid - 20 * D("0.1")
            await venue.create_order(approved(BTC, "buy", "limit", D("0.01"), price), client_id="bkpaper2")
            engine.place_order(shadow, symbol="BTCUSDT", side=OrderSide.BUY, type=OrderType.LIMIT, qty=D("0.01"),
                               price=price)  # fmt: skip
            for _ in range(600):
                await step(emu, venue)
                if len(shadow.fills) == 2 or shadow.positions["BTCUSDT"].qty == 0:
                    break
            assert len(shadow.fills) == 2, "the limit order should fill before the liquidation"
            assert len(venue.account.fills) == 2
            assert venue.account.fills[1].price == shadow.fills[1].price == price
            assert venue.account.fills[1].commission == shadow.fills[1].commission  # the maker fee

            # Funding, then the liquidation it forces.
            for _ in range(1500):
                if not shadow.positions["BTCUSDT"].qty and not venue.account.positions["BTCUSDT"].qty:
                    break
                await step(emu, venue)
            paid = [(i.amount, i.time_ms) for i in venue.account.incomes if i.income_type == "FUNDING_FEE"]
            shadow_paid = [(i.amount, i.time_ms) for i in shadow.incomes if i.income_type == "FUNDING_FEE"]
            assert len(paid) >= 2 and all(amount < 0 for amount, _ in paid)  # a long pays a positive rate
            assert paid == shadow_paid
            [liquidated] = venue.engine.liquidations
            [shadow_liquidated] = [x for x in engine.liquidations if x["account"] == "shadow"]
            for key in ("symbol", "side", "qty", "entry", "liquidation_price", "isolated_wallet_lost"):
                assert liquidated[key] == shadow_liquidated[key], key
            assert abs(liquidated["time"] - shadow_liquidated["time"]) <= 1000  # the paper venue sees marks each second
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            await venue.close()
        [emulator_account] = [a for a in engine.accounts.values() if a.api_key == emu.api_key]
        assert emulator_account.orders == {}  # nothing the paper venue did reached the exchange


class EverySecondBar(Strategy):
    """Opens on even bars (in the bar's direction) and closes on odd ones: its orders depend only on the
    bars, so two bots watching the same market must send the same orders."""

    timeframe = 1.0

    def __init__(self, params) -> None:
        super().__init__(params)
        self.orders: dict[int, tuple[str, bool]] = {}  # bar start -> (side, reduce_only)
        self.holding: str | None = None
        self.bars = 0

    async def on_bar(self, ctx, bar):
        self.bars += 1
        if self.bars == 1:
            return  # the first bar began before the stream did: partial, and not the same for two bots
        if bar.start_ms // 1000 % 2 == 0 and self.holding is None and bar.close != bar.open:
            side = "buy" if bar.close > bar.open else "sell"
            stop = bar.close * (D("0.98") if side == "buy" else D("1.02"))
            result = await (ctx.buy if side == "buy" else ctx.sell)(bar.symbol, D("0.01"), stop=stop)
            if hasattr(result, "client_id"):
                self.holding, self.orders[bar.start_ms] = side, (side, False)
        elif bar.start_ms // 1000 % 2 == 1 and self.holding is not None:
            side = "sell" if self.holding == "buy" else "buy"
            result = await (ctx.sell if side == "sell" else ctx.buy)(bar.symbol, D("0.01"), stop=None, reduce_only=True)
            if hasattr(result, "client_id"):
                self.holding, self.orders[bar.start_ms] = None, (side, True)


async def test_a_paper_stop_triggers_on_the_observed_mark_and_closes_the_position(tmp_path):
    async with running_emulator(settings()) as emu:
        config = paper_config(emu, tmp_path)
        venue = PaperVenue(build_exchange(config, emulator_url=emu.url, streaming=True), config)
        watching = asyncio.create_task(watch(venue))
        try:
            await venue.load_markets()
            await venue.fetch_tiers([BTC])
            await venue.ensure_isolated(BTC, LEVERAGE)
            await step(emu, venue, 12)
            await venue.create_order(approved(BTC, "buy", "market", D("0.1")), client_id="bkpaper1")
            mark = venue.market.symbols["BTCUSDT"].mark
            trigger = (mark * D("0.998")).quantize(D("0.1"))
            stop = await venue.place_stop(StopRequest(BTC, OrderSide.SELL, OrderType.STOP_MARKET, D("0.1"), trigger,
                                                      "bkpaperstop"))  # fmt: skip
            assert stop.status is OrderStatus.OPEN and stop.trigger == trigger
            assert [s.client_id for s in await venue.fetch_open_stops(BTC)] == ["bkpaperstop"]
            emu.faults = parse_plan({"rules": [{"kind": "mark_divergence", "value": -50}]})  # the mark falls through
            for _ in range(30):  # the stop's own sell takes bids from the paper book, as it should: the books differ
                await step(emu, venue, same_book=False)
                if not venue.account.position("BTCUSDT").qty:
                    break
            assert venue.account.position("BTCUSDT").qty == 0
            assert (await venue.fetch_stop(BTC, client_id="bkpaperstop")).status is OrderStatus.TRIGGERED
            assert venue.account.fills[-1].client_id == "bkpaperstop"  # its own order closed the position
        finally:
            watching.cancel()
            await venue.close()


async def test_the_same_strategy_sends_the_same_orders_in_paper_mode_and_against_the_emulator(tmp_path):
    async with running_emulator(live_market(scenario="calm", speed=10.0)) as emu:
        (tmp_path / "demo").mkdir()
        (tmp_path / "paper").mkdir()
        demo_config = bot_config(emu, tmp_path / "demo")
        paper_config_ = bot_config(emu, tmp_path / "paper", mode="paper")
        demo, paper = EverySecondBar(EverySecondBar.Params()), EverySecondBar(EverySecondBar.Params())
        demo_summary, paper_summary = await asyncio.gather(
            Bot(demo_config, demo).run(duration=5), Bot(paper_config_, paper).run(duration=5)
        )
        sent_to_exchange = {o.client_id for o in exchange_orders(emu)}
        stops_on_exchange = {a.client_id for account in emu.engine.accounts.values() for a in account.algos.values()}
    assert demo_summary.crashed is None and paper_summary.crashed is None
    common = sorted(set(demo.orders) & set(paper.orders))
    assert len(common) >= 6, (demo.orders, paper.orders)
    first, last = common[0], common[-1]
    in_range = [{k: v for k, v in bot.orders.items() if first <= k <= last} for bot in (demo, paper)]
    assert in_range[0] == in_range[1]
    print(f"orders on {len(common)} common bars, {len(in_range[0])} in their range")
    paper_sent = {e.client_id for e in events(paper_config_, "order.sending")}
    assert paper_sent and not paper_sent & sent_to_exchange  # paper orders never reached the exchange
    paper_stops = {e.client_id for e in events(paper_config_, "stop.sending")}
    assert paper_stops and not paper_stops & stops_on_exchange  # paper stops are held by the paper engine
    assert len(events(paper_config_, "fill")) >= len(common)
