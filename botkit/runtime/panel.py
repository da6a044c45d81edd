"""What `botkit run` shows: a live status panel while the bot runs, and a summary at the end."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table

from botkit.margin import plain
from botkit.runtime.bot import Summary
from botkit.runtime.events import headline

RECENT_SHOWN = 8  # recent events in the panel


def _pct(value: float | None, places: int = 1) -> str:
    return "-" if value is None else f"{value:.{places}%}"


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def _n(value: Decimal | None, places: int = 2) -> str:
    return "-" if value is None else f"{value:,.{places}f}"


def status_panel(status: dict[str, Any], elapsed: float) -> Group:
    stats = status["stats"]
    head = Table.grid(padding=(0, 2))
    head.add_row(
        f"[bold]state[/] {status['state'].value}",
        f"[bold]equity[/] {_n(status['equity'])} USDT (start {_n(status['equity_start'])})",
        f"[bold]open orders[/] {status['open_orders']}",
        f"[bold]elapsed[/] {elapsed:.0f}s",
    )
    positions = Table("symbol", "side", "qty", "entry", "mark", "liquidation", "distance", "stop", "uPnL",
                      title="positions")  # fmt: skip
    for p in status["positions"]:
        distance = "-" if p["distance"] is None else f"{p['distance']:.2%}"
        stop = _n(p["stop"]) + ("" if p["stop_held"] else " [red](not on the exchange)[/]")
        positions.add_row(p["symbol"], p["side"], plain(p["qty"]), _n(p["entry"]), _n(p["mark"]),
                          _n(p["liquidation"]), distance, stop, _n(p["pnl"]))  # fmt: skip
    feeds = Table("stream", "age", title="feeds")
    for name, age in status["feed_ages"].items():
        down = " (down: REST)" if name in status["feeds_down"] else ""
        feeds.add_row(name, ("-" if age is None else f"{age:.2f}s") + down)
    warning = Table("symbol", "volatility/yr", "funding/yr", "funding z", "basis", "vol ratio", "OI change",
                    title="early warning")  # fmt: skip
    for symbol, f in status["market_risk"].items():
        warning.add_row(symbol, _pct(f["vol_annual"]), _pct(f["funding_annual"]), _f(f["funding_z"]),
                        _pct(f["basis"], 3), _f(f["vol_ratio"]), _pct(f["oi_change"]))  # fmt: skip
    orders = Table("intents", "accepted", "sent", "fills", "cancels", "rejected by reason", title="orders")
    rejected = ", ".join(f"{code} {n}" for code, n in stats.rejected.most_common()) or "-"
    orders.add_row(str(stats.intents), str(stats.accepted), str(stats.sent), str(stats.fills), str(stats.cancels),
                   rejected)  # fmt: skip
    recent = Table("time", "event", title="recent events", show_header=False)
    for event in status["recent"][-RECENT_SHOWN:]:
        recent.add_row(datetime.fromtimestamp(event["time"], UTC).strftime("%H:%M:%S"), escape(describe(event)))
    parts: list[Any] = [head, positions, warning, feeds, orders, recent]
    if status["trips"]:
        parts.append("[bold red]trips[/] " + escape("; ".join(f"{t}: {f}" for t, f in status["trips"].items())))
    parts.append(f"[dim]journal {escape(status['journal'])}"
                 + (f" · log {escape(status['log'])}" if status["log"] else "") + "[/]")  # fmt: skip
    return Group(*parts)


def describe(event: dict[str, Any]) -> str:
    """One line for a recent event: its headline if it has one, else its kind and scalar fields."""
    said = headline(event["kind"], event["symbol"], event["data"])
    if said is not None:
        return said[1]
    fields = " ".join(f"{k}={plain(v) if isinstance(v, Decimal) else v}" for k, v in event["data"].items()
                      if v is not None and not isinstance(v, dict | list))  # fmt: skip
    return f"{event['kind']}{' ' + event['symbol'] if event['symbol'] else ''} {fields}"[:160]


def status_line(status: dict[str, Any], elapsed: float) -> str:
    stats = status["stats"]
    positions = " ".join(f"{p['symbol']}:{p['side']}:{plain(p['qty'])}" for p in status["positions"]) or "flat"
    rejected = sum(stats.rejected.values())
    return (f"[{elapsed:5.0f}s] state={status['state'].value} equity={_n(status['equity'])} positions={positions} "
            f"open_orders={status['open_orders']} intents={stats.intents} accepted={stats.accepted} "
            f"rejected={rejected} fills={stats.fills}")  # fmt: skip


def summary_rows(summary: Summary) -> list[tuple[str, str]]:
    stats = summary.stats
    change = None
    if summary.equity_start is not None and summary.equity_end is not None:
        change = summary.equity_end - summary.equity_start
    rows = [
        ("ended", summary.reason + (f" ({summary.crashed})" if summary.crashed else "")),
        ("ran", f"{summary.seconds:.1f}s"),
        ("trading state", "never started" if summary.reason == "start-up failed" else summary.state.value),
        ("equity", f"{_n(summary.equity_start)} -> {_n(summary.equity_end)} USDT (change {_n(change)})"),
        (
            "positions",
            ", ".join(f"{s} {p.side.value} {plain(p.qty)} @ {_n(p.entry)}" for s, p in summary.positions.items())
            or "flat",
        ),
        ("open orders left", str(summary.open_orders)),
        ("intents", f"{stats.intents} ({stats.accepted} accepted)"),
        ("rejected by the gate", ", ".join(f"{c} {n}" for c, n in stats.rejected.most_common()) or "none"),
        ("orders sent", f"{stats.sent} ({stats.venue_rejected} refused by the venue)"),
        ("fills / cancels", f"{stats.fills} / {stats.cancels}"),
        ("kill-switch trips", str(stats.trips)),
        ("strategy errors", str(stats.strategy_errors)),
        ("guardrails acted", _guardrails(summary)),
        ("journal", f"{summary.journal} (botkit report {summary.journal} explains every decision)"),
    ]
    return rows


def _guardrails(summary: Summary) -> str:
    if not summary.guardrails:
        return "none: nothing in this run called for them"
    return "\n".join(summary.guardrails)


def summary_table(summary: Summary) -> Table:
    table = Table(title="botkit run: summary", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in summary_rows(summary):
        table.add_row(name, escape(value))
    return table


def summary_lines(summary: Summary) -> str:
    """The summary for a pipe or a file: `name: value` lines, never wrapped."""
    lines = ["botkit run: summary"]
    for name, value in summary_rows(summary):
        first, *more = value.split("\n")
        lines.append(f"{name}: {first}")
        lines += [f"    {line}" for line in more]
    return "\n".join(lines)
