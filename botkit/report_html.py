"""`botkit report --html FILE`: one self-contained page (inline CSS and SVG, no script, nothing fetched)
that a person can open offline. Charts: price (mid, mark, fills), mark vs index, equity and each
position's liquidation distance, with a vertical marker at every kill-switch trip, state change and
liquidation (hover one for its figures)."""

from __future__ import annotations

from html import escape
from typing import Any

from botkit.report import iso

WIDTH, HEIGHT, PAD_L, PAD_R, PAD_T, PAD_B = 960, 220, 70, 20, 22, 26
COLORS = {"mid": "#1f77b4", "mark": "#ff7f0e", "index": "#2ca02c", "equity": "#9467bd", "liq_distance": "#d62728",
          "stop": "#8c1c13", "drawdown": "#d62728"}  # fmt: skip
MARKERS = {
    "killswitch.tripped": ("trip", "#d62728"),
    "killswitch.state": ("state", "#ff9900"),
    "liquidation": ("liquidation", "#000000"),
}
MAX_TABLE_ROWS = 500
AXIS_TICKS = 4  # gridlines and time labels per axis (and the ends)

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:6px 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
th{background:#f4f4f4}.chart{display:block;margin:8px 0;background:#fff;border:1px solid #eee}
.legend span{margin-right:14px;font-size:12px}.muted{color:#777}
"""


def render_html(report: dict[str, Any]) -> str:
    series, markers = report["series"], _markers(report["timeline"])
    times = series["time"]
    span = _span(times, [m["time_ms"] for m in markers])
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>botkit report</title><style>{CSS}</style>"
        f"</head><body><h1>botkit report</h1><p class='muted'>{escape(report['journal'])}</p>"
    ]
    parts.append(
        _table(
            ["session", "mode", "strategy", "started", "stopped", "reason", "crashed"],
            [
                [
                    s["session"],
                    s.get("mode"),
                    s.get("strategy"),
                    s["started"],
                    s.get("stopped"),
                    s.get("reason"),
                    s.get("crashed"),
                ]
                for s in report["sessions"]
            ],
        )
    )
    parts.append("<h2>Timeline: trading state, triggers, actions</h2>")
    parts.append(
        _table(
            ["time", "what", "trigger", "state", "figures"],
            [[t["time"], t["kind"], t.get("trigger"), t.get("state"), t.get("detail")] for t in report["timeline"]],
        )
        or "<p>No trip, halt or error.</p>"
    )
    legend = [(name, color) for name, color in COLORS.items()] + [
        (k.split(".")[-1], c) for k, (_, c) in MARKERS.items()
    ]
    parts.append(
        "<h2>Charts</h2><p class='legend'>"
        + "".join(f"<span style='color:{color}'>&#9474; {name}</span>" for name, color in legend)
        + "</p>"
    )
    for symbol, row in series["symbols"].items():
        fills = [f for f in report["execution"]["fills"] if f["symbol"] == symbol]
        parts.append(
            _chart(
                f"price-{symbol}",
                f"{symbol}: price (mid, mark, the exchange-held stop dashed; dots are fills)",
                times,
                {"mid": row.get("mid", []), "mark": row.get("mark", []), "stop": row.get("stop", [])},
                span,
                markers,
                fills,
            )
        )
        parts.append(
            _chart(
                f"mark-index-{symbol}",
                f"{symbol}: mark vs index",
                times,
                {"mark": row.get("mark", []), "index": row.get("index", [])},
                span,
                markers,
            )
        )
        distance = [str(float(x) * 100) if x is not None else None for x in row.get("liq_distance", [])]
        parts.append(
            _chart(
                f"liq-{symbol}",
                f"{symbol}: liquidation distance, % of mark",
                times,
                {"liq_distance": distance},
                span,
                markers,
            )
        )
    parts.append(_chart("equity", "equity (USDT)", times, {"equity": series["equity"]}, span, markers))
    data = report["data"]
    parts.append("<h2>Data: feed gaps</h2>")
    parts.append(
        _table(
            ["stream", "from", "to", "seconds", "fallback"],
            [[g["stream"], g["from"], g["to"], g["seconds"], g["fallback"]] for g in data["feed_gaps"]],
        )
        or "<p>No feed gap.</p>"
    )
    parts.append("<h2>Pricing</h2>")
    parts.append(
        _table(
            ["symbol", "first mark", "last mark", "low", "high", "max mark/index divergence (bps)"],
            [
                [s, p["first_mark"], p["last_mark"], p["low_mark"], p["high_mark"], p["max_divergence_bps"]]
                for s, p in report["pricing"].items()
            ],
        )
    )
    ex = report["execution"]
    parts.append(
        f"<h2>Execution</h2><p>{ex['intents']} intents, {ex['accepted']} accepted, "
        f"{ex['rejected_total']} rejected by the gate; {len(ex['fills'])} fills.</p>"
    )
    parts.append(
        _table(
            ["reason", "count", "examples"],
            [[r, g["count"], "; ".join(g["examples"])] for r, g in ex["rejected"].items()],
        )
    )
    parts.append(
        _table(
            [
                "sent",
                "client id",
                "symbol",
                "side",
                "type",
                "qty",
                "price",
                "status",
                "filled",
                "average",
                "tag",
                "source",
            ],
            [
                [
                    o.get("sent"),
                    o["client_id"],
                    o.get("symbol"),
                    o.get("side"),
                    o.get("type"),
                    o.get("qty"),
                    o.get("price"),
                    o.get("status"),
                    o.get("filled"),
                    o.get("average"),
                    o.get("tag"),
                    o.get("source"),
                ]
                for o in ex["orders"]
            ],
        )
    )
    if ex["venue_refusals"]:
        parts.append("<h3>Refused or failed at the venue</h3>")
        parts.append(
            _table(
                ["time", "client id", "final", "error"],
                [[r["time"], r["client_id"], r["final"], r["error"]] for r in ex["venue_refusals"]],
            )
        )
    protection = report["protection"]
    actions = ", ".join(f"{a} {n}" for a, n in sorted(protection["stop_actions"].items())) or "no stop placed"
    parts.append(f"<h2>Protection: the exchange-held stops</h2><p>{escape(actions)}.</p>")
    parts.append(
        _table(
            ["symbol", "times without a stop", "seconds in all", "longest (s)"],
            [
                [s, t["stretches"], f"{t['seconds']:.3f}", f"{t['longest']:.3f}"]
                for s, t in protection["per_symbol"].items()
            ],
        )
        or "<p>No position went without a stop.</p>"
    )
    post = report["post_trade"]
    parts.append(
        f"<h2>Post-trade</h2><p>Equity {post['equity_start']} &rarr; {post['equity_end']} "
        f"(PnL {post['pnl']}). Funding paid {post['funding_paid']}, received {post['funding_received']}.</p>"
    )
    parts.append(
        _table(["time", "symbol", "amount"], [[f["time"], f["symbol"], f["amount"]] for f in post["funding_payments"]])
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def _markers(timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trips are drawn last, over the state change they usually cause at the same moment."""
    return sorted((t for t in timeline if t["kind"] in MARKERS), key=lambda t: t["kind"] == "killswitch.tripped")


def _span(*groups: list[int]) -> tuple[int, int]:
    values = [v for group in groups for v in group]
    if not values:
        return 0, 1
    low, high = min(values), max(values)
    return low, high if high > low else low + 1


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


def _chart(
    chart_id: str,
    title: str,
    times: list[int],
    lines: dict[str, list[Any]],
    span: tuple[int, int],
    markers: list[dict[str, Any]],
    fills: list[dict[str, Any]] | None = None,
) -> str:
    """One SVG line chart (floats only for drawing: the figures themselves are in the tables and --json)."""
    points = {
        name: [(t, float(v)) for t, v in zip(times, values, strict=False) if v is not None]
        for name, values in lines.items()
    }
    ys = [y for pts in points.values() for _, y in pts] + [float(f["price"]) for f in fills or [] if f.get("price")]
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B
    t0, t1 = span
    low, high = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if high == low:
        low, high = low - 1, high + 1

    def x(t: int) -> float:
        return PAD_L + (t - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return PAD_T + (high - v) / (high - low) * plot_h

    svg = [
        f"<svg class='chart' id='{escape(chart_id)}' data-title='{escape(title)}' width='{WIDTH}' height='{HEIGHT}' "
        f"viewBox='0 0 {WIDTH} {HEIGHT}'>",
        f"<text x='{PAD_L}' y='14' font-size='12' font-weight='bold'>{escape(title)}</text>",
        f"<rect x='{PAD_L}' y='{PAD_T}' width='{plot_w}' height='{plot_h}' fill='none' stroke='#ccc'/>",
    ]
    for n in range(AXIS_TICKS + 1):  # the axes: value gridlines on the left, times along the bottom
        value, at = low + (high - low) * n / AXIS_TICKS, t0 + (t1 - t0) * n // AXIS_TICKS
        anchor = "start" if n == 0 else "end" if n == AXIS_TICKS else "middle"
        svg.append(
            f"<line class='grid' x1='{PAD_L}' x2='{PAD_L + plot_w}' y1='{y(value):.1f}' y2='{y(value):.1f}' "
            f"stroke='#eee'/><text class='y-tick' x='{PAD_L - 4}' y='{y(value) + 3:.1f}' font-size='10' "
            f"text-anchor='end'>{value:.6g}</text>"
            f"<line x1='{x(at):.1f}' x2='{x(at):.1f}' y1='{PAD_T + plot_h}' y2='{PAD_T + plot_h + 4}' stroke='#999'/>"
            f"<text class='x-tick' x='{x(at):.1f}' y='{HEIGHT - 8}' font-size='10' text-anchor='{anchor}'>"
            f"{escape((iso(at) or '')[:16].replace('T', ' '))}</text>"
        )
    for name, pts in points.items():
        if len(pts) >= 2:
            path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
            dash = " stroke-dasharray='5 3'" if name in ("index", "stop") else ""
            svg.append(
                f"<polyline class='series' data-series='{name}' points='{path}' fill='none' "
                f"stroke='{COLORS.get(name, '#333')}' stroke-width='1.5'{dash}/>"
            )
        elif pts:
            t, v = pts[0]
            svg.append(
                f"<circle class='series' data-series='{name}' cx='{x(t):.1f}' cy='{y(v):.1f}' r='2' "
                f"fill='{COLORS.get(name, '#333')}'/>"
            )
    for f in fills or []:
        if f.get("price") and f.get("time_ms") is not None:
            color = "#2ca02c" if f.get("side") == "buy" else "#d62728"
            tip = escape(f"{f['side']} {f['qty']} @ {f['price']} {f['time']}")
            svg.append(
                f"<circle class='fill' cx='{x(f['time_ms']):.1f}' cy='{y(float(f['price'])):.1f}' r='3.5' "
                f"fill='{color}'><title>{tip}</title></circle>"
            )
    for m in markers:
        kind, color = MARKERS[m["kind"]]
        label, label_y = (
            (m.get("state"), PAD_T + 22) if kind == "state" else (m.get("trigger") or m["kind"], PAD_T + 10)
        )
        tip = f"{m['time']} {m['kind']} {m.get('trigger') or ''} {m.get('state') or ''} {m.get('detail') or ''}"
        svg.append(
            f"<g class='marker {kind}' data-trigger='{escape(str(m.get('trigger')))}'>"
            f"<title>{escape(tip)}</title>"
            f"<line x1='{x(m['time_ms']):.1f}' x2='{x(m['time_ms']):.1f}' y1='{PAD_T}' y2='{PAD_T + plot_h}' "
            f"stroke='{color}' stroke-width='2' stroke-dasharray='4 2'/>"
            f"<text x='{x(m['time_ms']) + 3:.1f}' y='{label_y}' font-size='10' fill='{color}'>"
            f"{escape(str(label))}</text></g>"
        )
    svg.append("</svg>")
    return "".join(svg)


def render_backtest_html(results: dict[str, Any]) -> str:
    """`botkit backtest --html FILE`: the results (Results.to_json()) on one self-contained page: the figures,
    the equity and drawdown curves, the trades, and what the run assumed."""
    curve = results["curve"]
    times = [int(t) for t, _, _ in curve]
    span = _span(times)
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
    title = f"backtest of {results['strategy']} on {', '.join(results['symbols'])}, {results['interval']} bars"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>botkit backtest</title><style>{CSS}</style>"
        f"</head><body><h1>{escape(title)}</h1><p class='muted'>journal {escape(results['journal'])}</p>",
        _table(["figure", "value"], figures),
        "<h2>Equity and drawdown</h2>",
        _chart("equity", "equity (USDT)", times, {"equity": [e for _, e, _ in curve]}, span, []),
        _chart("drawdown", "drawdown (%)", times, {"drawdown": [d * 100 for _, _, d in curve]}, span, []),
        "<h2>Trades</h2>",
        _table(["side", "entry", "exit", "qty", "entry price", "exit price", "fees", "funding", "PnL", "closed by"],
               [[t["side"], iso(t["entry_ms"]), iso(t["exit_ms"]), t["qty"], t["entry_price"], t["exit_price"],
                 t["fees"], t["funding"], t["pnl"], t["closed_by"]] for t in results["trades"]]),
        "<h2>What the run assumed</h2><ul>",
        *(f"<li>{escape(note)}</li>" for note in results["notes"]),
        "</ul></body></html>",
    ]  # fmt: skip
    return "".join(parts)
