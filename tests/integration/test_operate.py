"""Operating a bot, driven for real: alerts to a local HTTP receiver in every format, a Prometheus scrape
parsed by Prometheus's own text-format parser, and the status page in headless Chromium."""

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from decimal import Decimal as D

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from botkit.clock import ManualClock
from botkit.config import AlertsConfig
from botkit.domain import TradingState
from botkit.operate import operating
from botkit.operate.alerts import Alerts
from botkit.runtime.bot import Bot
from botkit.runtime.journal import read_events
from botkit.sim.server import running_emulator
from tests.integration.test_report import ARTIFACTS, HoldLong, _chromium
from tests.integration.test_runtime import QuickSma, bot_config, live_market, wait_for
from tests.support import ROOT

SECRET = "s3cr3t-path-token"
TELEGRAM_TOKEN = "123456:ABC-telegram-token"


class Receiver:
    """A local HTTP server standing in for the webhook, Slack, Discord and Telegram endpoints: it records
    every request; `fail` answers 500, `hang` holds the request open until `release` is set."""

    def __init__(self, fail: set[str] = frozenset(), hang: set[str] = frozenset()) -> None:
        self.fail, self.hang = set(fail), set(hang)
        self.got: list[tuple[str, dict, float]] = []  # (kind, JSON body, monotonic time it arrived)
        self.hanging: list[float] = []  # when each held request arrived
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path
        kind = ("telegram" if path.endswith("/sendMessage") else
                path.split("/")[1])  # fmt: skip
        body = await request.json()
        self.got.append((kind, body, time.monotonic()))
        self.arrived.set()
        if kind in self.hang:
            self.hanging.append(time.monotonic())
            await self.release.wait()
        if kind in self.fail:
            return web.json_response({"error": "down"}, status=500)
        if kind == "telegram":
            return web.json_response({"ok": True, "result": {"message_id": len(self.got)}})
        return web.Response(text="ok")

    def config(self, **changes) -> dict:
        return {"webhook_url": f"{self.url}/webhook/{SECRET}", "slack_url": f"{self.url}/slack/{SECRET}",
                "discord_url": f"{self.url}/discord/{SECRET}", "telegram_token": TELEGRAM_TOKEN,
                "telegram_chat_id": "-1001", "telegram_api_url": self.url, "daily_summary_utc": None} | changes

    def texts(self, kind: str) -> list[str]:
        field = {"slack": "text", "discord": "content", "telegram": "text", "webhook": "text"}[kind]
        return [body[field] for k, body, _ in self.got if k == kind]


@contextlib.asynccontextmanager
async def receiving(**options):
    receiver = Receiver(**options)
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    try:
        yield receiver
    finally:
        receiver.release.set()
        await runner.cleanup()


async def test_a_flash_crash_sends_the_trip_and_guard_alerts_in_every_format(tmp_path):
    async with receiving() as receiver, running_emulator(live_market(scenario="flash-crash", speed=20.0)) as emu:
        config = bot_config(emu, tmp_path, killswitch={"stale_feed_seconds": 2, "max_drawdown": "0.004",
                                                       "on_halt": "cancel_and_flatten"},
                            runtime={"poll_seconds": "0.2", "account_seconds": "0.2", "reconcile_seconds": 1},
                            risk={"max_leverage": 2, "risk_per_trade": "0.01", "liq_buffer": "0.01"},
                            alerts=receiver.config(group_seconds="0.2"))  # fmt: skip
        bot = Bot(config, HoldLong(HoldLong.Params()))
        async with operating(bot):
            summary = await bot.run(duration=4)  # the crash: 1.5 s to 3 s of the run
        assert summary.crashed is None and summary.stats.trips >= 1

    for kind in ("webhook", "slack", "discord", "telegram"):
        text = "\n".join(receiver.texts(kind))
        assert "TRIP drawdown -> HALTED" in text, (kind, text)
        assert "halt action flatten" in text and "trading state HALTED" in text, (kind, text)
        assert "started HoldLong in mode demo" in text and "stopped: duration" in text, (kind, text)
    hooks = [body for kind, body, _ in receiver.got if kind == "webhook"]
    trip = next(a for body in hooks for a in body["alerts"] if "TRIP" in a["text"])
    assert trip["level"] == "critical" and trip["kind"] == "killswitch" and trip["time"].endswith("+00:00")
    assert all(body["bot"] == "journal" and body["level"] in ("info", "warning", "critical") for body in hooks)
    telegram = [body for kind, body, _ in receiver.got if kind == "telegram"]
    assert all(body["chat_id"] == "-1001" and body["disable_web_page_preview"] for body in telegram)
    assert not list(read_events(config.journal.path, ["alert.failed"]))


