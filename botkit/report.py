"""`botkit report JOURNAL`: the post-incident view of a journal, walking the layers an incident is
troubleshot in: data (feed gaps, bad frames) → pricing (mark, index, divergence) → margin (equity,
liquidation distance) → execution (intents, verdicts, orders, fills) → protection (the exchange-held
stops: each one's life, and how long any position went without one) → post-trade (funding, PnL).

`build_report` turns the journal into plain data (what `--json` prints); `render_text` and
`botkit.report_html.render_html` present it. Nothing here writes to the journal.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from botkit.guards.market_risk import SHOWN
from botkit.runtime.journal import read_events

TIMELINE_KINDS = {"killswitch", "halt.action", "reconcile", "liquidation_guard", "rules", "strategy.error", "error"}


def iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds") if ms is not None else None


def _dec(value: Any) -> Decimal | None:
    return Decimal(str(value)) if value is not None else None


def build_report(path: Path) -> dict[str, Any]:
    """Everything the report shows, as JSON-ready data (Decimals as exact strings, times in ms and ISO)."""
    sessions: list[dict[str, Any]] = []
    timeline: list[dict[str, Any]] = []
    gaps: list[dict[str, Any]] = []
    down: dict[str, tuple[int, str | None]] = {}
    bad_frames: Counter[str] = Counter()
    intents, accepted, revised = 0, 0, 0
    rejected: dict[str, dict[str, Any]] = {}
    orders: dict[str, dict[str, Any]] = {}
    refusals: list[dict[str, Any]] = []
    fills: list[dict[str, Any]] = []
    funding: list[dict[str, Any]] = []
    stops: list[tuple[int, str | None, str | None, dict[str, Any]]] = []  # (time, symbol, client id, data)
    stop_kinds: dict[str, str] = {}  # client id of an exchange-held stop -> its type
    liquidations: set[str] = set()  # client ids of the exchange's liquidation orders
    series: dict[str, Any] = {"time": [], "equity": [], "state": [], "symbols": defaultdict(lambda: defaultdict(list))}
    for e in read_events(path):
        at, d = e.wall_ms, e.data
        if e.kind == "stop":
            stops.append((at, e.symbol, e.client_id, d))
            continue
        if e.kind == "stop.sending" and e.client_id:
            stop_kinds[e.client_id] = str(d.get("type"))
        if e.kind == "session.started":
            sessions.append(
                {
                    "session": e.session,
                    "started": iso(at),
                    "mode": d.get("mode"),
                    "strategy": d.get("strategy"),
                    "symbols": d.get("symbols"),
                    "params": d.get("params"),
                }
            )
        elif e.kind == "session.stopped" and sessions:
            sessions[-1] |= {
                "stopped": iso(at),
                "reason": d.get("reason"),
                "crashed": d.get("crashed"),
                "state": d.get("state"),
                "equity_end": d.get("equity_end"),
                "stats": d.get("stats"),
            }
        if e.kind in TIMELINE_KINDS:
            timeline.append(_timeline_entry(at, e.kind, d))
        elif e.kind == "feed":
            stream, status = d.get("stream", "?"), d.get("status")
            if status == "down":
                down[stream] = (at, d.get("fallback"))
            elif status == "up" and stream in down:
                since, fallback = down.pop(stream)
                gaps.append(
                    {
                        "stream": stream,
                        "from": iso(since),
                        "to": iso(at),
                        "seconds": round((at - since) / 1000, 3),
                        "fallback": fallback,
                        "from_ms": since,
                        "to_ms": at,
                    }
                )
            elif status == "bad_frame":
                bad_frames[stream] += 1
        elif e.kind == "intent":
            intents += 1
        elif e.kind == "verdict":
            if d.get("revised"):
                revised += 1
                accepted -= 1
            if d.get("decision") in ("ACCEPT", "ACCEPT_REDUCED"):
                accepted += 1
            else:
                for reason in d.get("reasons") or ["UNSPECIFIED"]:
                    group = rejected.setdefault(reason, {"count": 0, "examples": []})
                    group["count"] += 1
                    for finding in d.get("findings") or []:
                        if len(group["examples"]) < 3 and finding not in group["examples"]:
                            group["examples"].append(finding)
        elif e.kind == "order.sending" and e.client_id:
            orders[e.client_id] = {
                "client_id": e.client_id,
                "symbol": e.symbol,
                "sent": iso(at),
                "side": d.get("side"),
                "type": d.get("type"),
                "qty": d.get("qty"),
                "price": d.get("price"),
                "reduce_only": d.get("reduce_only"),
                "tag": d.get("tag"),
                "source": d.get("source"),
                "status": "sending",
                "filled": "0",
                "average": None,
            }
        elif e.kind == "order" and e.client_id:
            row = orders.setdefault(
                e.client_id,
                {
                    "client_id": e.client_id,
                    "symbol": e.symbol,
                    "sent": None,
                    "side": d.get("side"),
                    "type": d.get("type"),
                    "qty": d.get("qty"),
                    "price": d.get("price"),
                    "source": "exchange",
                },
            )
            row |= {"status": d.get("status"), "filled": d.get("filled"), "average": d.get("average")}
            if d.get("type") == "liquidation":
                liquidations.add(e.client_id)
                timeline.append(
                    {
                        "time": iso(at),
                        "time_ms": at,
                        "kind": "liquidation",
                        "trigger": "exchange",
                        "state": None,
                        "detail": f"{e.symbol} {d.get('side')} {d.get('filled')} @ {d.get('average')}",
                    }
                )
        elif e.kind == "order.failed":
            refusals.append(
                {
                    "time": iso(at),
                    "client_id": e.client_id,
                    "symbol": e.symbol,
                    "final": d.get("final"),
                    "error": d.get("error"),
                }
            )
            if d.get("final") and e.client_id in orders and orders[e.client_id]["status"] == "sending":
                orders[e.client_id]["status"] = "not placed"
        elif e.kind == "fill":
            fills.append(
                {
                    "time": iso(at),
                    "time_ms": at,
                    "symbol": e.symbol,
                    "client_id": e.client_id,
                    "side": d.get("side"),
                    "qty": d.get("qty"),
                    "price": d.get("price"),
                }
            )
        elif e.kind == "funding":
            funding.append({"time": iso(at), "time_ms": d.get("time_ms") or at, "symbol": e.symbol,
                            "amount": d.get("amount"), "id": d.get("id")})  # fmt: skip
        elif e.kind == "snapshot":
            _add_snapshot(series, at, d)
    for stream, (since, fallback) in down.items():  # still down when the journal ends
        gaps.append(
            {
                "stream": stream,
                "from": iso(since),
                "to": None,
                "seconds": None,
                "fallback": fallback,
                "from_ms": since,
                "to_ms": None,
            }
        )
    return {
        "journal": str(path),
        "precision": _precision(series, orders, fills),
        "trades": _trades(fills, orders, stop_kinds, liquidations, funding),
        "sessions": sessions,
        "timeline": timeline,
        "data": {"feed_gaps": gaps, "bad_frames": dict(bad_frames)},
        "pricing": _pricing(series),
        "execution": {
            "intents": intents,
            "accepted": accepted,
            "rejected_total": intents - accepted,
            "revised_verdicts": revised,
            "rejected": dict(sorted(rejected.items(), key=lambda kv: -kv[1]["count"])),
            "orders": list(orders.values()),
            "venue_refusals": refusals,
            "fills": fills,
        },
        "protection": _protection(stops, series),
        "post_trade": _post_trade(series, sessions, funding, fills),
        "series": {
            "time": series["time"],
            "equity": series["equity"],
            "state": series["state"],
            "symbols": {s: dict(v) for s, v in series["symbols"].items()},
        },
    }


def _timeline_entry(at: int, kind: str, d: dict[str, Any]) -> dict[str, Any]:
    if kind == "killswitch":
        return {
            "time": iso(at),
            "time_ms": at,
            "kind": f"killswitch.{d.get('event')}",
            "trigger": d.get("trigger"),
            "state": d.get("state"),
            "detail": d.get("figures"),
        }
    if kind == "reconcile":
        detail = f"at={d.get('at')} action={d.get('action')} unknown={len(d.get('unknown') or [])}"
    elif kind == "halt.action":
        counts = f" cancelled={d['cancelled']}/{d.get('of')}" if d.get("cancelled") is not None else ""
        rest = {k: v for k, v in d.items() if k not in ("action", "cancelled", "of", "trigger")}
        detail = f"{d.get('action')}{counts}" + "".join(f" {k}={v}" for k, v in rest.items())
    else:
        detail = str(d.get("error") or d.get("figures") or d)[:300]
    return {
        "time": iso(at),
        "time_ms": at,
        "kind": kind,
        "trigger": d.get("trigger"),
        "state": d.get("state"),
        "detail": detail,
    }


DEFAULT_PLACES = {"price": 2, "qty": 3}  # for a symbol whose journal shows no price or quantity to read them from


def _decimals(values: Any) -> int | None:
    """The most decimal places among these numbers (as journalled: exact strings), at most 8."""
    found = [max(0, -int(Decimal(str(v)).normalize().as_tuple().exponent)) for v in values if v is not None]
    return min(8, max(found)) if found else None


def _precision(series: dict[str, Any], orders: dict[str, dict[str, Any]],
               fills: list[dict[str, Any]]) -> dict[str, dict[str, int]]:  # fmt: skip
    """Per symbol, the decimal places of its prices and quantities, as the market quotes them: the book's
    prices sit on the tick and order quantities on the step (what the text and the page round to)."""
    out: dict[str, dict[str, int]] = {}
    symbols = set(series["symbols"]) | {o["symbol"] for o in orders.values() if o.get("symbol")}
    for symbol in sorted(symbols):
        snaps = series["symbols"].get(symbol, {})
        price = _decimals([*snaps.get("book_bid", []), *snaps.get("book_ask", [])])
        qty = _decimals([o.get("qty") for o in orders.values() if o.get("symbol") == symbol])
        out[symbol] = {"price": DEFAULT_PLACES["price"] if price is None else price,
                       "qty": DEFAULT_PLACES["qty"] if qty is None else qty}  # fmt: skip
    return out


def shown(value: Any, places: int) -> str:
    """A number for a person: rounded to `places` decimals (the JSON keeps the exact value)."""
    if value is None:
        return "-"
    return f"{Decimal(str(value)):,.{places}f}"


def _trades(fills: list[dict[str, Any]], orders: dict[str, dict[str, Any]], stop_kinds: dict[str, str],
            liquidations: set[str], funding: list[dict[str, Any]]) -> list[dict[str, Any]]:  # fmt: skip
    """Round trips from the journal's fills, flat to flat (a flip ends one and starts the next), each with
    its gross PnL, the funding paid or received while it was open, and what closed it. Fees are not in the
    journal's fills: the PnL here is before fees (the post-trade equity change includes them)."""
    from botkit.backtest.results import REASONS

    def why(client_id: str | None) -> str:
        if client_id in liquidations:
            return "liquidation"
        if client_id in stop_kinds:
            return "take-profit" if stop_kinds[client_id] == "take_profit_market" else "stop (on the exchange)"
        order = orders.get(client_id or "", {})
        source, tag = order.get("source") or "strategy", order.get("tag")
        reason = REASONS.get(source, source)
        return f"{reason} ({tag})" if reason == "signal" and tag else reason

    trades: list[dict[str, Any]] = []
    open_trips: dict[str, dict[str, Any]] = {}
    held: dict[str, Decimal] = defaultdict(Decimal)
    for f in fills:
        if f.get("qty") is None or f.get("price") is None:
            continue
        symbol, price = f["symbol"], Decimal(str(f["price"]))
        signed = Decimal(str(f["qty"])) * (1 if f.get("side") == "buy" else -1)
        qty, trip = held[symbol], open_trips.get(symbol)
        if qty and (qty > 0) != (signed > 0) and trip is not None:  # closing, in part or whole (or flipping)
            closing = min(abs(signed), abs(qty))
            average = trip["entry_value"] / trip["entry_qty"]
            # gross PnL of the closing part = closing qty × (exit price − average entry) × (+1 long, −1 short)
            trip["gross"] += closing * (price - average) * (1 if qty > 0 else -1)
            trip["exit_qty"] += closing
            trip["exit_value"] += closing * price
            qty += closing if signed > 0 else -closing
            signed -= closing if signed > 0 else -closing
            if qty == 0:
                trades.append(_closed(trip, f["time_ms"], why(f.get("client_id")), funding))
                del open_trips[symbol]
        if signed:
            trip = open_trips.setdefault(symbol, {
                "symbol": symbol, "side": "long" if signed > 0 else "short", "entry_ms": f["time_ms"],
                "entry_qty": Decimal(0), "entry_value": Decimal(0), "exit_qty": Decimal(0),
                "exit_value": Decimal(0), "gross": Decimal(0), "max_qty": Decimal(0)})  # fmt: skip
            trip["entry_qty"] += abs(signed)
            trip["entry_value"] += abs(signed) * price
            qty += signed
            trip["max_qty"] = max(trip["max_qty"], abs(qty))
        held[symbol] = qty
    trades += [_closed(trip, None, "open at the end", funding) for trip in open_trips.values()]
    return sorted(trades, key=lambda t: (t["entry_ms"], t["symbol"]))


