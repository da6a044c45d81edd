"""The real ccxt async client against the emulator: every REST endpoint it uses, and the error codes."""

from decimal import Decimal as D

import aiohttp
import ccxt.async_support as ccxt_async
import pytest
from ccxt.base import errors

from botkit.margin import liquidation_price
from tests.integration.conftest import BTC, client


async def test_public_market_data(exchange):
    markets = exchange.markets
    assert {BTC, "ETH/USDT:USDT"} <= set(markets)
    btc = markets[BTC]
    assert btc["linear"] and btc["swap"] and btc["precision"]["amount"] == 0.001 and btc["limits"]["cost"]["min"] == 100
    ticker = await exchange.fetch_ticker(BTC)
    assert ticker["last"] > 0
    book = await exchange.fetch_order_book(BTC, 5)
    assert len(book["bids"]) == 5 and book["bids"][0][0] < book["asks"][0][0]
    funding = await exchange.fetch_funding_rate(BTC)
    assert funding["markPrice"] > 0 and funding["indexPrice"] > 0 and funding["fundingTimestamp"] > 0
    interval = await exchange.fetch_funding_interval(BTC)  # 60 s in these tests: Binance's field is in hours
    assert interval["info"]["fundingIntervalHours"] * 3600 == pytest.approx(60)
    mark = await exchange.fetch_mark_price(BTC)
    assert mark["markPrice"] == funding["markPrice"]
    assert await exchange.fetch_time() > 0
    candles = await exchange.fetch_ohlcv(BTC, "1m")
    assert candles and candles[-1][4] > 0
    assert isinstance(await exchange.fetch_trades(BTC), list)
    bids_asks = await exchange.fetch_bids_asks([BTC])
    assert bids_asks[BTC]["bid"] < bids_asks[BTC]["ask"]


async def test_account_endpoints_and_order_lifecycle(exchange, emulator):
    balance = await exchange.fetch_balance()
    assert balance["USDT"]["free"] == 10000
    await exchange.set_margin_mode("isolated", BTC)
    assert (await exchange.set_leverage(10, BTC))["leverage"] == 10
    leverages = await exchange.fetch_leverages([BTC])
    assert leverages[BTC]["marginMode"] == "isolated" and leverages[BTC]["longLeverage"] == 10
    tiers = await exchange.fetch_market_leverage_tiers(BTC)
    assert tiers[1]["info"]["cum"] == 50.0

    bought = await exchange.create_order(BTC, "market", "buy", 0.01, params={"clientOrderId": "bk-entry-1"})
    assert bought["status"] == "closed" and bought["filled"] == 0.01 and bought["clientOrderId"] == "bk-entry-1"
    resting = await exchange.create_order(BTC, "limit", "buy", 0.01, 48000, params={"clientOrderId": "bk-rest-1"})
    assert resting["status"] == "open"
    assert [o["id"] for o in await exchange.fetch_open_orders(BTC)] == [resting["id"]]
    fetched = await exchange.fetch_order(None, BTC, params={"origClientOrderId": "bk-rest-1"})
    assert fetched["id"] == resting["id"]
    assert (await exchange.cancel_order(resting["id"], BTC))["status"] == "canceled"
    await exchange.create_order(BTC, "limit", "buy", 0.01, 48000)
    await exchange.cancel_all_orders(BTC)
    assert await exchange.fetch_open_orders(BTC) == []

    trades = await exchange.fetch_my_trades(BTC)
    assert len(trades) == 1 and trades[0]["takerOrMaker"] == "taker"
    [position] = await exchange.fetch_positions([BTC])
    assert position["contracts"] == 0.01 and position["side"] == "long" and position["marginMode"] == "isolated"

    closed = await exchange.create_order(BTC, "market", "sell", 0.01, params={"reduceOnly": True})
    assert closed["status"] == "closed"
    assert await exchange.fetch_positions([BTC]) == []


async def test_reported_liquidation_price_equals_botkit_margin(exchange, emulator):
    await exchange.set_margin_mode("isolated", BTC)
    await exchange.set_leverage(20, BTC)
    await exchange.create_order(BTC, "market", "sell", 0.5)  # 25 000 notional: bracket 1
    await exchange.create_order(BTC, "market", "sell", 1.0)  # 75 000 notional: liquidation in bracket 2
    [row] = [r for r in await exchange.fapiPrivateV3GetPositionRisk() if r["symbol"] == "BTCUSDT"]
    tiers = emulator.market.symbols["BTCUSDT"].tiers
    expected = liquidation_price("short", D("1.5"), D(row["entryPrice"]), D(row["isolatedWallet"]), tiers)
    assert D(row["liquidationPrice"]) == expected
    assert expected * D("1.5") >= 50000  # it really is in bracket 2


