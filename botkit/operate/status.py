"""The status page and its small HTTP API (`runtime.status_port`, loopback by default).

    GET  /             a page showing what the terminal panel shows, updating itself every second
    GET  /api/status   the same as JSON (numbers as exact decimal strings)
    POST /api/halt     halt trading (JSON body {"reason": ...} optional)    } only with the bearer token
    POST /api/resume   resume trading                                       } from BOTKIT_STATUS_TOKEN

Without BOTKIT_STATUS_TOKEN in the environment the two POST endpoints are off (403 for everyone): a page
anyone on the machine can read must not be a way to trade. The token is compared in constant time.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from aiohttp import web

from botkit.runtime.journal import to_json

TOKEN_ENV = "BOTKIT_STATUS_TOKEN"


def status_json(bot: Any) -> dict[str, Any]:
    """The bot's status as plain JSON data."""
    status = bot.status()
    status["orders"] = [{"symbol": o.symbol, "side": o.side, "type": o.type, "qty": o.qty, "price": o.price,
                         "filled": o.filled, "status": o.status, "client_id": o.client_id, "reduce_only": o.reduce_only}
                        for o in status["orders"]]  # fmt: skip
    status["rejected"] = dict(status["stats"].rejected.most_common())
    status["time"] = bot.clock.time()
    return to_json(status)  # type: ignore[no-any-return]


