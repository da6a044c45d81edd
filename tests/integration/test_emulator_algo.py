"""The real ccxt clients against the emulator's Algo Order API (Binance's conditional orders since
2025-12-09): every call botkit makes for its exchange-held stops, the refusals, the trigger and its
regular order, the user stream's ALGO_UPDATE, and the faults of the algo service."""

import asyncio
from decimal import Decimal as D

import ccxt.pro as ccxt_pro
import pytest
from ccxt.base import errors

from botkit.domain import OrderSide, OrderType
from botkit.sim.engine import AlgoChanged
from botkit.sim.faults import parse_plan
from tests.integration.conftest import BTC, connected


def _mark(emulator) -> D:
    return emulator.market.symbols["BTCUSDT"].mark


async def _long(exchange, qty: float = 0.01) -> None:
    await exchange.set_margin_mode("isolated", BTC)
    await exchange.set_leverage(10, BTC)
    await exchange.create_order(BTC, "market", "buy", qty)


def _stop_params(trigger: D, client_id: str, **more) -> dict:
    return {"stopPrice": float(trigger), "reduceOnly": True, "workingType": "MARK_PRICE", "clientOrderId": client_id,
            **more}  # fmt: skip


async def test_stop_lifecycle_through_ccxt(exchange, emulator):
    await _long(exchange)
    trigger = (_mark(emulator) * D("0.98")).quantize(D("0.1"))
    created = await exchange.create_order(BTC, "market", "sell", 0.01, None, _stop_params(trigger, "bk-sl-1"))
    assert created["clientOrderId"] == "bk-sl-1" and created["info"]["orderType"] == "STOP_MARKET"
    assert created["info"]["algoStatus"] == "NEW" and created["status"] == "open"
    assert D(created["info"]["triggerPrice"]) == trigger and created["info"]["workingType"] == "MARK_PRICE"

    fetched = await exchange.fetch_order(None, BTC, {"trigger": True, "clientOrderId": "bk-sl-1"})
    assert fetched["id"] == created["id"] and fetched["info"]["actualOrderId"] == ""
    [listed] = await exchange.fetch_open_orders(BTC, None, None, {"trigger": True})
    assert listed["clientOrderId"] == "bk-sl-1"
    assert await exchange.fetch_open_orders(BTC) == []  # the regular list does not show conditional orders
    with pytest.raises(errors.OrderNotFound):  # nor does the regular lookup (ccxt#27486)
        await exchange.fetch_order(None, BTC, {"clientOrderId": "bk-sl-1"})

    cancelled = await exchange.cancel_order(None, BTC, {"trigger": True, "clientOrderId": "bk-sl-1"})
    assert cancelled["info"]["code"] == "200"
    gone = await exchange.fetch_order(None, BTC, {"trigger": True, "clientOrderId": "bk-sl-1"})
    assert gone["status"] == "canceled"
    with pytest.raises(errors.OrderNotFound):  # -2011: not open any more
        await exchange.cancel_order(None, BTC, {"trigger": True, "clientOrderId": "bk-sl-1"})

    for n in range(3):
        await exchange.create_order(BTC, "market", "sell", 0.01, None, _stop_params(trigger - n, f"bk-sl-{n + 2}"))
    await exchange.cancel_all_orders(BTC, {"trigger": True})
    assert await exchange.fetch_open_orders(BTC, None, None, {"trigger": True}) == []
    history = await exchange.fetch_orders(BTC, None, None, {"trigger": True})
    assert [o["status"] for o in history] == ["canceled"] * 4


async def test_refusals(exchange, emulator):
    mark = _mark(emulator)
    with pytest.raises(errors.InvalidOrder, match="-4120"):  # conditional types left the regular endpoint
        await exchange.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
                                             "quantity": "0.01", "stopPrice": "1000"})  # fmt: skip
    above = (mark * D("1.01")).quantize(D("0.1"))
    with pytest.raises(errors.OrderImmediatelyFillable, match="-2021"):  # a sell stop above the mark fires at once
        await exchange.create_order(BTC, "market", "sell", 0.01, None, _stop_params(above, "bk-now"))
    with pytest.raises(errors.ExchangeError, match="-4509"):  # close-position needs a position
        await exchange.create_order(BTC, "STOP_MARKET", "sell", None, None,
                                    {"stopPrice": float(mark * D("0.9")), "closePosition": True})  # fmt: skip
    below = (mark * D("0.95")).quantize(D("0.1"))
    await exchange.create_order(BTC, "market", "sell", 0.01, None, _stop_params(below, "bk-dup"))
    with pytest.raises(errors.InvalidOrder, match="-4116"):
        await exchange.create_order(BTC, "market", "sell", 0.01, None, _stop_params(below, "bk-dup"))


