"""Operating a running bot: alerts to a person, Prometheus metrics, a status page and API.

This room sits above the runtime and never on its path: it learns what happens from the journal's rows
(the journal's listener hook) and reads the bot's state when asked, so a slow receiver, a scrape or a
page load cannot delay an order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from botkit.operate.alerts import Alerts
from botkit.operate.metrics import CONTENT_TYPE, Metrics
from botkit.operate.status import status_app

DRAIN_S = 5.0  # at the end, how long the last alerts (the session's end) may take to go out


@dataclass
class Operations:
    alerts: Alerts
    metrics: Metrics | None
    metrics_url: str | None = None
    status_url: str | None = None


def summary_line(bot: Any) -> str:
    s = bot.status()
    positions = ", ".join(f"{p['symbol']} {p['side']} {p['qty']}" for p in s["positions"]) or "flat"
    stats = s["stats"]
    return (f"state {s['state'].value}, equity {s['equity']} (start {s['equity_start']}), {positions}; "
            f"intents {stats.intents}, fills {stats.fills}, trips {stats.trips}")  # fmt: skip


@contextlib.asynccontextmanager
async def operating(bot: Any, *, token: str | None = None, drain_s: float = DRAIN_S) -> AsyncIterator[Operations]:
    """Alerts, metrics and the status page of `bot` for as long as the block runs (enter it before
    `bot.run()`, so the session's first row is seen; the last alerts get `drain_s` to go out when it ends)."""
    config = bot.config
    alerts = Alerts(config.alerts, bot.journal.path.stem, clock=bot.clock, journal=bot.journal,
                    summary=lambda: summary_line(bot))  # fmt: skip
    bot.journal.listeners.append(alerts.offer)
    ops = Operations(alerts, None)
    runners: list[web.AppRunner] = []
    tasks = [asyncio.create_task(alerts.run(), name="alerts")]
    host = config.runtime.listen_host
    try:
        if config.runtime.metrics_port is not None:
            metrics = ops.metrics = Metrics(bot)
            bot.journal.listeners.append(metrics.counts.offer)
            tasks.append(asyncio.create_task(metrics.lag.run(), name="loop-lag"))

            async def scrape(request: web.Request) -> web.Response:
                return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

            app = web.Application()
            app.router.add_get("/metrics", scrape)
            port = await _serve(app, host, config.runtime.metrics_port, runners)
            ops.metrics_url = f"http://{_url_host(host)}:{port}/metrics"
        if config.runtime.status_port is not None:
            port = await _serve(status_app(bot, token), host, config.runtime.status_port, runners)
            ops.status_url = f"http://{_url_host(host)}:{port}/"
        yield ops
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await alerts.drain(drain_s)
        for runner in runners:
            await runner.cleanup()


async def _serve(app: web.Application, host: str, port: int, runners: list[web.AppRunner]) -> int:
    """Start `app` on host:port (0: a free port) and return the port it got."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    runners.append(runner)
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else port


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
