"""Alerts: tell a person what the guardrails did, off the trading path.

Every journal row is offered to `Alerts.offer` as it is written (the journal's listener hook). The rows a
person must hear about (trips, state changes, halts and resumes, halt actions, liquidation-guard cuts,
exchange-stop events, runtime errors, the start and the end of a session) become `Alert`s. Each
destination has its own bounded queue and its own sender task, so a receiver that hangs or fails delays
no order and no other destination:

- `offer` only appends to the queues (no I/O, no await): the trading path pays a dict look-up;
- a sender waits `group_seconds` after the first alert of a burst and sends everything that arrived as
  one message (a storm of 50 trips is one message, not 50);
- a delivery is retried with doubling back-off, each attempt limited to `timeout_seconds`; one that still
  fails is journalled (`alert.failed`, without the URL: the URLs and tokens are secrets) and counted;
- a full queue drops its oldest alerts and says how many in the next message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from botkit.clock import Clock, SystemClock
from botkit.config import AlertsConfig
from botkit.log import get_logger
from botkit.runtime import events

log = get_logger("botkit.alerts")
# the journal kinds that can raise an alert
ALERTING = frozenset({events.SwitchChanged.KIND, events.HaltAction.KIND, events.GuardCut.KIND,
                      events.StopChanged.KIND, events.RuntimeFailed.KIND, events.SessionStarted.KIND,
                      events.SessionStopped.KIND, events.RulesChanged.KIND})  # fmt: skip
BACKOFF_BASE_S = 0.5  # the first retry waits this long, doubling up to BACKOFF_CAP_S
BACKOFF_CAP_S = 30.0
SHOWN = 20  # alerts listed in full in one message; the rest are counted by kind
TEXT_LIMITS = {"telegram": 4096, "discord": 2000, "slack": 38_000, "webhook": 100_000}


@dataclass(frozen=True, slots=True)
class Alert:
    """One thing a person should hear about."""

    time: float  # wall-clock seconds
    level: str  # info, warning, critical
    kind: str  # the journal row's kind
    text: str  # one line
    symbol: str | None = None


def alert_for(kind: str, symbol: str | None, data: dict[str, Any], now: float) -> Alert | None:
    """The alert a journal row raises, if any (the row's own figures, never a secret: the journal holds none)."""
    said = events.headline(kind, symbol, data)
    return Alert(now, said[0], kind, said[1], symbol) if said is not None else None


def compose(bot: str, alerts: list[Alert], dropped: int = 0) -> tuple[str, str]:
    """(the message's level, its text) for a batch: a headline, then one line per alert (the first SHOWN),
    then what was left out, counted by kind."""
    level = max((a.level for a in alerts), key=["info", "warning", "critical"].index, default="info")
    if len(alerts) == 1:
        head = f"[botkit {bot}] {alerts[0].text}"
    else:
        counts: dict[str, int] = {}
        for a in alerts:
            counts[a.kind] = counts.get(a.kind, 0) + 1
        head = f"[botkit {bot}] {len(alerts)} alerts: " + ", ".join(f"{n} {k}" for k, n in counts.items())
    lines = [head]
    if len(alerts) > 1:
        lines += [f"{_hhmmss(a.time)} {a.text}" for a in alerts[:SHOWN]]
        if len(alerts) > SHOWN:
            lines.append(f"... and {len(alerts) - SHOWN} more (botkit report <journal> has them all)")
    if dropped:
        lines.append(f"({dropped} older alerts were dropped: the queue was full)")
    return level, "\n".join(lines)


def _hhmmss(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%H:%M:%S")


@dataclass
class Destination:
    """One receiver: its format, where it is, and what it still has to send."""

    kind: str  # webhook, slack, discord, telegram
    url: str  # a secret: the webhooks' URLs and Telegram's carry the token
    chat_id: str | None = None
    pending: deque[Alert] = field(default_factory=deque)
    dropped: int = 0
    sent: int = 0  # messages delivered
    failed: int = 0  # messages given up on
    last_error: str | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def payload(self, bot: str, level: str, text: str, alerts: list[Alert], dropped: int) -> dict[str, Any]:
        text = text[: TEXT_LIMITS[self.kind]]
        if self.kind == "slack":
            return {"text": text}
        if self.kind == "discord":
            return {"content": text}
        if self.kind == "telegram":
            return {"chat_id": self.chat_id, "text": text, "disable_web_page_preview": True}
        return {
            "bot": bot, "level": level, "text": text, "dropped": dropped,
            "alerts": [{"time": datetime.fromtimestamp(a.time, UTC).isoformat(), "level": a.level, "kind": a.kind,
                        "symbol": a.symbol, "text": a.text} for a in alerts],
        }  # fmt: skip


def destinations(config: AlertsConfig) -> list[Destination]:
    found = []
    for kind, secret in (("webhook", config.webhook_url), ("slack", config.slack_url),
                         ("discord", config.discord_url)):  # fmt: skip
        if secret is not None:
            found.append(Destination(kind, secret.get_secret_value()))
    if config.telegram_token is not None:
        base = str(config.telegram_api_url).rstrip("/")
        url = f"{base}/bot{config.telegram_token.get_secret_value()}/sendMessage"
        found.append(Destination("telegram", url, chat_id=config.telegram_chat_id))
    return found


class Alerts:
    """The alert senders of one bot (see the module's docstring)."""

    def __init__(self, config: AlertsConfig, bot: str, *, clock: Clock | None = None,
                 journal: Any = None, summary: Callable[[], str] | None = None) -> None:  # fmt: skip
        """`journal`: where failed deliveries are recorded; `summary`: the daily summary's text."""
        self.config, self.bot, self.clock = config, bot, clock or SystemClock()
        self.journal, self.summary = journal, summary
        self.targets = destinations(config)
        self.secrets = config.secrets()
        self.raised = 0  # alerts raised (each goes to every destination)

    def offer(self, kind: str, symbol: str | None, client_id: str | None, data: dict[str, Any]) -> None:
        """A journal row (the listener): queue the alert it raises. Never blocks, never raises I/O."""
        if kind not in ALERTING:
            return
        alert = alert_for(kind, symbol, data, self.clock.time())
        if alert is not None:
            self.raise_(alert)

    def raise_(self, alert: Alert) -> None:
        self.raised += 1
        for target in self.targets:
            if len(target.pending) >= self.config.queue_size:
                target.pending.popleft()
                target.dropped += 1
            target.pending.append(alert)
            target.arrived.set()

    def failures(self) -> dict[str, Any]:
        """Per destination kind: messages delivered, given up on, and the last error (for the panel)."""
        return {t.kind: {"sent": t.sent, "failed": t.failed, "last_error": t.last_error, "queued": len(t.pending)}
                for t in self.targets}  # fmt: skip

    async def run(self) -> None:
        """The senders and the daily summary, until cancelled."""
        if not self.targets:
            return
        timeout = aiohttp.ClientTimeout(total=float(self.config.timeout_seconds))
        async with aiohttp.ClientSession(timeout=timeout) as session, asyncio.TaskGroup() as group:
            for target in self.targets:
                group.create_task(self._send_forever(session, target), name=f"alerts-{target.kind}")
            if self.config.daily_summary_utc is not None and self.summary is not None:
                group.create_task(self._daily(), name="alerts-daily")

    async def drain(self, seconds: float) -> None:
        """At shutdown: give the queued alerts (the session's end among them) up to `seconds` to go out."""
        if not self.targets:
            return
        timeout = aiohttp.ClientTimeout(total=float(self.config.timeout_seconds))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await asyncio.gather(*(self._send_batch(session, t, retries=0) for t in self.targets
                                           if t.pending))  # fmt: skip

    async def _send_forever(self, session: aiohttp.ClientSession, target: Destination) -> None:
        while True:
            await target.arrived.wait()
            await self.clock.sleep(float(self.config.group_seconds))  # the burst's window: one message for it
            await self._send_batch(session, target, retries=self.config.retries)

    async def _send_batch(self, session: aiohttp.ClientSession, target: Destination, retries: int) -> bool:
        batch, dropped = list(target.pending), target.dropped
        target.pending.clear()
        target.dropped = 0
        target.arrived.clear()
        if not batch:
            return True
        level, text = compose(self.bot, batch, dropped)
        return await self.deliver(session, target, target.payload(self.bot, level, text, batch, dropped),
                                  retries=retries, alerts=len(batch))  # fmt: skip

    async def deliver(self, session: aiohttp.ClientSession, target: Destination, payload: dict[str, Any], *,
                      retries: int, alerts: int = 1) -> bool:  # fmt: skip
        """POST one message, retrying with back-off; a final failure is journalled. True if it arrived."""
        error = ""
        for attempt in range(retries + 1):
            if attempt:
                await self.clock.sleep(min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))
            started = time.monotonic()
            try:
                async with session.post(target.url, json=payload) as answer:
                    body = await answer.text()
                    if answer.status < 300 and (target.kind != "telegram" or '"ok":true' in body.replace(" ", "")):
                        target.sent += 1
                        return True
                    error = f"HTTP {answer.status}: {body[:200]}"
            except TimeoutError:
                error = f"no answer within {time.monotonic() - started:.1f}s"
            except aiohttp.ClientError as exc:
                error = f"{type(exc).__name__}: {exc}"
            error = self._redact(error)
        target.failed += 1
        target.last_error = error
        log.warning("alerts.failed", destination=target.kind, error=error, attempts=retries + 1, alerts=alerts)
        if self.journal is not None:
            self.journal.write(events.AlertFailed(destination=target.kind, error=error, attempts=retries + 1,
                                                  alerts=alerts))  # fmt: skip
        return False

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "**********")
        return text

    async def _daily(self) -> None:
        assert self.config.daily_summary_utc is not None and self.summary is not None
        hour, minute = (int(part) for part in self.config.daily_summary_utc.split(":"))
        while True:
            now = datetime.fromtimestamp(self.clock.time(), UTC)
            due = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            if due <= now:
                due += timedelta(days=1)
            await self.clock.sleep((due - now).total_seconds())
            self.raise_(Alert(self.clock.time(), "info", "summary", f"daily summary: {self.summary()}"))


async def send_test(config: AlertsConfig, bot: str) -> list[tuple[str, str | None]]:
    """`botkit alerts test`: one test message to each destination, no retries: (kind, error or None) each."""
    alerts = Alerts(config, bot)
    results: list[tuple[str, str | None]] = []
    timeout = aiohttp.ClientTimeout(total=float(config.timeout_seconds))
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for target in alerts.targets:
            test = Alert(time.time(), "info", "test", "test message: alerts reach this destination")
            level, text = compose(bot, [test])
            ok = await alerts.deliver(session, target, target.payload(bot, level, text, [test], 0), retries=0)
            results.append((target.kind, None if ok else target.last_error))
    return results