async def test_funding_changes_isolated_margin_by_notional_times_rate(exchange, emulator):
    await exchange.set_margin_mode("isolated", BTC)
    await exchange.set_leverage(5, BTC)
    await exchange.create_order(BTC, "market", "buy", 0.2)
    before = D(
        next(r for r in await exchange.fapiPrivateV3GetPositionRisk() if r["symbol"] == "BTCUSDT")["isolatedWallet"]
    )
    async with aiohttp.ClientSession() as http:
        seconds = (emulator.market.next_funding_ms - emulator.market.now_ms) / 1000
        async with http.post(f"{emulator.url}/_emu/clock/advance", json={"seconds": seconds}) as response:
            assert response.status == 200
        async with http.get(f"{emulator.url}/_emu/state") as response:
            snapshot = await response.json()
    [event] = snapshot["funding_events"]
    mark, rate = D(event["mark"]), D(event["rate"])
    after = D(
        next(r for r in await exchange.fapiPrivateV3GetPositionRisk() if r["symbol"] == "BTCUSDT")["isolatedWallet"]
    )
    paid = (-D("0.2") * mark * rate).quantize(D("0.00000001"))  # a long pays a positive rate, on 8 decimals
    assert after - before == paid
    assert rate != 0
    history = await exchange.fetch_funding_history(BTC)
    assert [D(h["info"]["income"]) for h in history] == [paid]
    rates = await exchange.fetch_funding_rate_history(BTC)  # the newest 100: history, then this settlement
    assert D(rates[-1]["info"]["fundingRate"]) == rate and len(rates) == 100


async def test_flash_crash_liquidates_an_over_levered_isolated_long(emulator):
    from botkit.sim.server import running_emulator
    from tests.integration.conftest import settings

    async with running_emulator(settings(scenario="flash-crash")) as emu:
        ex = client(ccxt_async, emu)
        try:
            await ex.load_markets()
            await ex.set_margin_mode("isolated", BTC)
            await ex.set_leverage(50, BTC)
            await ex.create_order(BTC, "market", "buy", 0.1)
            [row] = [r for r in await ex.fapiPrivateV3GetPositionRisk() if r["symbol"] == "BTCUSDT"]
            liq = D(row["liquidationPrice"])
            emu.advance_seconds(60)
            [event] = emu.engine.liquidations
            assert event["side"] == "long" and D(event["liquidation_price"]) == liq
            assert D(event["mark"]) <= liq  # closed at the mark once it reached the liquidation price
            assert await ex.fetch_positions([BTC]) == []
            orders = await ex.fetch_orders(BTC)
            assert orders[-1]["info"]["type"] == "LIQUIDATION"
        finally:
            await ex.close()


@pytest.mark.parametrize(
    ("params", "error", "code"),
    [
        ({"symbol": "NOPEUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"}, errors.BadSymbol, -1121),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "45000.05",
          "timeInForce": "GTC"}, errors.BadRequest, -4014),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.0105"}, errors.BadRequest, -1111),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "500"}, errors.BadRequest, -4005),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}, errors.InvalidOrder, -4164),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "60000",
          "timeInForce": "GTC"}, errors.BadRequest, -4016),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "10"}, errors.InsufficientFunds, -2019),
        ({"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.01", "reduceOnly": "true"},
         errors.InvalidOrder, -2022),
    ],
)  # fmt: skip
async def test_order_rejections_arrive_as_the_mapped_ccxt_errors(exchange, params, error, code):
    with pytest.raises(error) as caught:
        await exchange.fapiPrivatePostOrder(params)
    assert str(code) in str(caught.value)


async def test_post_only_position_and_margin_type_errors(exchange):
    book = await exchange.fetch_order_book(BTC, 5)
    with pytest.raises(errors.OrderNotFillable, match="-5022"):
        await exchange.create_order(BTC, "limit", "buy", 0.01, book["asks"][0][0], params={"postOnly": True})
    await exchange.set_leverage(125, BTC)
    with pytest.raises(errors.OperationRejected, match="-2027"):
        await exchange.create_order(BTC, "market", "buy", 1.2)  # 60 000 notional > 50 000 cap at 125x
    await exchange.set_margin_mode("isolated", BTC)
    with pytest.raises(errors.MarginModeAlreadySet):
        await exchange.set_margin_mode("isolated", BTC)
    await exchange.create_order(BTC, "market", "buy", 0.01)
    with pytest.raises(errors.OperationRejected, match="-4048"):
        await exchange.set_margin_mode("cross", BTC)


async def test_unknown_and_duplicate_orders(exchange):
    with pytest.raises(errors.OrderNotFound, match="-2011"):
        await exchange.cancel_order("42", BTC)
    with pytest.raises(errors.OrderNotFound, match="-2013"):
        await exchange.fetch_order("42", BTC)
    await exchange.create_order(BTC, "limit", "buy", 0.01, 48000, params={"clientOrderId": "bk-dup"})
    with pytest.raises(errors.InvalidOrder, match="-4116"):
        await exchange.create_order(BTC, "limit", "buy", 0.01, 48000, params={"clientOrderId": "bk-dup"})


async def test_signatures_keys_and_timestamps_are_verified(emulator):
    wrong_secret = client(ccxt_async, emulator, secret="0" * 64)
    wrong_key = client(ccxt_async, emulator, apiKey="not-a-key")
    skewed = client(ccxt_async, emulator)
    skewed.options["timeDifference"] = 60_000
    try:
        with pytest.raises(errors.AuthenticationError, match="-1022"):
            await wrong_secret.fetch_balance()
        with pytest.raises(errors.AuthenticationError, match="-2015"):
            await wrong_key.fetch_balance()
        with pytest.raises(errors.InvalidNonce, match="-1021"):
            await skewed.fetch_balance()
    finally:
        for ex in (wrong_secret, wrong_key, skewed):
            await ex.close()