async def test_cap_on_open_conditional_orders(exchange, emulator):
    below = (_mark(emulator) * D("0.5")).quantize(D("0.1"))
    account = next(iter(emulator.engine.accounts.values()))
    for n in range(200):
        emulator.engine.place_algo(account, symbol="BTCUSDT", side=OrderSide.SELL, type=OrderType.STOP_MARKET,
                                   qty=D("0.01"), trigger=below - n, reduce_only=True)  # fmt: skip
    with pytest.raises(errors.OperationRejected, match="-4045"):
        await exchange.create_order(BTC, "market", "sell", 0.01, None, _stop_params(below, "bk-201"))


async def test_trigger_places_a_regular_order_and_the_stream_reports_both(emulator):
    async with connected(ccxt_pro, emulator) as pro:
        await _long(pro, 0.02)
        mark = _mark(emulator)
        trigger = (mark * D("0.999")).quantize(D("0.1"))
        statuses: list[str] = []
        emulator.engine.listeners.append(
            lambda account, event: (
                statuses.append(event.algo.status)
                if isinstance(event, AlgoChanged) and event.algo.client_id == "bk-sl-t"
                else None
            )
        )
        await pro.create_order(BTC, "market", "sell", 0.02, None, _stop_params(trigger, "bk-sl-t"))
        await pro.create_order(BTC, "market", "sell", 0.02, None,
                               {"takeProfitPrice": float((mark * D("1.2")).quantize(D("0.1"))), "reduceOnly": True,
                                "clientOrderId": "bk-tp-t"})  # fmt: skip
        seen: list[dict] = []

        async def watch() -> None:
            while not any(o["info"].get("X") == "FINISHED" for o in seen):
                seen.extend(await pro.watch_orders())

        watching = asyncio.create_task(watch())
        while not any(set(emulator.listen_keys) & sock.streams for sock in emulator.sockets):  # user stream is up
            await asyncio.sleep(0.01)
        emulator.market.symbols["BTCUSDT"].mark = mark * D("0.998")  # the mark falls through the trigger
        emulator.engine.check_triggers("BTCUSDT")
        await asyncio.wait_for(watching, 10)
        assert statuses == ["NEW", "TRIGGERING", "TRIGGERED", "FINISHED"]  # as the stream sent them
        assert {o["info"]["X"] for o in seen if "aid" in o["info"]} == {"FINISHED"}  # ccxt keeps the latest
        child = [o for o in seen if "aid" not in o["info"]]
        assert child[-1]["clientOrderId"] == "bk-sl-t" and child[-1]["filled"] == 0.02  # the regular order's fill
        positions = await pro.fetch_positions([BTC])
        assert not positions or positions[0]["contracts"] in (0, None)
        fetched = await pro.fetch_order(None, BTC, {"trigger": True, "clientOrderId": "bk-sl-t"})
        assert fetched["info"]["algoStatus"] == "FINISHED" and fetched["info"]["actualOrderId"] != ""
        assert D(fetched["info"]["actualQty"]) == D("0.02")
        [tp] = await pro.fetch_open_orders(BTC, None, None, {"trigger": True})  # the sibling is the bot's to cancel
        assert tp["clientOrderId"] == "bk-tp-t" and tp["info"]["orderType"] == "TAKE_PROFIT_MARKET"


async def test_faults_of_the_algo_service(exchange, emulator):
    await _long(exchange)
    below = (_mark(emulator) * D("0.97")).quantize(D("0.1"))
    await exchange.create_order(BTC, "market", "sell", 0.01, None, _stop_params(below, "bk-forget"))
    await exchange.create_order(BTC, "market", "sell", 0.01, None, _stop_params(below - 1, "bk-drop"))
    emulator.faults = parse_plan({"rules": [
        {"kind": "stop_forgotten", "target": "bk-forget", "seconds": 2, "count": 1},
        {"kind": "stop_cancelled", "target": "bk-drop", "count": 1},
    ]})  # fmt: skip
    emulator.advance_steps(1)
    with pytest.raises(errors.OrderNotFound):
        await exchange.fetch_order(None, BTC, {"trigger": True, "clientOrderId": "bk-forget"})
    assert await exchange.fetch_open_orders(BTC, None, None, {"trigger": True}) == []
    dropped = await exchange.fetch_order(None, BTC, {"trigger": True, "clientOrderId": "bk-drop"})
    assert dropped["status"] == "canceled"
    emulator.advance_seconds(2.5)
    [back] = await exchange.fetch_open_orders(BTC, None, None, {"trigger": True})
    assert back["clientOrderId"] == "bk-forget"
