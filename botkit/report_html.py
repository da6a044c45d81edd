"""`botkit report --html FILE` and `botkit backtest --html FILE`: one self-contained page each that works
offline (the charting library is inlined, nothing is fetched). The charts are Plotly's: zoom, hover and
one time axis shared by every chart of a page, so zooming into a crash zooms every panel to it.

The report's charts, per symbol: price (mid, mark, the exchange-held stop, fills), mark against index
(bps), the early warning's figures where the journal has them (volatility and funding annualised; the
funding z-score and the volatility's ratio to its slower average; the open interest), liquidation
distance (% of mark, only while a position was held); then equity. A vertical marker at every
kill-switch trip, state change and liquidation (hover the × at its top for the figures). Floats
only for drawing: the figures themselves are in the tables (rounded to the market's precision) and exact
in --json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from botkit.report import iso, places, shown

ROW_HEIGHT = 230  # pixels per chart
MAX_TABLE_ROWS = 500
ORDERS_SHOWN = 50  # more orders than this (a grid, a market maker): the table starts folded
COLORS = {"mid": "#1f77b4", "mark": "#ff7f0e", "index": "#2ca02c", "stop": "#8c1c13", "equity": "#9467bd",
          "liq_distance": "#d62728", "divergence": "#ff7f0e", "drawdown": "#d62728", "buy": "#2ca02c",
          "sell": "#d62728", "volatility": "#17becf", "funding": "#bcbd22"}  # fmt: skip
MARKERS = {"killswitch.tripped": ("trip", "#d62728"), "killswitch.state": ("state", "#ff9900"),
           "liquidation": ("liquidation", "#000000")}  # fmt: skip

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:6px 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
td.n{text-align:right}th{background:#f4f4f4}.muted{color:#777}summary{cursor:pointer;margin:6px 0}
"""


@dataclass
class Line:
    name: str
    values: list[Any]  # one per time; None: no value then
    color: str
    dash: str | None = None


@dataclass
class Panel:
    """One chart of the page: its lines share the page's time axis."""

    key: str  # the chart's id on the page (data-chart)
    title: str
    unit: str  # the y axis's title
    lines: list[Line]
    points: list[dict[str, Any]] = field(default_factory=list)  # fills: time_ms, price, side, qty