def _closed(trip: dict[str, Any], exit_ms: int | None, why: str, funding: list[dict[str, Any]]) -> dict[str, Any]:
    paid = sum((Decimal(str(f["amount"])) for f in funding
                if f["symbol"] == trip["symbol"] and f.get("time_ms") is not None
                and trip["entry_ms"] <= f["time_ms"] <= (exit_ms if exit_ms is not None else f["time_ms"])),
               Decimal(0))  # fmt: skip
    exit_price = trip["exit_value"] / trip["exit_qty"] if trip["exit_qty"] else None
    return {
        "symbol": trip["symbol"], "side": trip["side"], "entry": iso(trip["entry_ms"]), "entry_ms": trip["entry_ms"],
        "exit": iso(exit_ms), "exit_ms": exit_ms, "qty": str(trip["max_qty"]),
        "entry_price": str(trip["entry_value"] / trip["entry_qty"]),
        "exit_price": str(exit_price) if exit_price is not None else None,
        "gross_pnl": str(trip["gross"]), "funding": str(paid),
        "pnl": str(trip["gross"] + paid),  # net of funding, before fees
        "closed_by": why,
    }  # fmt: skip


def _add_snapshot(series: dict[str, Any], at: int, d: dict[str, Any]) -> None:
    series["time"].append(at)
    series["equity"].append(d.get("equity"))
    series["state"].append(d.get("state"))
    for symbol, s in (d.get("symbols") or {}).items():
        row = series["symbols"][symbol]
        bid, ask, mark, liq = _dec(s.get("bid")), _dec(s.get("ask")), _dec(s.get("mark")), _dec(s.get("liquidation"))
        row["mid"].append(str((bid + ask) / 2) if bid is not None and ask is not None else None)
        row["book_bid"].append(s.get("bid"))
        row["book_ask"].append(s.get("ask"))
        row["mark"].append(s.get("mark"))
        row["index"].append(s.get("index"))
        row["position"].append(s.get("position"))
        for figure in SHOWN:  # the early warning's floats, absent from journals older than the figures
            row[figure].append(s.get(figure))
        # Liquidation distance: how far the mark may move against the position before liquidation, |mark − liq| / mark.
        distance = abs(mark - liq) / mark if mark and liq else None
        row["liq_distance"].append(str(round(distance, 6)) if distance is not None else None)


