"""The emulator's market history through the real ccxt client: a downloader paging through a month of
candles and funding rates gets exactly the emulator's history, and every history endpoint honours Binance's
startTime / endTime / fromId / limit."""

from decimal import Decimal as D

import aiohttp
import ccxt.async_support as ccxt_async
import pytest

from botkit.data.download import download
from botkit.data.store import read_table
from botkit.sim.history import MINUTE_MS
from botkit.sim.server import running_emulator
from tests.integration.conftest import BTC, START_MS, connected, settings

EIGHT_HOURS = 8 * 3600


class Interrupted(Exception):
    """Stands for the process being killed half-way through a download."""


async def test_botkit_data_download_gets_a_month_row_for_row_and_resumes_after_an_interruption(tmp_path):
    """`botkit data download`'s downloader pages 30 days of 1-minute trade and mark candles and the funding
    rates; killed half-way, a second run picks up where the first stopped; the files equal the history."""
    async with running_emulator(settings(funding_interval_s=EIGHT_HOURS)) as emu, connected(ccxt_async, emu) as ex:
        emu.advance_steps(1200)  # two live minutes after the generated month
        history = emu.market.history["BTCUSDT"]
        first, latest = history.first_ms, history.latest_ms
        assert (START_MS - first) / 86_400_000 >= 30
        kinds = ("ohlcv", "mark", "funding")

        def kill_half_way(kind: str, pages: int) -> None:
            if kind == "mark" and pages == 15:  # the trade candles are done, the mark candles half-way
                raise Interrupted

        with pytest.raises(Interrupted):
            await download(ex, BTC, first, latest + MINUTE_MS, tmp_path, kinds=kinds, on_page=kill_half_way)
        parts = sorted((tmp_path / ".parts" / "mark-1m").glob("*.parquet"))
        assert len(parts) == 15
        kept = sum(read_table(part, "mark").num_rows for part in parts)
        fetched = {f.kind: f for f in await download(ex, BTC, first, latest + MINUTE_MS, tmp_path, kinds=kinds)}
        assert fetched["ohlcv"].pages == 0  # done before the interruption
        assert fetched["mark"].resumed_from == first + kept * MINUTE_MS
        assert not (tmp_path / ".parts").exists()
        minutes = (latest - first) // MINUTE_MS + 1
        for kind, name in (("trade", "ohlcv"), ("mark", "mark")):
            table = read_table(tmp_path / f"{name}-1m.parquet", name)
            assert fetched[name].rows == table.num_rows == minutes and not fetched[name].gaps
            assert fetched[name].duplicates == 0
            assert table.column("timestamp_ms").to_pylist() == list(range(first, latest + 1, MINUTE_MS))
            expected = history.candles("1m", kind, first, None, minutes)
            for column, field in (("open", "open"), ("high", "high"), ("low", "low"), ("close", "close")):
                assert table.column(column).to_pylist() == [getattr(c, field) / 1e8 for c in expected], column
        funding = read_table(tmp_path / "funding.parquet", "funding")
        times = funding.column("timestamp_ms").to_pylist()
        assert all(t % (EIGHT_HOURS * 1000) == 0 for t in times)
        assert len(times) == len(history.funding()) >= 89  # 30 days of 8-hour settlements
        assert [D(repr(r)) for r in funding.column("funding_rate").to_pylist()] == [r for _, r, _ in history.funding()]


