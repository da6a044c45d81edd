"""Documented Binance USDⓈ-M behaviour, checked through clients other than ccxt: Binance's official
connector (binance-futures-connector, sync, run in a thread), python-binance (async, REST and its WebSocket
manager), raw signed HTTP and a plain WebSocket client. Each test names the behaviour it checks."""

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import time
from decimal import Decimal as D
from urllib.parse import urlencode

import aiohttp
import pytest
import websockets
from binance.async_client import AsyncClient
from binance.error import ClientError
from binance.um_futures import UMFutures
from binance.ws.streams import BinanceSocketManager

from botkit.margin import liquidation_price
from botkit.sim.history import MINUTE_MS
from botkit.sim.server import running_emulator
from tests.integration.conftest import settings

pytestmark = pytest.mark.timeout(60)
SYMBOL = "BTCUSDT"


def connector(emu, **keys) -> UMFutures:
    keys = keys or {"key": emu.api_key, "secret": emu.api_secret}
    return UMFutures(base_url=emu.url, timeout=5, **keys)


async def call(fn, *args, **kwargs):
    """A call of the sync official connector, off the event loop the emulator runs in."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def refused(fn, *args, **kwargs) -> tuple[int, int]:
    """(HTTP status, Binance code) of a call the connector must see refused."""
    with pytest.raises(ClientError) as caught:
        await call(fn, *args, **kwargs)
    return caught.value.status_code, caught.value.error_code


@contextlib.asynccontextmanager
async def python_binance(emu):
    client = AsyncClient(emu.api_key, emu.api_secret)
    client.FUTURES_URL = f"{emu.url}/fapi"
    try:
        yield client
    finally:
        await client.close_connection()


async def signed(emu, http, method: str, path: str, **params):
    """A raw signed request: (status, headers, JSON body)."""
    query = urlencode(params | {"timestamp": int(time.time() * 1000)})
    signature = hmac.new(emu.api_secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    async with http.request(method, f"{emu.url}{path}?{query}&signature={signature}",
                            headers={"X-MBX-APIKEY": emu.api_key}) as r:  # fmt: skip
        return r.status, r.headers, await r.json()


def ws_url(emu, path: str) -> str:
    return emu.url.replace("http://", "ws://") + path


async def frames_until_answer(ws, ident: int) -> tuple[list, dict]:
    """Every frame before the answer to request `ident`, and that answer (a connection's frames leave in
    the order they were made, so a LIST_SUBSCRIPTIONS sent after some steps fences their events)."""
    seen = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if isinstance(frame, dict) and frame.get("id") == ident:
            return seen, frame
        seen.append(frame)


# -------------------------------------------------------------------------- 1, 8, 12: orders and errors


async def test_orders_answer_ack_by_default_and_time_in_force_ids_and_errors_are_binances():
    async with running_emulator(settings()) as emu:
        api = connector(emu)
        ack = await call(api.new_order, symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01)
        assert ack["status"] == "NEW" and D(ack["executedQty"]) == 0  # ACK: the fill follows on the stream
        query = await call(api.query_order, symbol=SYMBOL, orderId=ack["orderId"])
        assert query["status"] == "FILLED"
        result = await call(api.new_order, symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01,
                            newOrderRespType="RESULT", newClientOrderId="again")  # fmt: skip
        assert result["status"] == "FILLED" and D(result["executedQty"]) == D("0.01")
        again = await call(api.new_order, symbol=SYMBOL, side="SELL", type="MARKET", quantity=0.01,
                           newClientOrderId="again")  # fmt: skip
        assert again["clientOrderId"] == "again"  # unique only among open orders
        assert await refused(api.new_order, symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.01,
                             price=49000) == (400, -1102)  # LIMIT without timeInForce  # fmt: skip
        book = await call(api.depth, symbol=SYMBOL, limit=5)
        more_than_the_top = float(D(book["asks"][0][1]) + D("0.5"))  # at the best ask only its level fills
        assert await refused(api.new_order, symbol=SYMBOL, side="BUY", type="LIMIT", quantity=more_than_the_top,
                             price=book["asks"][0][0], timeInForce="FOK") == (400, -5021)  # fmt: skip
        info = await call(api.exchange_info)
        assert "GTD" not in info["symbols"][0]["timeInForce"]
        assert await refused(connector(emu, key="", secret="x").balance) == (401, -2014)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{emu.url}/fapi/v1/klines", params={"interval": "1m"}) as r:
                status, body = r.status, await r.json()
        assert (status, body["code"]) == (400, -1102)  # a missing symbol


async def test_the_201st_open_order_is_refused_and_amendments_batches_and_countdowns_work():
    async with running_emulator(settings()) as emu:
        api = connector(emu)
        bid = D((await call(api.depth, symbol=SYMBOL, limit=5))["bids"][0][0])
        for batch in range(40):  # 200 resting orders, five a batch
            orders = [{"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.003",
                       "price": str(bid - 100 - batch * 5 - k)} for k in range(5)]  # fmt: skip
            answers = await call(api.new_batch_order, orders)
            assert all("orderId" in a for a in answers), answers
        assert await refused(api.new_order, symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.003,
                             price=float(bid - 500), timeInForce="GTC") == (400, -2025)  # fmt: skip
        [first, *_] = await call(api.get_orders, symbol=SYMBOL)
        moved = await call(api.modify_order, symbol=SYMBOL, side="BUY", orderId=first["orderId"], quantity=0.004,
                           price=float(bid - 400))  # fmt: skip
        assert moved["orderId"] == first["orderId"] and D(moved["origQty"]) == D("0.004")
        assert (await call(api.get_open_orders, symbol=SYMBOL, orderId=first["orderId"]))["price"] == str(bid - 400)
        cancelled = await call(api.cancel_batch_order, symbol=SYMBOL, orderIdList=[first["orderId"]],
                               origClientOrderIdList=[])  # fmt: skip
        assert cancelled[0]["status"] == "CANCELED"
        await call(api.new_order_test, symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01)
        assert len(await call(api.get_orders, symbol=SYMBOL)) == 199  # the test order placed nothing
        await call(api.countdown_cancel_order, symbol=SYMBOL, countdownTime=100)
        await asyncio.sleep(0.15)
        assert await call(api.get_orders, symbol=SYMBOL) == []  # the dead man's switch fired


# ---------------------------------------------------------------------------------- 4: the endpoints


async def test_endpoints_mainstream_clients_call():
    async with running_emulator(settings(funding_interval_s=8 * 3600)) as emu:
        api = connector(emu)
        [usdt] = await call(api.balance)
        assert usdt["asset"] == "USDT" and D(usdt["balance"]) == 10_000
        assert D((await call(api.ticker_price, symbol=SYMBOL))["price"]) > 0
        assert D((await call(api.open_interest, symbol=SYMBOL))["openInterest"]) > 0
        assert (await call(api.get_multi_asset_mode))["multiAssetsMargin"] is False
        assert await refused(api.change_multi_asset_mode, multiAssetsMargin="true") == (400, -1020)
        assert await refused(api.change_position_mode, dualSidePosition="true") == (400, -1020)  # one-way only
        for kind in ("mark_price_klines", "index_price_klines"):
            rows = await call(getattr(api, kind), SYMBOL, "1h", limit=3)
            assert len(rows) == 3 and rows[0][0] + 3_600_000 == rows[1][0]
        await call(api.change_margin_type, symbol=SYMBOL, marginType="ISOLATED")
        await call(api.new_order, symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.1)
        [before] = await call(api.get_position_risk, symbol=SYMBOL)
        await call(api.modify_isolated_position_margin, symbol=SYMBOL, amount=50, type=1)
        [after] = await call(api.get_position_risk, symbol=SYMBOL)
        assert D(after["isolatedWallet"]) - D(before["isolatedWallet"]) == 50
        assert D(after["liquidationPrice"]) < D(before["liquidationPrice"])  # more margin, further away
        assert await refused(api.modify_isolated_position_margin, symbol=SYMBOL, amount=10**6, type=2) == (400, -4051)
        assert await call(api.force_orders, symbol=SYMBOL) == []
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{emu.url}/fapi/v1/unknown") as r:
                assert r.status == 404 and (await r.json())["code"] == -5000


# --------------------------------------------------------------------------------- 5, 6: history


async def test_python_binance_pages_history_and_filters_hold():
    five_days = settings(funding_interval_s=8 * 3600, history_days=5)
    async with running_emulator(five_days) as emu, python_binance(emu) as client:
        history = emu.market.history[SYMBOL]
        rows = await client.futures_historical_klines(SYMBOL, "5m", history.first_ms, history.start_minute_ms - 1)
        assert [r[0] for r in rows] == list(range(history.first_ms, history.start_minute_ms, 5 * MINUTE_MS))
        for interval in ("15m", "1h", "4h", "1d"):
            assert len(await client.futures_klines(symbol=SYMBOL, interval=interval, limit=3)) == 3
        marks = await client.futures_mark_price_klines(symbol=SYMBOL, interval="1m", startTime=history.first_ms,
                                                       limit=2)  # fmt: skip
        assert [m[0] for m in marks] == [history.first_ms, history.first_ms + MINUTE_MS]
        funding = await client.futures_funding_rate(symbol=SYMBOL, startTime=history.first_ms, limit=5)
        assert len(funding) == 5 and all(len(f["fundingRate"].split(".")[1]) == 8 for f in funding)
        trades = await client.futures_aggregate_trades(symbol=SYMBOL, fromId=5, limit=3)
        assert [t["a"] for t in trades] == [5, 6, 7]
        for _ in range(3):
            await client.futures_create_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01)
            emu.advance_steps(5)
        income = await client.futures_income_history(incomeType="COMMISSION")
        assert len(income) == 3 and all(i["tradeId"] for i in income)  # each commission names its fill
        assert await client.futures_income_history(startTime=emu.market.now_ms + 86_400_000) == []
        oldest = await client.futures_income_history(incomeType="COMMISSION", startTime=income[0]["time"], limit=2)
        assert oldest == income[:2]
        fills = await client.futures_account_trades(symbol=SYMBOL)
        assert await client.futures_account_trades(symbol=SYMBOL, fromId=fills[1]["id"]) == fills[1:]
        orders = await client.futures_get_all_orders(symbol=SYMBOL)
        assert await client.futures_get_all_orders(symbol=SYMBOL, orderId=orders[1]["orderId"]) == orders[1:]


# ----------------------------------------------------------------------------------- 10, 11: fields


async def test_account_and_position_fields_and_cross_liquidation_price():
    async with running_emulator(settings()) as emu, python_binance(emu) as client:
        account = await client.futures_account()  # v2
        assert account["canTrade"] is True and account["feeTier"] == 0 and len(account["positions"]) == 2
        assert await client.futures_position_information() == []  # v3: no flat rows
        await client.futures_change_leverage(symbol=SYMBOL, leverage=20)
        await client.futures_create_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity=3)  # cross
        [position] = await client.futures_position_information(symbol=SYMBOL)
        entry, qty = D(position["entryPrice"]), D("3")
        wallet = D((await client.futures_account_balance())[0]["crossWalletBalance"])
        tiers = emu.market.symbols[SYMBOL].tiers
        # Binance's cross formula with no other positions: LP = (WB + cum - q*E) / (q*mmr - q), the tier at LP
        tier = next(t for t in tiers if t.floor <= qty * (wallet - qty * entry) / (qty * D("0.005") - qty) < t.cap)
        by_hand = (wallet + tier.cum - qty * entry) / (qty * tier.mmr - qty)
        assert D(position["liquidationPrice"]) == liquidation_price("long", qty, entry, wallet, tiers) == by_hand
        fee = D("0.0005")  # break-even: what a taker close must fetch to pay back both taker fees
        assert D(position["breakEvenPrice"]) >= entry * (1 + fee) / (1 - fee) > entry


# ------------------------------------------------------------------------ 7: limits, raw signed HTTP


async def test_order_counts_are_per_account_and_weights_follow_binances_table():
    async with running_emulator(settings(orders_per_10s=3)) as emu, aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(4):
            status, headers, body = await signed(emu, http, "POST", "/fapi/v1/order", symbol=SYMBOL, side="BUY",
                                                 type="MARKET", quantity="0.01")  # fmt: skip
            statuses.append((status, body.get("code")))
        assert statuses[-1] == (429, -1015) and statuses[:3] == [(200, None)] * 3
        assert "X-MBX-USED-WEIGHT-1M" in headers and headers["X-MBX-ORDER-COUNT-10S"] == "3"
        async with http.get(f"{emu.url}/fapi/v1/depth", params={"symbol": SYMBOL}) as r:
            assert r.status == 200  # the same IP's market data goes on: no ban
            used = int(r.headers["X-MBX-USED-WEIGHT-1M"])
        status, headers, body = await signed(emu, http, "GET", "/fapi/v1/order", symbol=SYMBOL, orderId=1)
        assert (status, body["code"]) == (400, -2013) and int(headers["X-MBX-USED-WEIGHT-1M"]) == used + 1
        async with http.get(f"{emu.url}/fapi/v1/premiumIndex") as r:
            assert int(r.headers["X-MBX-USED-WEIGHT-1M"]) == used + 1 + 10  # all symbols: weight 10
        async with http.get(f"{emu.url}/fapi/v1/ticker/bookTicker") as r:
            assert int(r.headers["X-MBX-USED-WEIGHT-1M"]) == used + 1 + 10 + 5
        assert 418 not in emu.limiter.answered


async def test_listen_keys_expire_and_an_unknown_one_is_refused():
    async with running_emulator(settings()) as emu, aiohttp.ClientSession() as http:
        headers = {"X-MBX-APIKEY": emu.api_key}
        async with http.put(f"{emu.url}/fapi/v1/listenKey", headers=headers) as r:
            assert (r.status, (await r.json())["code"]) == (400, -1125)
        async with http.post(f"{emu.url}/fapi/v1/listenKey", headers=headers) as r:
            key = (await r.json())["listenKey"]
        async with websockets.connect(ws_url(emu, f"/ws/{key}")) as ws:
            account, _ = emu.listen_keys[key]
            emu.listen_keys[key] = (account, emu.server_time_ms() - 1)  # an hour without a keepalive
            emu.advance_steps(1)
            event = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert event["e"] == "listenKeyExpired" and event["listenKey"] == key
        async with http.put(f"{emu.url}/fapi/v1/listenKey", headers=headers) as r:
            assert (await r.json())["code"] == -1125
        async with http.get(ws_url(emu, "/private/ws").replace("ws://", "http://"),
                            params={"listenKey": "nope"}) as r:  # fmt: skip
            assert r.status == 400


# ------------------------------------------------------------------------ 2, 3: plain WebSocket client


async def test_raw_and_combined_streams_on_every_path():
    async with running_emulator(settings()) as emu:
        for path, combined in (("/ws/btcusdt@aggTrade", False), ("/market/ws/btcusdt@aggTrade", False),
                               ("/public/ws/btcusdt@aggTrade", False),
                               ("/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade", True),
                               ("/market/stream?streams=btcusdt@aggTrade", True)):  # fmt: skip
            async with websockets.connect(ws_url(emu, path)) as ws:
                emu.advance_steps(20)
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 7}))
                frames, answer = await frames_until_answer(ws, 7)
                assert "btcusdt@aggTrade" in answer["result"], path
                assert frames, f"{path} sent nothing"
                if combined:
                    assert all(set(f) == {"stream", "data"} and f["data"]["e"] == "aggTrade" for f in frames), path
                else:
                    assert all(f["e"] == "aggTrade" for f in frames), path


async def test_subscribe_unsubscribe_properties_and_error_frames():
    async with running_emulator(settings()) as emu, websockets.connect(ws_url(emu, "/ws")) as ws:
        await ws.send("not json")
        assert json.loads(await ws.recv())["error"]["code"] == 3
        await ws.send(json.dumps({"method": "SUBSCRIB", "params": [], "id": 1}))
        unknown = json.loads(await ws.recv())
        assert unknown["id"] == 1 and unknown["error"]["code"] == 2
        assert unknown["error"]["msg"].startswith("Invalid request: unknown variant `SUBSCRIB`, expected one of")
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@nonsense"], "id": 2}))
        assert json.loads(await ws.recv())["error"] == {"code": 2, "msg": "Invalid request: invalid stream"}
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": "x"}))
        assert "unsigned integer" in json.loads(await ws.recv())["error"]["msg"]
        await ws.send(json.dumps({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 3}))
        assert json.loads(await ws.recv())["error"]["code"] == 1
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 4}))
        assert json.loads(await ws.recv()) == {"result": None, "id": 4}
        await ws.send(json.dumps({"method": "SET_PROPERTY", "params": ["combined", True], "id": 5}))
        assert json.loads(await ws.recv()) == {"result": None, "id": 5}
        emu.advance_steps(1)
        assert json.loads(await ws.recv())["stream"] == "btcusdt@bookTicker"
        await ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 6}))
        assert (await frames_until_answer(ws, 6))[1] == {"result": None, "id": 6}
        emu.advance_steps(3)
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
        assert await frames_until_answer(ws, 8) == ([], {"result": [], "id": 8})  # nothing after UNSUBSCRIBE


async def test_user_data_by_subscribe_and_through_python_binance():
    async with running_emulator(settings()) as emu, python_binance(emu) as client:
        key = await client.futures_stream_get_listen_key()
        async with websockets.connect(ws_url(emu, "/ws")) as ws:
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": [key], "id": 1}))
            assert json.loads(await ws.recv()) == {"result": None, "id": 1}
            manager = BinanceSocketManager(client)
            manager.FSTREAM_URL = ws_url(emu, "/")
            user_socket = manager.futures_user_socket()
            user_socket.TIMEOUT = 0.2  # its read loop notices the exit this soon (else after 10 s of quiet)
            async with user_socket as user:
                while not any(key in s.streams for s in emu.sockets if "/private/" in s.path):
                    await asyncio.sleep(0.01)
                await client.futures_create_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01)
                seen = [await asyncio.wait_for(user.recv(), 5) for _ in range(3)]
            assert {e["e"] for e in seen} >= {"ORDER_TRADE_UPDATE", "TRADE_LITE"}
            events = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(4)]
        update = next(e for e in events if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "TRADE")
        assert {"b", "a", "rp", "pP", "si", "ss", "V", "pm", "gtd", "er"} <= set(update["o"])
        socket_manager_market = BinanceSocketManager(client)
        socket_manager_market.FSTREAM_URL = ws_url(emu, "/")
        market_socket = socket_manager_market.futures_multiplex_socket(["btcusdt@markPrice@1s"])
        market_socket.TIMEOUT = 0.2
        async with market_socket as market:
            emu.advance_steps(10)
            event = await asyncio.wait_for(market.recv(), 5)
        assert event["stream"] == "btcusdt@markPrice@1s" and event["data"]["e"] == "markPriceUpdate"


async def test_depth_mark_and_kline_streams_send_at_binances_pace():
    async with running_emulator(settings()) as emu:
        streams = ["btcusdt@depth5", "btcusdt@depth10@100ms", "btcusdt@depth@500ms", "btcusdt@markPrice",
                   "btcusdt@markPrice@1s", "btcusdt@kline_1m"]  # fmt: skip
        async with websockets.connect(ws_url(emu, "/stream?streams=" + "/".join(streams))) as ws:
            emu.advance_steps(60)  # 6 s of market time in 100 ms steps
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
            frames, _ = await frames_until_answer(ws, 1)
        by_stream: dict[str, list] = {}
        for f in frames:
            by_stream.setdefault(f["stream"], []).append(f["data"])
        assert len(by_stream["btcusdt@depth5"]) == 24  # every 250 ms
        assert len(by_stream["btcusdt@depth10@100ms"]) == 60
        assert len(by_stream["btcusdt@depth@500ms"]) == 12
        assert len(by_stream["btcusdt@markPrice"]) == 2 and len(by_stream["btcusdt@markPrice@1s"]) == 6
        assert len(by_stream["btcusdt@kline_1m"]) == 24
        snap = by_stream["btcusdt@depth5"][-1]
        assert len(snap["b"]) == len(snap["a"]) == 5
        chain = by_stream["btcusdt@depth@500ms"]
        assert all(b["pu"] == a["u"] and b["U"] == a["u"] + 1 for a, b in itertools.pairwise(chain))
        async with aiohttp.ClientSession() as http, http.get(f"{emu.url}/fapi/v1/depth",
                                                             params={"symbol": SYMBOL}) as r:  # fmt: skip
            book = await r.json()
        assert len(book["bids"]) == len(book["asks"]) == 500  # Binance's default limit