def render_html(report: dict[str, Any]) -> str:
    series = report["series"]
    times, precision = series["time"], report.get("precision", {})
    panels: list[Panel] = []
    for symbol, row in series["symbols"].items():
        price = Panel(f"price-{symbol}", f"{symbol}: price", "price (USDT)",
                      [Line("mid", row.get("mid", []), COLORS["mid"]),
                       Line("mark", row.get("mark", []), COLORS["mark"]),
                       Line("stop on the exchange", row.get("stop", []), COLORS["stop"], "dash")],
                      [f for f in report["execution"]["fills"] if f["symbol"] == symbol])  # fmt: skip
        # divergence in basis points: (mark − index) / index × 10 000
        bps = [(float(m) - float(i)) / float(i) * 10_000 if m is not None and i else None
               for m, i in zip(row.get("mark", []), row.get("index", []), strict=False)]  # fmt: skip
        drift = [float(x) * 10_000 if x is not None else None for x in row.get("basis_drift", [])]
        basis = [Line("mark − index", bps, COLORS["divergence"])]
        if any(x is not None for x in drift):  # the early warning's basis drift, in the same unit
            basis.append(Line("its drift (now − a drift window ago)", drift, COLORS["funding"], "dot"))
        panels += [price, Panel(f"mark-index-{symbol}", f"{symbol}: mark against index", "mark − index (bps)",
                                basis)]  # fmt: skip
        panels += _early_warning(symbol, row)
        distance = [float(x) * 100 if x is not None else None for x in row.get("liq_distance", [])]
        if any(d is not None for d in distance):  # no position, no chart
            panels.append(Panel(f"liq-{symbol}", f"{symbol}: distance to liquidation", "% of the mark",
                                [Line("liquidation distance", distance, COLORS["liq_distance"])]))  # fmt: skip
    panels.append(Panel("equity", "account equity", "equity (USDT)",
                        [Line("equity", series["equity"], COLORS["equity"])]))  # fmt: skip
    parts = [_head("botkit report"), f"<h1>botkit report</h1><p class='muted'>{escape(report['journal'])}</p>"]
    parts.append(_table(["session", "mode", "strategy", "started", "stopped", "reason", "crashed"],
                        [[s["session"], s.get("mode"), s.get("strategy"), s["started"], s.get("stopped"),
                          s.get("reason"), s.get("crashed")] for s in report["sessions"]]))  # fmt: skip
    parts.append("<h2>Timeline: trading state, triggers, actions</h2>")
    parts.append(_table(["time", "what", "trigger", "state", "figures"],
                        [[t["time"], t["kind"], t.get("trigger"), t.get("state"), t.get("detail")]
                         for t in report["timeline"]]) or "<p>No trip, halt or error.</p>")  # fmt: skip
    parts.append("<h2>Charts</h2>")
    parts.append(figure("charts", times, panels, _markers(report["timeline"])) if times else "<p>No snapshot.</p>")
    data = report["data"]
    parts.append("<h2>Data: feed gaps</h2>")
    parts.append(_table(["stream", "from", "to", "seconds", "fallback"],
                        [[g["stream"], g["from"], g["to"], g["seconds"], g["fallback"]] for g in data["feed_gaps"]])
                 or "<p>No feed gap.</p>")  # fmt: skip
    parts.append("<h2>Pricing</h2>")
    parts.append(_table(["symbol", "first mark", "last mark", "low", "high", "largest mark/index divergence (bps)"],
                        [[s, *(shown(p[k], places(precision, s)) for k in ("first_mark", "last_mark", "low_mark",
                                                                               "high_mark")), p["max_divergence_bps"]]
                         for s, p in report["pricing"].items()]))  # fmt: skip
    parts.append(_execution(report["execution"], precision))
    parts.append(_trades(report.get("trades", []), precision))
    protection = report["protection"]
    actions = ", ".join(f"{a} {n}" for a, n in sorted(protection["stop_actions"].items())) or "no stop placed"
    parts.append(f"<h2>Protection: the exchange-held stops</h2><p>{escape(actions)}.</p>")
    parts.append(_table(["symbol", "times without a stop", "seconds in all", "longest (s)"],
                        [[s, t["stretches"], f"{t['seconds']:.3f}", f"{t['longest']:.3f}"]
                         for s, t in protection["per_symbol"].items()])
                 or "<p>No position went without a stop.</p>")  # fmt: skip
    post = report["post_trade"]
    parts.append(f"<h2>Post-trade</h2><p>Equity {shown(post['equity_start'], 2)} &rarr; {shown(post['equity_end'], 2)} "
                 f"USDT (PnL {shown(post['pnl'], 2)}, fees and funding included). Funding paid "
                 f"{shown(post['funding_paid'], 4)}, received {shown(post['funding_received'], 4)}.</p>")  # fmt: skip
    closest = post.get("closest_liquidation_distance", {})
    parts.append(_table(["symbol", "closest the mark came to liquidation"],
                        [[s, f"{float(d) * 100:.2f} % of the mark"] for s, d in closest.items()])
                 or "<p>No position, so no liquidation price.</p>")  # fmt: skip
    parts.append(_table(["time", "symbol", "amount"],
                        [[f["time"], f["symbol"], shown(f["amount"], 4)] for f in post["funding_payments"]]))
    parts.append("</body></html>")
    return "\n".join(parts)


