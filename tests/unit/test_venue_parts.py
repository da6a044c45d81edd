"""The venue's pure parts: error taxonomy, client ids, exchange construction per mode, market parsing."""

from decimal import Decimal as D

import ccxt
import ccxt.async_support as ccxt_async
import pytest

from botkit.config import BotConfig, ConfigError, VenueConfig
from botkit.domain import OrderStatus, OrderType
from botkit.venue import parse
from botkit.venue.ccxt_venue import CcxtVenue, build_exchange
from botkit.venue.errors import Outcome, classify, exchange_details
from botkit.venue.ids import ClientIds
from botkit.venue.protocol import open_venue


@pytest.mark.parametrize(
    ("error", "read", "write"),
    [
        (ccxt.DDoSProtection("429"), Outcome.RATE_LIMITED, Outcome.RATE_LIMITED),
        (ccxt.RateLimitExceeded("-1003"), Outcome.RATE_LIMITED, Outcome.RATE_LIMITED),
        (ccxt.InvalidNonce("-1021"), Outcome.CLOCK, Outcome.CLOCK),
        (ccxt.RequestTimeout("timeout"), Outcome.RETRYABLE, Outcome.UNKNOWN),
        (ccxt.ExchangeNotAvailable("503"), Outcome.RETRYABLE, Outcome.UNKNOWN),
        (ccxt.OnMaintenance("maintenance"), Outcome.RETRYABLE, Outcome.UNKNOWN),
        (ccxt.OperationFailed("-1001"), Outcome.RETRYABLE, Outcome.UNKNOWN),
        (ccxt.BadResponse("garbage"), Outcome.RETRYABLE, Outcome.UNKNOWN),
        (ccxt.InsufficientFunds("-2019"), Outcome.REJECTED, Outcome.REJECTED),
        (ccxt.InvalidOrder("-4164"), Outcome.REJECTED, Outcome.REJECTED),
        (ccxt.AuthenticationError("-2015"), Outcome.REJECTED, Outcome.REJECTED),
        (ccxt.MarginModeAlreadySet("-4046"), Outcome.REJECTED, Outcome.REJECTED),
        (KeyError("price"), Outcome.UNKNOWN, Outcome.UNKNOWN),
    ],
)
def test_every_ccxt_error_has_one_outcome(error, read, write):
    assert classify(error, mutating=False) is read
    assert classify(error, mutating=True) is write


def test_a_429_during_a_ban_is_a_ban():
    assert classify(ccxt.DDoSProtection("418"), mutating=False, banned=True) is Outcome.BANNED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('binanceusdm {"code":-2019,"msg":"Margin is insufficient."}', (-2019, "Margin is insufficient.")),
        ('bybit {"retCode":110007,"retMsg":"ab not enough","result":{}}', (110007, "ab not enough")),
        ('okx {"code":"1","data":[{"sCode":"51008","sMsg":"Insufficient"}],"msg":""}', (51008, "Insufficient")),
        ("binanceusdm GET http://x timed out", (None, "binanceusdm GET http://x timed out")),
        ("kraken {not json", (None, "kraken {not json")),
    ],
)
def test_exchange_code_and_message_are_read_from_the_error(text, expected):
    assert exchange_details(ccxt.ExchangeError(text)) == expected


def test_client_ids_are_unique_valid_everywhere_and_recognisable():
    a, b = ClientIds("bot1", now_ms=1_700_000_000_000), ClientIds("bot1", now_ms=1_700_000_000_000)
    ids = [a.next() for _ in range(1000)] + [b.next() for _ in range(1000)]
    assert len(set(ids)) == 2000  # two runs started in the same millisecond still differ
    assert all(i.isalnum() and len(i) <= 32 and a.owns(i) for i in ids)
    assert not a.owns("x-cvBPrNm9abc") and not a.owns(None)
    assert ClientIds("bk", exchange_id="binanceusdm").check("my:id/1") == "my:id/1"
    with pytest.raises(ValueError, match="does not match the exchange's rule"):
        ClientIds("bk", exchange_id="okx").check("has-dash")
    with pytest.raises(ValueError, match="prefix"):
        ClientIds("too-long-prefix")


def test_client_id_ownership_is_exact():
    """A plain prefix match let a bot with prefix bk adopt and cancel a bk2 bot's orders."""
    bk, bk2 = ClientIds("bk", exchange_id="binanceusdm"), ClientIds("bk2", exchange_id="binanceusdm")
    theirs, mine = bk2.next(), bk.next()
    assert mine.startswith("bk-") and theirs.startswith("bk2-")
    assert bk.owns(mine) and not bk.owns(theirs) and bk2.owns(theirs) and not bk2.owns(mine)
    assert all(bk.rule.match(i) and len(i) <= 32 for i in (mine, theirs))