async def test_kline_paging_intervals_and_kinds(exchange, emulator):
    history = emulator.market.history["BTCUSDT"]
    newest = await exchange.fetch_ohlcv(BTC, "1m", None, 3)
    assert [r[0] for r in newest] == [history.latest_ms - k * MINUTE_MS for k in (2, 1, 0)]
    end = history.first_ms + 10 * MINUTE_MS
    raw = await exchange.fapiPublicGetKlines({"symbol": "BTCUSDT", "interval": "1m", "endTime": end, "limit": 3})
    assert [r[0] for r in raw] == [end - 2 * MINUTE_MS, end - MINUTE_MS, end]  # endTime alone: the last `limit` to it
    hourly = await exchange.fetch_ohlcv(BTC, "1h", history.first_ms, 2)
    minutes = await exchange.fetch_ohlcv(BTC, "1m", history.first_ms, 60)
    assert hourly[0][1:5] == [minutes[0][1], max(m[2] for m in minutes), min(m[3] for m in minutes), minutes[-1][4]]
    assert hourly[0][5] == pytest.approx(sum(m[5] for m in minutes))
    for interval in ("3m", "5m", "15m", "30m", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M"):
        assert await exchange.fetch_ohlcv(BTC, interval, None, 2), interval
    [week] = await exchange.fetch_ohlcv(BTC, "1w", None, 1)
    assert (week[0] // 86_400_000 + 3) % 7 == 0  # weeks open on a Monday
    for path in ("fapiPublicGetMarkPriceKlines", "fapiPublicGetPremiumIndexKlines"):
        [row] = await getattr(exchange, path)({"symbol": "BTCUSDT", "interval": "1m", "limit": 1})
        assert len(row) == 12 and len(row[1].split(".")[1]) == 8
    [index] = await exchange.fapiPublicGetIndexPriceKlines({"pair": "BTCUSDT", "interval": "1d", "limit": 1})
    assert D(index[4]) > 0
    with pytest.raises(Exception, match="-1120"):
        await exchange.fapiPublicGetKlines({"symbol": "BTCUSDT", "interval": "7m"})


async def test_trade_history_pages_by_id_and_by_time(exchange, emulator):
    history = emulator.market.history["BTCUSDT"]
    first = await exchange.fapiPublicGetAggTrades({"symbol": "BTCUSDT", "fromId": 1, "limit": 8})
    assert [t["a"] for t in first] == list(range(1, 9)) and first[0]["T"] == history.first_ms
    start = history.first_ms + 5 * MINUTE_MS
    by_time = await exchange.fapiPublicGetAggTrades({"symbol": "BTCUSDT", "startTime": start,
                                                     "endTime": start + MINUTE_MS - 1})  # fmt: skip
    assert len(by_time) == 4 and all(start <= t["T"] < start + MINUTE_MS for t in by_time)
    emulator.advance_steps(50)
    seam = history.generated_trades - 1  # the generated history runs on into the live market's trades
    across = await exchange.fapiPublicGetAggTrades({"symbol": "BTCUSDT", "fromId": seam, "limit": 5})
    assert [t["a"] for t in across] == list(range(seam, seam + len(across))) and len(across) == 5
    recent = await exchange.fetch_trades(BTC, None, 10)
    assert len(recent) == 10 and recent[-1]["id"] == str(emulator.market.symbols["BTCUSDT"].trade_id)


async def test_account_history_honours_start_end_from_id_and_limit(exchange, emulator):
    for _ in range(3):
        await exchange.create_order(BTC, "market", "buy", 0.01)
        emulator.advance_steps(10)
    income = await exchange.fapiPrivateGetIncome({"incomeType": "COMMISSION"})
    assert len(income) == 3
    oldest_two = await exchange.fapiPrivateGetIncome({"incomeType": "COMMISSION", "startTime": income[0]["time"],
                                                      "limit": 2})  # fmt: skip
    assert oldest_two == income[:2]
    future = emulator.market.now_ms + 86_400_000
    assert await exchange.fapiPrivateGetIncome({"startTime": future}) == []
    trades = await exchange.fapiPrivateGetUserTrades({"symbol": "BTCUSDT"})
    later = await exchange.fapiPrivateGetUserTrades({"symbol": "BTCUSDT", "fromId": trades[1]["id"]})
    assert later == trades[1:]
    orders = await exchange.fapiPrivateGetAllOrders({"symbol": "BTCUSDT"})
    assert await exchange.fapiPrivateGetAllOrders({"symbol": "BTCUSDT", "orderId": orders[2]["orderId"]}) == orders[2:]
    assert await exchange.fapiPrivateGetAllOrders({"symbol": "BTCUSDT", "limit": 1}) == orders[-1:]
    with pytest.raises(Exception, match="-1128"):
        await exchange.fapiPrivateGetUserTrades({"symbol": "BTCUSDT", "fromId": 1, "startTime": 1})


async def test_a_day_jump_settles_funding_at_each_funding_time_and_the_clock_agrees():
    async with running_emulator(settings(funding_interval_s=EIGHT_HOURS, start_ms=None)) as emu:
        async with aiohttp.ClientSession() as http:
            before = emu.market.now_ms
            async with http.post(f"{emu.url}/_emu/clock/advance", json={"seconds": 86_400}) as response:
                assert response.status == 200
            async with http.get(f"{emu.url}/fapi/v1/time") as response:
                server = (await response.json())["serverTime"]
            query = {"symbol": "BTCUSDT", "startTime": before}
            async with http.get(f"{emu.url}/fapi/v1/fundingRate", params=query) as response:
                settled = [r["fundingTime"] for r in await response.json()]
        first_due = (before // (EIGHT_HOURS * 1000) + 1) * EIGHT_HOURS * 1000
        assert settled == [first_due + k * EIGHT_HOURS * 1000 for k in range(3)]  # each at its own time
        # the exchange's clock jumped with the market; the market is ahead only by the 300 s it stepped
        assert 0 <= emu.market.now_ms - server <= 300_000
        history = emu.market.history["BTCUSDT"]
        emu.advance_steps(600)
        rows = history.candles("1m", "trade", before, None, 1500)
        assert [c.open_ms for c in rows] == list(range(rows[0].open_ms, rows[-1].open_ms + 1, MINUTE_MS))