def render_backtest_html(results: dict[str, Any]) -> str:
    """The results (Results.to_json()) on one page: the figures, equity and drawdown on one time axis, the
    trades and why each closed, and what the run assumed."""
    curve = results["curve"]
    times = [int(t) for t, _, _ in curve]
    figures = [
        ["equity", f"{results['equity_start']} -> {results['equity_end']} USDT"],
        ["total return", f"{results['total_return'] * 100:.2f} %"],
        ["max drawdown", f"{results['max_drawdown'] * 100:.2f} %"],
        ["Sharpe / Sortino (daily)", f"{results['sharpe']} / {results['sortino']}"],
        ["trades, win rate, profit factor",
         f"{len(results['trades'])}, {results['win_rate']}, {results['profit_factor']}"],
        ["exposure", f"{results['exposure'] * 100:.1f} %"],
        ["fees, funding paid, received",
         f"{results['fees']}, {results['funding_paid']}, {results['funding_received']}"],
        ["liquidations", results["liquidations"]],
        ["closest to liquidation", results["closest"]],
        ["rejections", results["rejections"]],
    ]  # fmt: skip
    panels = [Panel("equity", "equity", "equity (USDT)", [Line("equity", [e for _, e, _ in curve], COLORS["equity"])]),
              Panel("drawdown", "drawdown from the peak", "drawdown (%)",
                    [Line("drawdown", [d * 100 for _, _, d in curve], COLORS["drawdown"])])]  # fmt: skip
    title = f"backtest of {results['strategy']} on {', '.join(results['symbols'])}, {results['interval']} bars"
    parts = [
        _head("botkit backtest"), f"<h1>{escape(title)}</h1><p class='muted'>journal {escape(results['journal'])}</p>",
        _table(["figure", "value"], figures),
        "<h2>Equity and drawdown</h2>",
        figure("charts", times, panels, []) if times else "<p>No equity curve.</p>",
        "<h2>Trades</h2>",
        _table(["symbol", "side", "entry", "exit", "qty", "entry price", "exit price", "fees", "funding", "PnL",
                "closed by"],
               [[t["symbol"], t["side"], iso(t["entry_ms"]), iso(t["exit_ms"]), t["qty"], t["entry_price"],
                 t["exit_price"], t["fees"], t["funding"], t["pnl"], t["closed_by"]] for t in results["trades"]]),
        "<h2>What the run assumed</h2><ul>",
        *(f"<li>{escape(note)}</li>" for note in results["notes"]),
        "</ul></body></html>",
    ]  # fmt: skip
    return "".join(parts)


# ------------------------------------------------------------------------------------------ charts


def _early_warning(symbol: str, row: dict[str, list[Any]]) -> list[Panel]:
    """The market-risk monitor's figures (botkit.guards.market_risk), where the journal has them: volatility
    and funding annualised, and the crowding trigger's two ratios (funding z-score, volatility's ratio)."""
    def percent(name: str) -> list[float | None]:
        return [float(x) * 100 if x is not None else None for x in row.get(name, [])]

    def plain(name: str) -> list[float | None]:
        return [float(x) if x is not None else None for x in row.get(name, [])]

    yearly, crowding = [percent("vol_annual"), percent("funding_annual")], [plain("funding_z"), plain("vol_ratio")]
    interest = plain("open_interest")
    panels = []
    if any(x is not None for line in yearly for x in line):
        panels.append(Panel(f"risk-{symbol}", f"{symbol}: volatility and funding, annualised", "% a year",
                            [Line("realized volatility", yearly[0], COLORS["volatility"]),
                             Line("funding", yearly[1], COLORS["funding"])]))  # fmt: skip
    if any(x is not None for line in crowding for x in line):
        panels.append(Panel(f"crowding-{symbol}", f"{symbol}: crowding (the trigger's figures; basis above)",
                            "z-score, ratio", [Line("funding z-score", crowding[0], COLORS["funding"]),
                                               Line("volatility / its slower average", crowding[1],
                                                    COLORS["volatility"])]))  # fmt: skip
    if any(x is not None for x in interest):
        panels.append(Panel(f"oi-{symbol}", f"{symbol}: open interest", "contracts (base units)",
                            [Line("open interest", interest, COLORS["funding"])]))  # fmt: skip
    return panels