async def test_a_failing_or_hanging_receiver_delays_no_order_and_the_failure_is_journalled(tmp_path, capsys):
    async with receiving(fail={"slack"}, hang={"webhook"}) as receiver, \
            running_emulator(live_market(seed=3)) as emu:  # fmt: skip
        config = bot_config(emu, tmp_path, params={"fast": 2, "slow": 4},
                            alerts=receiver.config(group_seconds=0, timeout_seconds=30, retries=1,
                                                   discord_url=None, telegram_token=None, telegram_chat_id=None))
        bot = Bot(config, QuickSma(QuickSma.Params(fast=2, slow=4)))
        async with operating(bot, drain_s=0.2):  # (the hanging webhook would hold the drain for its whole time)
            run = asyncio.create_task(bot.run(duration=5))
            await wait_for(lambda: receiver.hanging, 5)  # the webhook holds the session's first alert
            hung_at = receiver.hanging[0]
            summary = await run
            still_hanging = not receiver.release.is_set()
        assert summary.crashed is None and still_hanging
    rows = list(read_events(config.journal.path))
    sent = {e.client_id: e.mono for e in rows if e.kind == "order.sending"}
    acked = {}
    for e in rows:
        if e.kind == "order" and e.client_id in sent:
            acked.setdefault(e.client_id, e.mono)
    during = [cid for cid, at in sent.items() if at > hung_at and cid in acked]
    latencies = sorted(acked[cid] - sent[cid] for cid in during)
    with capsys.disabled():
        print(f"orders sent and acknowledged while the webhook hung: {len(during)}; sending->ack "
              f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms" if latencies
              else "no order while the webhook hung")  # fmt: skip
    assert len(during) >= 2, "the strategy traded while an alert delivery hung"
    [failed] = [e for e in rows if e.kind == "alert.failed"]  # slack: 500 twice (one retry), then given up
    assert failed.data["destination"] == "slack" and failed.data["attempts"] == 2 and "HTTP 500" in failed.data["error"]
    journal_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite*"))
    assert SECRET.encode() not in journal_bytes and TELEGRAM_TOKEN.encode() not in journal_bytes
    assert SECRET not in capsys.readouterr().err


