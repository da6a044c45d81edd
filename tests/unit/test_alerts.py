"""Alerts without a network: which journal rows raise one and how it reads, the grouping of a burst into one
message, a full queue, the daily summary on the injected clock, and secrets kept out of errors."""

import asyncio
from datetime import UTC, datetime

from botkit.clock import ManualClock, settle
from botkit.config import AlertsConfig
from botkit.operate.alerts import Alert, Alerts, alert_for, compose

HOOK = "http://127.0.0.1:9/hook/secret-part"


def test_the_rows_a_person_must_hear_about_raise_alerts_and_the_rest_do_not():
    trip = alert_for("killswitch", None, {"event": "tripped", "trigger": "drawdown", "state": "HALTED",
                                          "figures": "drawdown=0.06 max=0.05"}, 0.0)  # fmt: skip
    assert trip is not None and trip.level == "critical"
    assert trip.text == "TRIP drawdown -> HALTED: drawdown=0.06 max=0.05"
    cut = alert_for("liquidation_guard", "BTC/USDT:USDT", {"figures": "distance=0.008"}, 0.0)
    assert cut is not None and cut.text == "LIQUIDATION GUARD cut BTC/USDT:USDT: distance=0.008"
    stop = alert_for("stop", "ETH/USDT:USDT", {"action": "triggered", "trigger": "2979.14", "why": ""}, 0.0)
    assert stop is not None and stop.text == "exchange stop triggered ETH/USDT:USDT trigger 2979.14"
    crashed = alert_for("session.stopped", None, {"reason": "start-up failed", "crashed": "no such symbol",
                                                  "state": "ACTIVE", "equity_end": None}, 0.0)  # fmt: skip
    assert crashed is not None and crashed.level == "critical" and "no such symbol" in crashed.text
    for quiet in (("stop", {"action": "placed"}), ("fill", {"side": "buy"}), ("intent", {}), ("snapshot", {})):
        assert alert_for(quiet[0], "BTC/USDT:USDT", quiet[1], 0.0) is None


def test_a_burst_is_one_message_with_the_worst_level_and_the_rest_counted():
    burst = [Alert(1_700_000_000.0 + n, "warning" if n else "critical", "killswitch", f"trip {n}") for n in range(25)]
    level, text = compose("bot", burst, dropped=3)
    lines = text.splitlines()
    assert level == "critical" and lines[0] == "[botkit bot] 25 alerts: 25 killswitch"
    assert len(lines) == 1 + 20 + 2 and lines[1] == "22:13:20 trip 0" and lines[-2].startswith("... and 5 more")
    assert lines[-1] == "(3 older alerts were dropped: the queue was full)"


def test_a_full_queue_drops_the_oldest_and_counts_them():
    alerts = Alerts(AlertsConfig(webhook_url=HOOK, queue_size=10), "bot")
    for n in range(15):
        alerts.raise_(Alert(0.0, "info", "killswitch", f"alert {n}"))
    [target] = alerts.targets
    assert target.pending[0].text == "alert 5" and len(target.pending) == 10 and target.dropped == 5


async def test_the_daily_summary_goes_out_at_its_utc_time_on_the_injected_clock():
    wall = datetime(2026, 12, 1, 23, 59, 0, tzinfo=UTC).timestamp()
    clock = ManualClock(wall=wall)
    alerts = Alerts(AlertsConfig(webhook_url=HOOK, daily_summary_utc="00:00"), "bot", clock=clock,
                    summary=lambda: "state ACTIVE, equity 10000")  # fmt: skip
    task = asyncio.create_task(alerts._daily())
    try:
        await settle()
        await clock.advance(59)
        [target] = alerts.targets
        assert not target.pending  # 23:59:59: not yet
        await clock.advance(1)
        assert [a.text for a in target.pending] == ["daily summary: state ACTIVE, equity 10000"]
        await clock.advance(86_400)
        assert len(target.pending) == 2  # and the next day again
    finally:
        task.cancel()


async def test_a_failed_delivery_is_journalled_without_the_url():
    written = []
    journal = type("J", (), {"write": lambda self, event: written.append(event)})()
    alerts = Alerts(AlertsConfig(webhook_url=HOOK, timeout_seconds=1), "bot", journal=journal)
    import aiohttp

    async with aiohttp.ClientSession() as session:  # port 9 on loopback: nothing listens, refused at once
        [target] = alerts.targets
        assert not await alerts.deliver(session, target, {"text": "x"}, retries=0)
    [event] = written
    assert event.destination == "webhook" and event.attempts == 1 and "secret-part" not in event.error
    assert target.failed == 1 and target.last_error == event.error