def figure(div_id: str, times: list[int], panels: list[Panel], markers: list[dict[str, Any]]) -> str:
    """The panels stacked on one shared time axis (zoom one, all follow), as a <div> drawing itself with the
    page's inlined Plotly."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    stamps = [_stamp(t) for t in times]
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.35 / len(panels) ** 0.5 / 4,
                        subplot_titles=[p.title for p in panels])  # fmt: skip
    legend_seen: set[str] = set()
    for n, panel in enumerate(panels, 1):
        for line in panel.lines:
            xs = [s for s, v in zip(stamps, line.values, strict=False) if v is not None]
            ys = [float(v) for v in line.values if v is not None]
            if not ys:
                continue  # a line never drawn gets no legend entry
            fig.add_trace(go.Scatter(x=xs, y=ys, name=line.name, mode="lines" if len(ys) > 1 else "markers",
                                     line={"color": line.color, "dash": line.dash, "width": 1.5},
                                     legendgroup=line.name, showlegend=line.name not in legend_seen,
                                     hovertemplate=f"%{{y}}<extra>{escape(line.name)}</extra>"),
                          row=n, col=1)  # fmt: skip
            legend_seen.add(line.name)
        for side in ("buy", "sell"):
            fills = [f for f in panel.points if f.get("side") == side and f.get("price") and f.get("time_ms")]
            if fills:
                fig.add_trace(go.Scatter(
                    x=[_stamp(f["time_ms"]) for f in fills], y=[float(f["price"]) for f in fills], mode="markers",
                    name=f"{side} fill", legendgroup=f"{side} fill", showlegend=f"{side} fill" not in legend_seen,
                    marker={"color": COLORS[side], "size": 8,
                            "symbol": "triangle-up" if side == "buy" else "triangle-down"},
                    text=[f"{side} {f['qty']} @ {f['price']}" for f in fills], hovertemplate="%{text}<extra></extra>",
                ), row=n, col=1)  # fmt: skip
                legend_seen.add(f"{side} fill")
        fig.update_yaxes(title_text=panel.unit, row=n, col=1, automargin=True)
    top = _top(fig)
    for m in markers:
        kind, color = MARKERS[m["kind"]]
        at = _stamp(m["time_ms"])
        fig.add_vline(x=at, line={"color": color, "width": 1.5, "dash": "dot"})  # across every chart
        label = m.get("state") if kind == "state" else (m.get("trigger") or m["kind"])
        tip = f"{m['time']} {m['kind']} {m.get('trigger') or ''} {m.get('state') or ''}<br>{m.get('detail') or ''}"
        fig.add_trace(go.Scatter(
            x=[at], y=[top], mode="markers+text", text=[str(label)],  # a state change's label below its trip's
            textposition="bottom right" if kind == "state" else "top right",
            marker={"color": color, "symbol": "x", "size": 9},
            name=kind, legendgroup=kind, showlegend=kind not in legend_seen, hovertext=[escape(tip)],
            hoverinfo="text", cliponaxis=False,
        ), row=1, col=1)  # fmt: skip
        legend_seen.add(kind)
    fig.update_xaxes(title_text="time (UTC)", row=len(panels), col=1)
    fig.update_xaxes(showgrid=True, gridcolor="#eee")
    fig.update_yaxes(showgrid=True, gridcolor="#eee", zeroline=False)
    fig.update_layout(height=ROW_HEIGHT * len(panels) + 100, margin={"l": 70, "r": 20, "t": 70, "b": 50},
                      hovermode="x unified", plot_bgcolor="#fff",
                      legend={"orientation": "h", "y": 1.0 + 45 / (ROW_HEIGHT * len(panels)), "yanchor": "bottom"})
    html: str = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                            config={"displaylogo": False, "responsive": True})  # fmt: skip
    keys = " ".join(p.key for p in panels)
    return f"<div class='charts' data-charts='{escape(keys)}'>{html}</div>"


def _top(fig: Any) -> float:
    """The highest value drawn in the first chart (where the markers' × sit)."""
    tops = [max(trace.y) for trace in fig.data if trace.yaxis in (None, "y") and trace.y]
    return max(tops) if tops else 1.0


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _head(title: str) -> str:
    from plotly.offline import get_plotlyjs

    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>{CSS}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>")  # fmt: skip


def _markers(timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trips are drawn last, over the state change they usually cause at the same moment."""
    return sorted((t for t in timeline if t["kind"] in MARKERS), key=lambda t: t["kind"] == "killswitch.tripped")


# ------------------------------------------------------------------------------------------ tables


def _execution(ex: dict[str, Any], precision: dict[str, Any]) -> str:
    parts = [f"<h2>Execution</h2><p>{ex['intents']} intents, {ex['accepted']} accepted, {ex['rejected_total']} "
             f"rejected by the gate; {len(ex['fills'])} fills.</p>",
             _table(["reason", "count", "examples"],
                    [[r, g["count"], "; ".join(g["examples"])] for r, g in ex["rejected"].items()])]  # fmt: skip
    orders = ex["orders"]
    table = _table(["sent", "client id", "symbol", "side", "type", "qty", "price", "status", "filled", "average",
                    "tag", "source"],
                   [[o.get("sent"), o["client_id"], o.get("symbol"), o.get("side"), o.get("type"),
                     _num(o.get("qty"), places(precision, o.get("symbol") or "", "qty")),
                     _num(o.get("price"), places(precision, o.get("symbol") or "")), o.get("status"),
                     _num(o.get("filled"), places(precision, o.get("symbol") or "", "qty")),
                     _num(o.get("average"), places(precision, o.get("symbol") or "")), o.get("tag"), o.get("source")]
                    for o in orders])  # fmt: skip
    if len(orders) > ORDERS_SHOWN:  # a grid's hundreds of orders: counted, the table folded
        counts: dict[str, int] = {}
        for o in orders:
            counts[str(o.get("status"))] = counts.get(str(o.get("status")), 0) + 1
        summary = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
        table = f"<details><summary>{len(orders)} orders ({escape(summary)}): show the table</summary>{table}</details>"
    parts.append(table)
    if ex["venue_refusals"]:
        parts.append("<h3>Refused or failed at the venue</h3>")
        parts.append(_table(["time", "client id", "final", "error"],
                            [[r["time"], r["client_id"], r["final"], r["error"]] for r in ex["venue_refusals"]]))
    return "".join(parts)


def _trades(trades: list[dict[str, Any]], precision: dict[str, Any]) -> str:
    if not trades:
        return "<h2>Trades</h2><p>No trade.</p>"
    rows = []
    for t in trades:
        price, qty = places(precision, t["symbol"]), places(precision, t["symbol"], "qty")
        rows.append([t["symbol"], t["side"], t["entry"], t["exit"] or "open", _num(t["qty"], qty),
                     _num(t["entry_price"], price), _num(t["exit_price"], price), _num(t["funding"], 4),
                     _num(t["pnl"], 2), t["closed_by"]])  # fmt: skip
    return ("<h2>Trades</h2><p class='muted'>Round trips, flat to flat. PnL is the price move plus funding, before "
            "fees (the journal's fills carry no fee; the post-trade equity change includes them).</p>"
            + _table(["symbol", "side", "entry", "exit", "qty", "entry price", "exit price", "funding", "PnL",
                      "closed by"], rows))  # fmt: skip


def _num(value: Any, places: int) -> str | None:
    return None if value is None else shown(value, places)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return ""
    cut = len(rows) > MAX_TABLE_ROWS
    body = "".join(
        "<tr>" + "".join(f"<td>{escape('' if c is None else str(c))}</td>" for c in row) + "</tr>"
        for row in rows[:MAX_TABLE_ROWS]
    )
    note = f"<p class='muted'>first {MAX_TABLE_ROWS} of {len(rows)} rows (all of them are in --json)</p>" if cut else ""
    return "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + f"</tr>{body}</table>{note}"