def status_app(bot: Any, token: str | None = None) -> web.Application:
    """The page and the API of one bot; `token` (default: BOTKIT_STATUS_TOKEN) guards halt and resume."""
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    app = web.Application()

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html", charset="utf-8")

    async def status(request: web.Request) -> web.Response:
        return web.json_response(status_json(bot))

    def allowed(request: web.Request) -> web.Response | None:
        if token is None:
            return web.json_response({"error": f"halt and resume over HTTP are off: set {TOKEN_ENV} to use them"},
                                     status=403)  # fmt: skip
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            return web.json_response({"error": "a valid bearer token is needed"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        return None

    async def halt(request: web.Request) -> web.Response:
        if (refused := allowed(request)) is not None:
            return refused
        reason = "halted over the status API"
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "the body must be JSON, e.g. {\"reason\": \"...\"}"}, status=400)
            if isinstance(body, dict) and isinstance(body.get("reason"), str) and body["reason"].strip():
                reason = body["reason"].strip()[:200]
        bot.ks.halt(reason)
        return web.json_response({"state": bot.ks.state.value})

    async def resume(request: web.Request) -> web.Response:
        if (refused := allowed(request)) is not None:
            return refused
        bot.ks.resume("the status API")
        return web.json_response({"state": bot.ks.state.value})

    app.router.add_get("/", page)
    app.router.add_get("/api/status", status)
    app.router.add_post("/api/halt", halt)
    app.router.add_post("/api/resume", resume)
    return app


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>botkit status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
 h1 { font-size: 1.3em; margin: 0 0 .3em; } h2 { font-size: 1.05em; margin: 1.2em 0 .3em; }
 table { border-collapse: collapse; } td, th { padding: .2em .7em; border-bottom: 1px solid #ddd; text-align: right; }
 th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
 .state { font-weight: bold; padding: .1em .5em; border-radius: .3em; }
 .ACTIVE { background: #d8f5d8; } .REDUCING { background: #fff0c0; } .HALTED { background: #ffd0d0; }
 .trip { color: #a00; } .muted { color: #777; } #control { margin-top: 1em; }
 #recent td { text-align: left; } #error { color: #a00; }
</style></head>
<body>
<h1>botkit <span id="journal" class="muted"></span></h1>
<div>state <span id="state" class="state"></span> &middot; equity <b id="equity">-</b> USDT
 (start <span id="equity_start">-</span>) &middot; open orders <b id="open_orders">-</b>
 &middot; updated <span id="updated" class="muted">never</span> <span id="error"></span></div>
<div id="trips" class="trip"></div>
<h2>positions</h2>
<table id="positions"><thead><tr><th>symbol</th><th>side</th><th>qty</th><th>entry</th><th>mark</th>
<th>liquidation</th><th>distance</th><th>stop</th><th>uPnL</th></tr></thead><tbody></tbody></table>
<h2>early warning</h2>
<table id="market_risk"><thead><tr><th>symbol</th><th>volatility/yr</th><th>funding/yr</th><th>funding z</th>
<th>basis</th><th>vol ratio</th><th>OI change</th></tr></thead><tbody></tbody></table>
<h2>open orders</h2>
<table id="orders"><thead><tr><th>symbol</th><th>side</th><th>type</th><th>qty</th><th>price</th>
<th>filled</th><th>status</th></tr></thead><tbody></tbody></table>
<h2>feeds</h2><table id="feeds"><thead><tr><th>stream</th><th>age</th></tr></thead><tbody></tbody></table>
<h2>orders and rejections</h2><div id="counts"></div>
<h2>recent events</h2><table id="recent"><thead><tr><th>time</th><th>kind</th><th>symbol</th><th>what</th></tr>
</thead><tbody></tbody></table>
<div id="control"><input id="token" type="password" placeholder="bearer token" autocomplete="off">
 <button id="halt">Halt</button> <button id="resume">Resume</button> <span id="answer"></span></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const num = (v, d) => v === null || v === undefined ? "-" : Number(v).toLocaleString("en", {maximumFractionDigits: d});
function rows(id, items, cells) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren(...items.map((item) => {
    const tr = document.createElement("tr");
    for (const value of cells(item)) { const td = document.createElement("td"); td.textContent = value; tr.append(td); }
    return tr;
  }));
}
function what(e) {
  return Object.entries(e.data).filter(([k, v]) => v !== null && typeof v !== "object")
    .map(([k, v]) => k + "=" + v).join(" ").slice(0, 160);
}
function show(s) {
  $("journal").textContent = s.journal + (s.log ? "  (log " + s.log + ")" : "");
  $("state").textContent = s.state; $("state").className = "state " + s.state;
  $("equity").textContent = num(s.equity, 2); $("equity_start").textContent = num(s.equity_start, 2);
  $("open_orders").textContent = s.open_orders;
  $("trips").textContent = Object.entries(s.trips).map(([t, f]) => "trip " + t + ": " + f).join("; ");
  rows("positions", s.positions, (p) => [p.symbol, p.side, p.qty, num(p.entry, 4), num(p.mark, 4),
    num(p.liquidation, 4), p.distance === null ? "-" : (100 * p.distance).toFixed(2) + "%",
    (p.stop === null ? "-" : num(p.stop, 4)) + (p.stop_held ? "" : " (not on the exchange)"), num(p.pnl, 2)]);
  const pct = (v, d) => v === null ? "-" : (100 * v).toFixed(d) + "%";
  rows("market_risk", Object.entries(s.market_risk), ([symbol, f]) => [symbol, pct(f.vol_annual, 1),
    pct(f.funding_annual, 1), num(f.funding_z, 2), pct(f.basis, 3), num(f.vol_ratio, 2), pct(f.oi_change, 1)]);
  rows("orders", s.orders, (o) => [o.symbol, o.side, o.type, o.qty, o.price === null ? "market" : o.price,
    o.filled, o.status]);
  rows("feeds", Object.entries(s.feed_ages), ([name, age]) =>
    [name, (age === null ? "-" : age.toFixed(2) + "s") + (s.feeds_down.includes(name) ? " (down: REST)" : "")]);
  const st = s.stats;
  $("counts").textContent = "intents " + st.intents + ", accepted " + st.accepted + ", sent " + st.sent +
    ", fills " + st.fills + ", cancels " + st.cancels + "; rejected: " +
    (Object.entries(s.rejected).map(([c, n]) => c + " " + n).join(", ") || "none");
  rows("recent", s.recent.slice().reverse(), (e) => [new Date(e.time * 1000).toISOString().slice(11, 19),
    e.kind, e.symbol || "", what(e)]);
  $("updated").textContent = new Date(s.time * 1000).toISOString().slice(11, 19) + " UTC";
}
async function poll() {
  try {
    const answer = await fetch("api/status", {cache: "no-store"});
    show(await answer.json()); $("error").textContent = "";
  } catch (e) { $("error").textContent = "the bot does not answer"; }
}
async function control(action) {
  const answer = await fetch("api/" + action, {method: "POST",
    headers: {"Authorization": "Bearer " + $("token").value}});
  const body = await answer.json();
  $("answer").textContent = answer.ok ? action + ": state " + body.state : "refused: " + body.error;
  poll();
}
$("halt").onclick = () => control("halt"); $("resume").onclick = () => control("resume");
poll(); setInterval(poll, 1000);
</script></body></html>
"""