def _protection(stops: list[tuple[int, str | None, str | None, dict[str, Any]]], series: dict[str, Any]) -> dict:
    """Each stretch a position went without a stop on the exchange (journalled `unprotected` → `protected`),
    what became of the stops, and the stop in force at every snapshot (the price chart's stop line)."""
    stretches: list[dict[str, Any]] = []
    open_since: dict[str, int] = {}
    in_force: dict[str, dict[str, str]] = defaultdict(dict)  # symbol -> client id -> trigger (stop-markets)
    changes: dict[str, list[tuple[int, str | None]]] = defaultdict(list)  # symbol -> (time, trigger in force)
    actions: Counter[str] = Counter()
    for at, symbol, client_id, d in stops:
        action, symbol = str(d.get("action")), symbol or ""
        actions[action] += 1
        if action == "unprotected":
            open_since.setdefault(symbol, at)
        elif action == "protected" and symbol in open_since:
            since = open_since.pop(symbol)
            stretches.append({"symbol": symbol, "from": iso(since), "seconds": (at - since) / 1000, "to": iso(at)})
        if client_id and d.get("type") == "stop_market":
            if action in ("placed", "adopted") and d.get("trigger") is not None:
                in_force[symbol][client_id] = str(d["trigger"])
            elif action in ("cancelled", "triggered", "lost", "left"):
                in_force[symbol].pop(client_id, None)
            latest = list(in_force[symbol].values())[-1] if in_force[symbol] else None
            changes[symbol].append((at, latest))
    for symbol, since in open_since.items():  # still without one when the journal ends
        stretches.append({"symbol": symbol, "from": iso(since), "seconds": None, "to": None})
    for symbol, row in series["symbols"].items():
        timeline, current, i = changes.get(symbol, []), None, 0
        row["stop"] = []
        for t in series["time"]:
            while i < len(timeline) and timeline[i][0] <= t:
                current, i = timeline[i][1], i + 1
            row["stop"].append(current)
    per_symbol: dict[str, dict[str, Any]] = {}
    for stretch in stretches:
        totals = per_symbol.setdefault(stretch["symbol"], {"stretches": 0, "seconds": 0.0, "longest": 0.0})
        totals["stretches"] += 1
        if stretch["seconds"] is not None:
            totals["seconds"] += stretch["seconds"]
            totals["longest"] = max(totals["longest"], stretch["seconds"])
    return {"unprotected": stretches, "per_symbol": per_symbol, "stop_actions": dict(actions)}


