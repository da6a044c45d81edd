"""The whole bot (runtime, gate, kill switch, guarded venue, real ccxt and ccxt.pro) against the emulator
running its own clock: each example strategy trades; the guardrails act on their own; a WebSocket drop
falls back to REST; a halt cancels and flattens on the exchange."""

import asyncio
import time
from decimal import Decimal as D
from pathlib import Path

from botkit.config import BotConfig
from botkit.domain import TradingState
from botkit.guards.control import control_path, send
from botkit.runtime.bot import Bot
from botkit.runtime.journal import read_events
from botkit.runtime.orders import JournalHistory
from botkit.runtime.strategy import Strategy, make_strategy
from botkit.sim.server import EmulatorSettings, running_emulator
from strategies.funding_carry import FundingCarry
from strategies.grid_maker import GridMaker
from strategies.sma_cross import SmaCross
from tests.integration.conftest import BTC
from tests.integration.test_venue import put_faults

# The tests' bots read their account every 0.5 s and reconcile every second, ten times as often as a real
# bot, so their reads may spend ten times Binance's 2,400 weight a minute (start-up refuses less).
FAST_VENUE = {"retry_base_s": 0.05, "retry_cap_s": 0.5, "unknown_settle_s": 0.1, "call_deadline_s": 10,
              "rate_limits": {"weight_1m": 24_000}}


def live_market(**changes) -> EmulatorSettings:
    """A market on its own clock, its event times on the wall clock (so the event-lag check holds)."""
    return EmulatorSettings(**({"seed": 11, "speed": 20.0, "scenario": "trend"} | changes))


def bot_config(emu, tmp_path, **sections) -> BotConfig:
    base = {
        "mode": "demo",
        "symbols": [BTC],
        "exchange": {"api_key": emu.api_key, "api_secret": emu.api_secret, "emulator_url": emu.url},
        "venue": FAST_VENUE,
        "journal": {"path": tmp_path / "journal.sqlite"},
        "killswitch": {"stale_feed_seconds": 2},
        "runtime": {"poll_seconds": "0.2", "account_seconds": "0.5", "reconcile_seconds": 1},
    }
    for name, values in sections.items():
        base[name] = base.get(name, {}) | values if isinstance(values, dict) else values
    return BotConfig(**base)


def events(config: BotConfig, *kinds: str):
    return list(read_events(config.journal.path, kinds or None))


def exchange_orders(emu) -> list:
    [account] = emu.engine.accounts.values()
    return list(account.orders.values())


def assert_journal_knows_every_order(emu, config) -> None:
    """Every order and stop on the exchange was journalled before it was sent (a triggered stop's own
    order carries the stop's client id)."""
    [account] = emu.engine.accounts.values()
    on_exchange = [o.client_id for o in exchange_orders(emu) if o.algo_id is None]
    stops = [a.client_id for a in account.algos.values()]
    assert len(on_exchange + stops) == len(set(on_exchange + stops)), "a client id was used twice"
    sent = {e.client_id for e in events(config, "order.sending")}
    stops_sent = {e.client_id for e in events(config, "stop.sending")}
    assert set(on_exchange) <= sent, f"orders unknown to the journal: {set(on_exchange) - sent}"
    assert set(stops) <= stops_sent, f"stops unknown to the journal: {set(stops) - stops_sent}"


async def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class QuickSma(SmaCross):
    timeframe = 1.0  # one bar a simulated second: crossings within seconds at 20x


async def test_sma_cross_trades_and_journals_every_step(tmp_path):
    async with running_emulator(live_market()) as emu:
        config = bot_config(emu, tmp_path, params={"fast": 2, "slow": 4, "atr_bars": 3})
        summary = await Bot(config, make_strategy(QuickSma, config.params)).run(duration=5)
    assert summary.crashed is None and summary.stats.fills >= 1
    kinds = {e.kind for e in events(config)}
    assert {"session.started", "reconcile", "intent", "verdict", "order.sending", "order", "fill",
            "session.stopped"} <= kinds  # fmt: skip
    intent = events(config, "intent")[0]
    assert intent.data["figures"]["mark"] is not None and intent.data["figures"]["mark_age_s"] < 2
    assert_journal_knows_every_order(emu, config)
    [started] = events(config, "session.started")
    assert started.data["config"]["exchange"]["api_secret"] == "**********"  # secrets masked


async def test_grid_maker_keeps_many_orders_within_the_rate_limits_and_cancels_them_at_the_end(tmp_path):
    async with running_emulator(live_market(scenario="calm")) as emu:
        config = bot_config(emu, tmp_path, params={"levels": 4, "refresh_seconds": 0.2})
        summary = await Bot(config, make_strategy(GridMaker, config.params)).run(duration=4)
        [account] = emu.engine.accounts.values()
        assert account.open_orders() == []  # cancel_on_exit
        assert not emu.limiter.answered.get(429) and not emu.limiter.answered.get(418)
    assert summary.crashed is None
    assert summary.stats.sent >= 8 and summary.stats.cancels >= 8
    assert_journal_knows_every_order(emu, config)