def config(**changes):
    base = {"exchange": {"id": "binanceusdm", "api_key": "k" * 8, "api_secret": "s" * 8}, "mode": "testnet"}
    return BotConfig(**(base | changes))


async def test_testnet_mode_picks_each_exchanges_test_venue():
    binance = build_exchange(config())
    assert binance.urls["api"]["fapiPrivate"].startswith("https://demo-fapi.binance.com")
    bybit = build_exchange(config(exchange={"id": "bybit", "api_key": "k" * 8, "api_secret": "s" * 8}))
    assert bybit.urls["api"]["private"] == "https://api-testnet.{hostname}"
    okx = build_exchange(config(exchange={"id": "okx", "api_key": "k" * 8, "api_secret": "s" * 8}))
    assert okx.headers.get("x-simulated-trading") == "1"
    live = build_exchange(config(mode="live"))
    assert live.urls["api"]["fapiPrivate"].startswith("https://fapi.binance.com")
    emulated = build_exchange(config(mode="demo"), emulator_url="http://127.0.0.1:9")
    assert emulated.urls["api"]["fapiPrivate"] == "http://127.0.0.1:9/fapi/v1"
    for exchange in (binance, bybit, okx, live, emulated):
        assert exchange.enableRateLimit is False
        await exchange.close()


def test_exchange_construction_errors_name_the_setting():
    with pytest.raises(ConfigError, match="not an exchange ccxt knows"):
        build_exchange(config(exchange={"id": "nope", "api_key": "k" * 8, "api_secret": "s" * 8}))
    with pytest.raises(ConfigError, match="emulator_url"):
        build_exchange(config(mode="demo"))
    with pytest.raises(ConfigError, match=r"venue\.rate_limits: unknown rate budget"):
        open_venue(config(venue={"rate_limits": {"weight_1h": 5}}))
    with pytest.raises(ConfigError, match="speaks binanceusdm only"):
        build_exchange(config(exchange={"id": "okx"}, mode="demo"), emulator_url="http://127.0.0.1:9")


async def test_contract_sizes_become_base_units():
    venue = CcxtVenue(ccxt_async.okx())
    market = {
        "contractSize": 0.01,  # one contract is 0.01 BTC
        "precision": {"amount": 1, "price": 0.1},
        "limits": {"amount": {"min": 1, "max": 10_000}, "cost": {"min": None}},
    }
    size, rules = venue._market_rules("BTC/USDT:USDT", market)
    assert size == D("0.01")
    assert (rules.step, rules.tick, rules.min_qty, rules.max_qty, rules.min_notional) == (
        D("0.01"), D("0.1"), D("0.01"), D("100"), D(0)
    )  # fmt: skip
    await venue.close()


def test_the_venue_weighs_requests_by_preset_then_ccxt():
    venue = CcxtVenue(ccxt_async.binanceusdm())
    assert venue.request_cost("fapiPrivate", "POST", "order", {}, {"cost": 4}) == (1.0, 1)
    assert venue.request_cost("fapiPrivateV3", "GET", "account", {}, {"cost": 1}) == (5.0, 0)
    book = {"cost": 2, "byLimit": [[50, 2], [100, 5], [500, 10], [1000, 20]]}
    assert venue.request_cost("fapiPublic", "GET", "depth", {"limit": 500}, book) == (10.0, 0)
    assert venue.request_cost("fapiPrivate", "GET", "openOrders", {}, {"cost": 1, "noSymbol": 40}) == (40.0, 0)
    assert venue.exchange.enableRateLimit is False


def test_the_exchanges_liquidation_order_is_read_and_known_for_what_it_is():
    """Binance reports its liquidation engine's order with type LIQUIDATION (ccxt: "liquidation") and a
    client id "autoclose-..."; an unknown type would make the frame unreadable and the liquidation unseen."""
    row = {"clientOrderId": "autoclose-1700000000000", "status": "closed", "side": "sell", "type": "liquidation",
           "symbol": "BTC/USDT:USDT", "amount": 0.1, "filled": 0.1, "id": "5", "average": 45000}  # fmt: skip
    order = parse.order(row, None, {})
    assert order.type is OrderType.LIQUIDATION and order.status is OrderStatus.FILLED
    venue = CcxtVenue(ccxt_async.binanceusdm(), VenueConfig())
    assert venue.is_liquidation(order)


def test_open_interest_is_parsed_or_refused_in_one_line():
    from botkit.venue.errors import VenueDataError

    assert parse.open_interest({"openInterestAmount": 10000.0, "info": {"openInterest": "10000.000"}}, "X") == 10000
    assert parse.open_interest({"info": {"openInterest": "12.5"}}, "X") == D("12.5")  # ccxt left it in info
    for bad in ([], {"openInterestAmount": "many"}, {"openInterestAmount": -1}, {}):
        with pytest.raises(VenueDataError, match="open interest X"):
            parse.open_interest(bad, "X")
