"""`botkit report` on the journal of a real flash-crash run: a bot holding a long through the emulator's
flash crash trips its drawdown guard and flattens. The report must explain that from the journal alone,
and its HTML page must render its charts, with the trip marked, in headless Chromium."""

import asyncio
import json
import os
import re
import shutil
from decimal import Decimal as D
from pathlib import Path

import pytest

from botkit.cli import main
from botkit.report import build_report
from botkit.report_html import render_html
from botkit.runtime.bot import Bot
from botkit.runtime.strategy import Strategy
from botkit.sim.server import running_emulator
from tests.integration.test_runtime import bot_config, live_market

ARTIFACTS = Path(os.environ.get("BOTKIT_ARTIFACTS", "build/artifacts"))


class HoldLong(Strategy):
    """Buys once, with a stop far below, and holds: the crash does the rest."""

    async def on_quote(self, ctx, quote):
        if not ctx.position(quote.symbol) and not ctx.open_orders(quote.symbol) and ctx.mark(quote.symbol):
            await ctx.buy(quote.symbol, stop=ctx.mark(quote.symbol) * D("0.75"), leverage=2)


@pytest.fixture(scope="module")
def crash_journal(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("crash")

    async def run() -> None:
        async with running_emulator(live_market(scenario="flash-crash", speed=20.0)) as emu:
            config = bot_config(emu, path, killswitch={"stale_feed_seconds": 2, "max_drawdown": "0.004",
                                                       "on_halt": "cancel_and_flatten"},
                                runtime={"poll_seconds": "0.2", "account_seconds": "0.2", "reconcile_seconds": 1},
                                risk={"max_leverage": 2, "risk_per_trade": "0.01", "liq_buffer": "0.01"},
                                market_risk={"half_life_seconds": "0.5", "funding_sample_seconds": "0.1",
                                             "drift_seconds": "1"})  # fmt: skip
            summary = await Bot(config, HoldLong(HoldLong.Params())).run(duration=4)  # the crash: 1.5 s to 3 s
            assert summary.crashed is None

    asyncio.run(run())
    return path / "journal.sqlite"


def test_the_report_explains_the_crash_layer_by_layer(crash_journal, capsys):
    report = build_report(crash_journal)
    trips = [t for t in report["timeline"] if t["kind"] == "killswitch.tripped"]
    assert [t["trigger"] for t in trips][:1] == ["drawdown"], report["timeline"]
    assert "drawdown" in trips[0]["detail"]
    states = [t for t in report["timeline"] if t["kind"] == "killswitch.state"]
    assert any(t["state"] == "HALTED" for t in states)
    flatten = [o for o in report["execution"]["orders"] if o.get("tag") == "flatten"]
    assert flatten and flatten[0]["status"] == "filled"  # the halt closed the position on the exchange
    pricing = report["pricing"]["BTC/USDT:USDT"]
    assert D(pricing["low_mark"]) < D(pricing["first_mark"]) * D("0.95")  # the crash is in the data
    post = report["post_trade"]
    assert D(post["pnl"]) < 0 and D(post["closest_liquidation_distance"]["BTC/USDT:USDT"]) < D("0.5")
    assert report["execution"]["intents"] >= 2 and len(report["execution"]["fills"]) >= 2
    protection = report["protection"]  # the position's stop on the exchange, cancelled once the halt flattened it
    assert protection["stop_actions"]["placed"] >= 1 and protection["stop_actions"]["cancelled"] >= 1
    assert 0 <= protection["per_symbol"]["BTC/USDT:USDT"]["longest"] < 1  # unprotected only until it was placed
    assert any(report["series"]["symbols"]["BTC/USDT:USDT"]["stop"])  # the chart's stop line

    assert main(["report", str(crash_journal)]) == 0
    text = capsys.readouterr().out
    assert "killswitch.tripped trigger=drawdown" in text and "PnL -" in text
    assert "BTC/USDT:USDT: without a stop on the exchange" in text
    assert main(["report", str(crash_journal), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["timeline"] == json.loads(json.dumps(report["timeline"]))


def test_report_of_a_missing_or_broken_journal_is_one_clear_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.sqlite")]) == 2
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a journal")
    assert main(["report", str(junk)]) == 2
    err = capsys.readouterr().err
    assert "no such journal" in err and "junk.sqlite" in err and "Traceback" not in err


def _chromium():
    webdriver = pytest.importorskip("selenium.webdriver")
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("headless Chromium is not installed (Debian packages chromium and chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1100,2400"):  # fmt: skip
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(options=options, service=Service(driver))


def test_the_html_report_renders_its_charts_with_the_trip_marked_in_headless_chromium(crash_journal, tmp_path):
    page = tmp_path / "report.html"
    assert main(["report", str(crash_journal), "--html", str(page)]) == 0
    html = page.read_text()
    page_itself = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)  # (the inlined library has URLs in it)
    assert "<script src" not in html and not re.search(r"""(src|href)=["']?(https?:)?//""", page_itself)  # offline
    assert "Trades</h2>" in html and "closest the mark came to liquidation" in html
    browser = _chromium()
    try:
        browser.get(page.as_uri())
        chart = browser.find_element("id", "charts")
        assert chart.find_elements("css selector", ".main-svg")  # Plotly drew it, offline
        keys = browser.find_element("css selector", "div.charts").get_attribute("data-charts").split()
        assert {"price-BTC/USDT:USDT", "mark-index-BTC/USDT:USDT", "liq-BTC/USDT:USDT", "equity",
                "risk-BTC/USDT:USDT", "crowding-BTC/USDT:USDT"} <= set(keys)  # fmt: skip
        figure = browser.execute_script(
            "const gd = document.getElementById('charts');"
            "const titles = (re) => [...gd.querySelectorAll('g')].filter(g => re.test(g.getAttribute('class')))"
            "                       .map(g => g.textContent).filter(t => t);"
            "return {"
            "  traces: gd.data.map(t => ({name: t.name, n: (t.y || []).length, legend: t.showlegend !== false,"
            "                             text: t.text || null})),"
            "  ytitles: titles(/^g-y[0-9]*title$/), xtitle: titles(/^g-x[0-9]*title$/),"
            "  shapes: (gd.layout.shapes || []).length,"
            "  matches: Object.keys(gd.layout).filter(k => k.startsWith('xaxis')).map(k => gd.layout[k].matches)};")
        assert {"price (USDT)", "mark − index (bps)", "% of the mark", "equity (USDT)"} <= set(figure["ytitles"])
        assert figure["xtitle"] == ["time (UTC)"]
        linked = [m for m in figure["matches"] if m]  # every time axis but one follows that one: zoom one, all follow
        assert len(figure["matches"]) >= 4 and len(linked) == len(figure["matches"]) - 1 and len(set(linked)) == 1
        assert all(t["n"] > 0 for t in figure["traces"])  # no legend entry for a line never drawn
        drawn = {t["name"] for t in figure["traces"]}
        assert {"mid", "mark", "stop on the exchange", "buy fill", "equity", "liquidation distance",
                "realized volatility", "funding", "funding z-score", "volatility / its slower average",
                "its drift (now − a drift window ago)"} <= drawn
        trips = [t for t in figure["traces"] if t["name"] == "trip"]
        assert trips and trips[0]["text"] == ["drawdown"] and figure["shapes"] >= 2  # the trip's line and label
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "report-flash-crash.png"
        browser.execute_script("arguments[0].scrollIntoView()", chart)
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        browser.quit()


def test_render_html_handles_an_empty_journal_report():
    empty = {"journal": "x", "sessions": [], "timeline": [], "data": {"feed_gaps": [], "bad_frames": {}},
             "pricing": {}, "execution": {"intents": 0, "accepted": 0, "rejected_total": 0, "rejected": {},
                                          "orders": [], "venue_refusals": [], "fills": []},
             "protection": {"unprotected": [], "per_symbol": {}, "stop_actions": {}},
             "post_trade": {"equity_start": None, "equity_end": None, "pnl": None, "funding_paid": "0",
                            "funding_received": "0", "funding_payments": []},
             "series": {"time": [], "equity": [], "state": [], "symbols": {}}}  # fmt: skip
    page = render_html(empty)
    assert "No snapshot." in page and "No trade." in page