def _pricing(series: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for symbol, row in series["symbols"].items():
        marks = [Decimal(m) for m in row["mark"] if m is not None]
        # Divergence in basis points: (mark − index) / index × 10 000.
        bps = [
            abs(Decimal(m) - Decimal(i)) / Decimal(i) * 10_000
            for m, i in zip(row["mark"], row["index"], strict=True)
            if m is not None and i
        ]
        out[symbol] = {
            "first_mark": str(marks[0]) if marks else None,
            "last_mark": str(marks[-1]) if marks else None,
            "low_mark": str(min(marks)) if marks else None,
            "high_mark": str(max(marks)) if marks else None,
            "max_divergence_bps": str(round(max(bps), 2)) if bps else None,
        }
    return out


def _post_trade(
    series: dict[str, Any], sessions: list[dict[str, Any]], funding: list[dict[str, Any]], fills: list[dict[str, Any]]
) -> dict[str, Any]:
    amounts = [Decimal(str(f["amount"])) for f in funding if f.get("amount") is not None]
    equities = [Decimal(str(x)) for x in series["equity"] if x is not None]
    end = sessions[-1].get("equity_end") if sessions else None
    start = equities[0] if equities else None
    end_value = Decimal(str(end)) if end is not None else (equities[-1] if equities else None)
    closest: dict[str, str] = {}
    for symbol, row in series["symbols"].items():
        distances = [Decimal(x) for x in row["liq_distance"] if x is not None]
        if distances:
            closest[symbol] = str(min(distances))
    return {
        "equity_start": str(start) if start is not None else None,
        "equity_end": str(end_value) if end_value is not None else None,
        # PnL over the journal: equity at the end − equity at the first snapshot (fees and funding included).
        "pnl": str(end_value - start) if start is not None and end_value is not None else None,
        "funding_paid": str(-sum((a for a in amounts if a < 0), Decimal(0))),
        "funding_received": str(sum((a for a in amounts if a > 0), Decimal(0))),
        "funding_payments": funding,
        "fills": len(fills),
        "closest_liquidation_distance": closest,
    }


# ------------------------------------------------------------------------------------------ text


def render_text(report: dict[str, Any]) -> str:
    lines = [f"botkit report: {report['journal']}", ""]
    for s in report["sessions"]:
        lines.append(
            f"session {s['session']}: {s.get('mode')} {s.get('strategy')} {s.get('symbols')} "
            f"{s['started']} -> {s.get('stopped') or 'no clean stop'} ({s.get('reason') or 'killed?'})"
        )
        if s.get("crashed"):
            lines.append(f"  crashed: {s['crashed']}")
    lines += ["", "timeline (trading state, triggers, actions):"]
    for t in report["timeline"] or []:
        who = f" trigger={t['trigger']}" if t.get("trigger") else ""
        state = f" state={t['state']}" if t.get("state") else ""
        lines.append(f"  {t['time']}  {t['kind']}{who}{state}  {t.get('detail') or ''}".rstrip())
    if not report["timeline"]:
        lines.append("  (nothing: no trip, no halt, no error)")
    data = report["data"]
    lines += ["", "data: feed gaps"]
    for g in data["feed_gaps"]:
        lines.append(
            f"  {g['stream']}: {g['from']} -> {g['to'] or 'still down'} "
            f"({g['seconds'] if g['seconds'] is not None else '?'} s, fallback {g['fallback']})"
        )
    if not data["feed_gaps"]:
        lines.append("  none")
    if data["bad_frames"]:
        lines.append(f"  frames dropped as invalid: {data['bad_frames']}")
    lines += ["", "pricing:"]
    for symbol, p in report["pricing"].items():
        price = places(report.get("precision", {}), symbol)
        lines.append(
            f"  {symbol}: mark {shown(p['first_mark'], price)} -> {shown(p['last_mark'], price)} (low "
            f"{shown(p['low_mark'], price)}, high {shown(p['high_mark'], price)}), largest mark/index divergence "
            f"{p['max_divergence_bps']} bps"
        )
    ex = report["execution"]
    lines += ["", f"execution: {ex['intents']} intents, {ex['accepted']} accepted, {ex['rejected_total']} rejected"]
    for reason, group in ex["rejected"].items():
        lines.append(f"  {reason}: {group['count']}" + (f"  e.g. {group['examples'][0]}" if group["examples"] else ""))
    statuses = Counter(o["status"] for o in ex["orders"])
    lines.append(f"  orders: {len(ex['orders'])} ({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))})")
    lines.append(f"  fills: {len(ex['fills'])}; refused or failed at the venue: {len(ex['venue_refusals'])}")
    for r in ex["venue_refusals"][:10]:
        lines.append(f"    {r['time']} {r['client_id']} {r['error']}")
    protection = report["protection"]
    lines += ["", "protection: the exchange-held stops"]
    if protection["stop_actions"]:
        lines.append("  " + ", ".join(f"{action} {n}" for action, n in sorted(protection["stop_actions"].items())))
    for symbol, totals in protection["per_symbol"].items():
        lines.append(
            f"  {symbol}: without a stop on the exchange {totals['stretches']} time(s), {totals['seconds']:.3f} s in "
            f"all, longest {totals['longest']:.3f} s"
        )
    for stretch in protection["unprotected"]:
        if stretch["seconds"] is None:
            lines.append(f"  {stretch['symbol']}: WITHOUT A STOP from {stretch['from']} to the journal's end")
    if not protection["stop_actions"]:
        lines.append("  no stop placed")
    lines += ["", "trades (round trips, flat to flat; PnL before fees, funding included):"]
    for t in report["trades"]:
        price, qty = places(report["precision"], t["symbol"]), places(report["precision"], t["symbol"], "qty")
        lines.append(
            f"  {t['entry']} {t['symbol']} {t['side']} {shown(t['qty'], qty)} @ {shown(t['entry_price'], price)} -> "
            f"{shown(t['exit_price'], price)}  PnL {shown(t['pnl'], 2)}  closed by {t['closed_by']}"
        )
    if not report["trades"]:
        lines.append("  none")
    post = report["post_trade"]
    lines += [
        "",
        "post-trade:",
        f"  equity {shown(post['equity_start'], 2)} -> {shown(post['equity_end'], 2)} (PnL {shown(post['pnl'], 2)})",
        f"  funding paid {post['funding_paid']}, received {post['funding_received']} "
        f"({len(post['funding_payments'])} payments)",
    ]
    for symbol, distance in post["closest_liquidation_distance"].items():
        lines.append(f"  {symbol}: closest the mark came to liquidation: {Decimal(distance) * 100:.2f} %")
    return "\n".join(lines)


def places(precision: dict[str, Any], symbol: str, what: str = "price") -> int:
    """The decimal places a symbol's prices (`what="price"`) or quantities (`"qty"`) are shown with."""
    return int(precision.get(symbol, {}).get(what, DEFAULT_PLACES[what]))
