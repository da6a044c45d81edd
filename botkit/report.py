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
    series: dict[str, Any] = {"time": [], "equity": [], "state": [], "symbols": defaultdict(lambda: defaultdict(list))}
    for e in read_events(path):
        at, d = e.wall_ms, e.data
        if e.kind == "stop":
            stops.append((at, e.symbol, e.client_id, d))
            continue
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
            funding.append({"time": iso(at), "symbol": e.symbol, "amount": d.get("amount"), "id": d.get("id")})
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


def _add_snapshot(series: dict[str, Any], at: int, d: dict[str, Any]) -> None:
    series["time"].append(at)
    series["equity"].append(d.get("equity"))
    series["state"].append(d.get("state"))
    for symbol, s in (d.get("symbols") or {}).items():
        row = series["symbols"][symbol]
        bid, ask, mark, liq = _dec(s.get("bid")), _dec(s.get("ask")), _dec(s.get("mark")), _dec(s.get("liquidation"))
        row["mid"].append(str((bid + ask) / 2) if bid is not None and ask is not None else None)
        row["mark"].append(s.get("mark"))
        row["index"].append(s.get("index"))
        row["position"].append(s.get("position"))
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
        lines.append(
            f"  {symbol}: mark {p['first_mark']} -> {p['last_mark']} (low {p['low_mark']}, high "
            f"{p['high_mark']}), largest mark/index divergence {p['max_divergence_bps']} bps"
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
    post = report["post_trade"]
    lines += [
        "",
        "post-trade:",
        f"  equity {post['equity_start']} -> {post['equity_end']} (PnL {post['pnl']})",
        f"  funding paid {post['funding_paid']}, received {post['funding_received']} "
        f"({len(post['funding_payments'])} payments)",
    ]
    for symbol, distance in post["closest_liquidation_distance"].items():
        lines.append(f"  {symbol}: closest the mark came to liquidation: {Decimal(distance) * 100:.2f} %")
    return "\n".join(lines)