async def test_a_burst_of_50_trips_is_one_message():
    clock = ManualClock()
    async with receiving() as receiver:
        config = AlertsConfig(**receiver.config(group_seconds=2, slack_url=None, discord_url=None, telegram_token=None,
                                                telegram_chat_id=None))  # fmt: skip
        alerts = Alerts(config, "bot-1", clock=clock)
        task = asyncio.create_task(alerts.run())
        try:
            for n in range(50):
                alerts.offer("killswitch", None, None, {"event": "tripped", "trigger": f"t{n}", "state": "HALTED",
                                                        "figures": f"n={n}"})  # fmt: skip
            await wait_for(lambda: clock._sleepers, 5)  # the sender waits out the burst's window ...
            await clock.advance(2)  # ... which ends: one message for the 50
            await asyncio.wait_for(receiver.arrived.wait(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    [(kind, body, _)] = receiver.got
    assert kind == "webhook"
    assert len(body["alerts"]) == 50 and body["level"] == "critical"
    assert body["text"].startswith("[botkit bot-1] 50 alerts: 50 killswitch")
    assert "... and 30 more" in body["text"]


async def _scrape(url: str) -> dict[str, dict[tuple, float]]:
    """name -> {label values: value} of every sample (a family with no sample yet maps to {})."""
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await answer.text()
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        samples.setdefault(family.name + ("_total" if family.type == "counter" else ""), {})
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


async def test_the_metrics_endpoint_parses_and_its_figures_match_the_journal(tmp_path):
    async with running_emulator(live_market(seed=3)) as emu:
        config = bot_config(emu, tmp_path, params={"fast": 2, "slow": 4}, runtime={"metrics_port": 0})
        bot = Bot(config, QuickSma(QuickSma.Params(fast=2, slow=4)))
        async with operating(bot) as ops:
            run = asyncio.create_task(bot.run(duration=6))
            await wait_for(lambda: bot.stats.fills >= 1, 10)
            during = await _scrape(ops.metrics_url)  # while it trades
            summary = await run
            after = await _scrape(ops.metrics_url)  # the server outlives the run until the block ends
        assert summary.crashed is None
    assert during["botkit_trading_state"][(("state", "ACTIVE"),)] == 1
    assert during["botkit_equity_usdt"][()] > 0 and during["botkit_fills_total"]
    assert "botkit_rate_budget_remaining" in during and "botkit_event_loop_lag_seconds" in during
    assert any(k[0][1].startswith("mark:") for k in during["botkit_feed_age_seconds"])
    funding = during["botkit_market_risk"][(("figure", "funding_annual"), ("symbol", "BTC/USDT:USDT"))]
    assert funding == pytest.approx(0.0001 * 3 * 365)  # the emulator's calm 0.01 % an 8-hour interval, a year

    rows = list(read_events(config.journal.path))
    by = lambda kind, key: Counter(str(key(e)) for e in rows if e.kind == kind)  # noqa: E731
    assert {k[0][1]: v for k, v in after["botkit_intents_total"].items()} == by("intent", lambda e: e.data["source"])
    assert {k[0][1]: v for k, v in after["botkit_verdicts_total"].items()} == by("verdict",
                                                                                 lambda e: e.data["decision"])
    fills = Counter((e.symbol, e.data["side"]) for e in rows if e.kind == "fill")
    assert {(dict(k)["symbol"], dict(k)["side"]): v for k, v in after["botkit_fills_total"].items()} == fills
    final: dict[str, str] = {}
    for e in rows:
        if e.kind == "order" and e.data["status"] in ("filled", "canceled", "expired", "rejected"):
            final.setdefault(e.client_id, e.data["status"])
    assert {k[0][1]: v for k, v in after["botkit_orders_total"].items()} == Counter(final.values())
    assert sum(after["botkit_fills_total"].values()) >= 2
    assert after["botkit_journal_rows_total"][()] > 0 and after["botkit_journal_commit_seconds_total"][()] > 0
    dashboard = (ROOT / "docker" / "grafana" / "botkit.json").read_text()  # it graphs what the bot serves
    assert set(re.findall(r"botkit_[a-z0-9_]+", dashboard)) <= set(after)
    documented = set(re.findall(r"`(botkit_[a-z0-9_]+)`", (ROOT / "docs" / "operate.md").read_text()))
    assert documented == set(after)  # docs/operate.md lists every metric, and no other
    equity = [e for e in rows if e.kind == "snapshot" and e.data.get("equity") is not None][-1]
    assert after["botkit_equity_usdt"][()] == pytest.approx(float(D(equity.data["equity"])), rel=1e-9)


async def test_the_status_page_updates_live_and_halts_only_with_the_token(tmp_path, monkeypatch):
    browser = _chromium()
    try:
        async with running_emulator(live_market(seed=3)) as emu:
            config = bot_config(emu, tmp_path, runtime={"status_port": 0})
            bot = Bot(config, HoldLong(HoldLong.Params()))  # one position, held: the page has it to show
            async with operating(bot, token="let-me-in") as ops:
                run = asyncio.create_task(bot.run(duration=30))
                await wait_for(lambda: bot.stats.fills >= 1, 15)
                await asyncio.to_thread(browser.get, ops.status_url)
                text = lambda id_: browser.find_element("id", id_).text  # noqa: E731
                await wait_for(lambda: text("state") == "ACTIVE", 10)
                first = text("updated")
                await wait_for(lambda: text("updated") != first, 10)  # it polls: no reload
                await wait_for(lambda: "BTC/USDT:USDT" in text("positions"), 10)
                await wait_for(lambda: "BTC/USDT:USDT" in text("market_risk"), 10)  # the early warning

                async with aiohttp.ClientSession() as session:
                    for headers in ({}, {"Authorization": "Bearer wrong"}):
                        async with session.post(ops.status_url + "api/halt", headers=headers) as answer:
                            assert answer.status == 401
                    async with session.get(ops.status_url + "api/status") as answer:
                        status = await answer.json()
                assert bot.ks.state is TradingState.ACTIVE and status["state"] == "ACTIVE"
                assert status["positions"][0]["symbol"] == "BTC/USDT:USDT" and "." in status["positions"][0]["qty"]
                assert status["market_risk"]["BTC/USDT:USDT"]["funding_annual"] == pytest.approx(0.0001 * 3 * 365)

                browser.find_element("id", "halt").click()  # no token typed: refused
                await wait_for(lambda: text("answer").startswith("refused"), 10)
                assert bot.ks.state is TradingState.ACTIVE
                browser.find_element("id", "token").send_keys("let-me-in")
                browser.find_element("id", "halt").click()
                await wait_for(lambda: bot.ks.state is TradingState.HALTED, 10)
                await wait_for(lambda: text("state") == "HALTED" and "manual" in text("trips"), 10)
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                assert browser.save_screenshot(str(ARTIFACTS / "status-page-halted.png"))
                browser.find_element("id", "resume").click()
                await wait_for(lambda: bot.ks.state is TradingState.ACTIVE, 10)
                bot.stop()
                await run
        halts = [e for e in read_events(config.journal.path, ["killswitch"]) if e.data["trigger"] == "manual"]
        assert halts and "halted over the status API" in halts[0].data["figures"]
    finally:
        browser.quit()


async def test_without_a_token_the_control_endpoints_are_off(tmp_path, monkeypatch):
    monkeypatch.delenv("BOTKIT_STATUS_TOKEN", raising=False)
    async with running_emulator(live_market(seed=3)) as emu:
        config = bot_config(emu, tmp_path, runtime={"status_port": 0})
        bot = Bot(config, QuickSma(QuickSma.Params()))
        async with operating(bot) as ops:
            run = asyncio.create_task(bot.run(duration=30))
            async with aiohttp.ClientSession() as session:
                await wait_for(lambda: bot.ks.state is TradingState.ACTIVE and bot.account.equity is not None, 10)
                for action in ("halt", "resume"):
                    async with session.post(ops.status_url + f"api/{action}",
                                            headers={"Authorization": "Bearer anything"}) as answer:  # fmt: skip
                        assert answer.status == 403 and "BOTKIT_STATUS_TOKEN" in (await answer.json())["error"]
                async with session.get(ops.status_url + "api/status") as answer:
                    assert json.loads(await answer.text())["state"] == "ACTIVE"
            assert bot.ks.state is TradingState.ACTIVE
            bot.stop()
            await run


async def test_alerts_test_sends_one_message_to_each_destination(tmp_path, capsys):
    from botkit.cli import main

    async with receiving(fail={"discord"}) as receiver:
        lines = [f'{k} = "{v}"' for k, v in receiver.config().items() if v is not None]
        (tmp_path / "bot.toml").write_text("[alerts]\n" + "\n".join(lines) + "\n")
        code = await asyncio.to_thread(main, ["alerts", "test", "--config", str(tmp_path / "bot.toml")])
    out = capsys.readouterr().out
    assert code == 1 and "webhook: delivered" in out and "telegram: delivered" in out
    assert "discord: failed: HTTP 500" in out and SECRET not in out
    assert sorted(kind for kind, _, _ in receiver.got) == ["discord", "slack", "telegram", "webhook"]
    assert all("test message" in receiver.texts(kind)[0] for kind in ("webhook", "slack", "discord", "telegram"))
    (tmp_path / "none.toml").write_text("[alerts]\n")
    assert main(["alerts", "test", "--config", str(tmp_path / "none.toml")]) == 2
    assert "names no destination" in capsys.readouterr().err