async def test_funding_carry_holds_the_receiving_side_and_journals_the_funding(tmp_path):
    market = live_market(scenario="funding-squeeze", funding_interval_s=10.0)  # a funding every 0.5 s
    async with running_emulator(market) as emu:
        config = bot_config(emu, tmp_path)
        summary = await Bot(config, make_strategy(FundingCarry, {})).run(duration=4)
    assert summary.crashed is None
    assert [p.side.value for p in summary.positions.values()] == ["short"]  # longs pay: hold the short
    funding = events(config, "funding")
    assert funding and all(D(e.data["amount"]) > 0 for e in funding)


class Raising(Strategy):
    async def on_quote(self, ctx, quote):
        raise RuntimeError("strategy bug")


async def test_a_raising_strategy_does_not_stop_the_guardrails(tmp_path):
    async with running_emulator(live_market()) as emu:
        config = bot_config(emu, tmp_path)
        bot = Bot(config, Raising(Raising.Params()))
        run = asyncio.create_task(bot.run(duration=3))
        await wait_for(lambda: bot.stats.strategy_errors > 5, 10)
        send(control_path(config.journal.path), "halt", "operator test")
        await wait_for(lambda: bot.ks.state is TradingState.HALTED, 5)  # the control channel still works
        summary = await run
    assert summary.crashed is None and summary.reason == "duration"
    [first, *_] = events(config, "strategy.error")
    assert first.data["error"] == "RuntimeError: strategy bug"
    line = next(n for n, text in enumerate(Path(__file__).read_text().splitlines(), 1) if "strategy bug" in text)
    assert first.data["where"] == f"{__file__}:{line}"  # where to look: the strategy's own line
    assert 'raise RuntimeError("strategy bug")' in first.data["traceback"]


async def test_a_raising_strategy_halts_when_the_config_says_so(tmp_path):
    async with running_emulator(live_market()) as emu:
        config = bot_config(emu, tmp_path, runtime={"on_strategy_error": "halt"})
        summary = await Bot(config, Raising(Raising.Params())).run(duration=2)
    assert summary.state is TradingState.HALTED
    tripped = [e for e in events(config, "killswitch") if e.data["event"] == "tripped"]
    assert tripped[0].data["trigger"] == "strategy_error"


async def test_a_websocket_drop_falls_back_to_rest_and_recovers(tmp_path):
    async with running_emulator(live_market(scenario="calm")) as emu:
        config = bot_config(emu, tmp_path, params={"fast": 2, "slow": 4})
        bot = Bot(config, make_strategy(QuickSma, config.params))
        run = asyncio.create_task(bot.run())
        await wait_for(lambda: bot.feeds.ready(), 10)
        now = emu.market.elapsed_s  # public streams dropped for 40 simulated seconds (2 s here, longer under load)
        await put_faults(emu, {"kind": "ws_disconnect", "start": now, "end": now + 40})
        await wait_for(lambda: f"book:{BTC}" in bot.feeds.down, 5)
        await wait_for(lambda: f"book:{BTC}" not in bot.feeds.down, 30)  # back: on the event, not a fixed run
        bot.stop()
        summary = await run
    feed = events(config, "feed")
    down = [e.data for e in feed if e.data["status"] == "down" and e.data["stream"] == f"book:{BTC}"]
    up = [e.data for e in feed if e.data["status"] == "up" and e.data["stream"] == f"book:{BTC}"]
    assert down and down[0]["fallback"] == "rest polling" and up
    assert bot.feeds.polls > 0
    assert not [e for e in events(config, "killswitch") if e.data["trigger"] == "stale_feed"]  # REST kept it fresh
    assert summary.state is TradingState.ACTIVE


async def test_a_halt_with_cancel_and_flatten_closes_the_position_on_the_exchange(tmp_path):
    market = live_market(scenario="funding-squeeze")
    async with running_emulator(market) as emu:
        config = bot_config(emu, tmp_path, killswitch={"on_halt": "cancel_and_flatten"})
        bot = Bot(config, make_strategy(FundingCarry, {}))
        run = asyncio.create_task(bot.run(duration=10))
        [account] = emu.engine.accounts.values()
        held = lambda: account.positions["BTCUSDT"].qty if "BTCUSDT" in account.positions else 0  # noqa: E731
        await wait_for(lambda: held() != 0, 10)
        send(control_path(config.journal.path), "halt", "flatten test")
        await wait_for(lambda: held() == 0, 10)
        bot.stop("test done")
        summary = await run
    assert summary.state is TradingState.HALTED
    flatten = [e.data for e in events(config, "halt.action") if e.data["action"] == "flatten"]
    assert flatten and "FILLED" in flatten[0]["result"].upper()
    assert JournalHistory(events(config)).positions() == {}  # the journal's fills add up to flat
