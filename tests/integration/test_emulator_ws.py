"""ccxt.pro over the emulator's WebSocket streams: public market data and the private user stream."""

import asyncio

import ccxt.pro as ccxt_pro
import pytest
from ccxt.base import errors

from botkit.sim.server import running_emulator
from tests.integration.conftest import BTC, connected, market_running, settings


async def test_public_streams(pro, emulator):
    async with market_running(emulator):
        nonces = []
        for _ in range(4):  # ccxt raises ChecksumError on a broken U/u/pu chain
            book = await asyncio.wait_for(pro.watch_order_book(BTC), 5)
            nonces.append(book["nonce"])
            assert book["bids"][0][0] < book["asks"][0][0]
        assert nonces == sorted(nonces) and len(set(nonces)) == 4
        assert (await asyncio.wait_for(pro.watch_ticker(BTC), 5))["last"] > 0
        mark = await asyncio.wait_for(pro.watch_mark_price(BTC), 5)
        assert mark["markPrice"] > 0 and mark["indexPrice"] > 0
        assert len(await asyncio.wait_for(pro.watch_trades(BTC), 5)) >= 1
        assert BTC in await asyncio.wait_for(pro.watch_bids_asks([BTC]), 5)


async def test_private_stream_orders_positions_and_funding(pro, emulator):
    async with market_running(emulator):
        await pro.set_margin_mode("isolated", BTC)
        orders = asyncio.ensure_future(pro.watch_orders(BTC))
        await asyncio.sleep(0.2)
        await pro.create_order(BTC, "market", "buy", 0.01, params={"clientOrderId": "bk-ws-1"})
        seen = await asyncio.wait_for(orders, 5)
        assert seen[-1]["clientOrderId"] == "bk-ws-1"
        positions = asyncio.ensure_future(pro.watch_positions([BTC]))
        await asyncio.sleep(0.2)
        await pro.create_order(BTC, "market", "buy", 0.01)
        [position] = await asyncio.wait_for(positions, 5)
        assert position["side"] == "long" and position["marginMode"] == "isolated"
        balance = asyncio.ensure_future(pro.watch_balance())
        await asyncio.sleep(0.2)
        emulator.advance_seconds((emulator.market.next_funding_ms - emulator.market.now_ms) / 1000)
        assert (await asyncio.wait_for(balance, 5))["USDT"]["total"] > 0
        assert emulator.engine.funding_events  # the settlement that pushed that ACCOUNT_UPDATE


async def test_feed_stall_freezes_websocket_market_data_while_rest_answers():
    async with running_emulator(settings(scenario="feed-stall")) as emu:
        emu.advance_seconds(25)  # the scenario freezes the streams from 20 s to 80 s
        async with connected(ccxt_pro, emu) as pro, market_running(emu):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pro.watch_trades(BTC), 1.0)
            assert (await pro.fetch_ticker(BTC))["last"] > 0


async def test_injected_websocket_disconnect():
    async with running_emulator(settings()) as emu, connected(ccxt_pro, emu) as pro, market_running(emu):
        await asyncio.wait_for(pro.watch_ticker(BTC), 5)
        emu.faults = emu.faults.model_validate({"rules": [{"kind": "ws_disconnect", "count": 1}]})
        with pytest.raises(errors.NetworkError):  # what a feed sees when the venue drops it
            for _ in range(50):
                await asyncio.wait_for(pro.watch_ticker(BTC), 5)
