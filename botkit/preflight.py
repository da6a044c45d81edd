"""`botkit check --config FILE`: the pre-flight before a testnet or live run.

Each check is one `Finding` (ok / info / warn / block) with the figures behind it. Any `block` makes the
command exit 1: the venue unreachable, the clock skewed beyond `killswitch.max_clock_skew_ms`, the API
key refused or without futures permission, tiers that do not load, refresh settings whose routine reads
would use up the request weight, or a risk budget that cannot reach a symbol's minimum order at the
reference stop distance (checked by the real gate, so the answer is the one the running bot would get).
Nothing is ever sent that places, changes or cancels an order; the margin mode and leverage are read,
not set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from botkit.config import BotConfig, disabled_guardrails
from botkit.domain import OrderIntent, OrderSide, OrderType, TradingState
from botkit.guards.gate import Gate, MarketView, Snapshot
from botkit.margin import MarketRules, Tier, plain
from botkit.runtime.read_budget import plan_reads
from botkit.runtime.reconcile import start_leverage
from botkit.venue.ccxt_venue import CcxtVenue
from botkit.venue.errors import Rejected, VenueError
from botkit.venue.protocol import Venue, open_venue

Level = Literal["ok", "info", "warn", "block"]


@dataclass(frozen=True)
class Finding:
    level: Level
    check: str
    detail: str


async def preflight(config: BotConfig, *, stop_distance: Decimal, emulator_url: str | None = None) -> list[Finding]:
    findings: list[Finding] = []
    add = findings.append
    paper = config.mode == "paper"
    venue = open_venue(config, emulator_url=emulator_url, streaming=False)
    try:
        where = emulator_url or (str(config.exchange.emulator_url) if config.exchange.emulator_url else None)
        add(
            Finding(
                "ok",
                "config",
                f"valid; mode {config.mode}, exchange {venue.exchange_id}" + (f" (emulator {where})" if where else ""),
            )
        )
        try:
            markets = await venue.load_markets()
        except VenueError as exc:
            add(Finding("block", "venue reachable", f"load_markets failed: {exc}"))
            return findings
        missing = [s for s in config.symbols if s not in markets]
        add(
            Finding(
                "block" if missing else "ok",
                "venue reachable",
                f"{len(markets)} perpetual markets" + (f"; not listed: {missing}" if missing else ""),
            )
        )
        if missing:
            return findings
        await _clock(venue, config, add)
        equity = await _account(venue, config, paper, add)
        if equity is not None:
            await _stops(venue, config, add)
        tiers = await _tiers(venue, config, add)
        if tiers is None:
            return findings
        await _margin_settings(venue, config, tiers, paper, add)
        await _sizing(venue, config, markets, tiers, equity, stop_distance, add)
        await _reads(venue, config, add)
        gaps = disabled_guardrails(config)
        for gap in gaps:
            add(Finding("block" if config.mode == "live" else "warn", "guardrails", gap))
        if not gaps:
            add(Finding("ok", "guardrails", "none disabled"))
    finally:
        await venue.close()
    return findings


async def _clock(venue: Venue, config: BotConfig, add: Any) -> None:
    try:
        offset = await venue.fetch_clock_offset()
    except VenueError as exc:
        add(Finding("block", "clock skew", f"cannot read the exchange's time: {exc}"))
        return
    limit = config.killswitch.max_clock_skew_ms
    level: Level = "block" if abs(Decimal(str(offset))) > limit else "ok"
    add(
        Finding(
            level,
            "clock skew",
            f"local clock {offset:+.0f} ms from the exchange's (limit {limit} ms)"
            + ("; fix the system clock (NTP) before trading" if level == "block" else ""),
        )
    )


async def _account(venue: Venue, config: BotConfig, paper: bool, add: Any) -> Decimal | None:
    if paper:
        add(Finding("info", "API key", f"not needed in paper mode; paper balance {plain(config.paper.balance)} USDT"))
        return (await venue.fetch_balance()).total
    if not config.exchange.api_key:
        add(Finding("block", "API key", "no key configured (BOTKIT_EXCHANGE__API_KEY / api_key_file)"))
        return None
    try:
        balance = await venue.fetch_balance()
    except Rejected as exc:
        add(
            Finding(
                "block",
                "API key",
                f"refused by the exchange: {exc.reason or exc}; check the key, its secret, "
                "its IP allow-list and that it belongs to this mode's venue (testnet keys differ)",
            )
        )
        return None
    except VenueError as exc:
        add(Finding("block", "API key", f"could not read the account: {exc}"))
        return None
    add(Finding("ok", "API key", f"valid; equity {plain(balance.total)} USDT, available {plain(balance.free)}"))
    if isinstance(venue, CcxtVenue):
        await _permissions(venue, add)
    return balance.total


async def _stops(venue: Venue, config: BotConfig, add: Any) -> None:
    """Open positions without a stop on the exchange (a bot that died before placing one, or a position made
    by hand): a running bot places one from its journal at start, or closes the position."""
    try:
        positions = await venue.fetch_positions(config.symbols)
        unprotected = []
        for position in positions:
            closing = OrderSide.closing(position.side)
            stops = await venue.fetch_open_stops(position.symbol)
            if not any(s.side is closing and s.type is OrderType.STOP_MARKET for s in stops):
                unprotected.append(f"{position.symbol} {position.side.value} {plain(position.qty)}")
    except VenueError as exc:
        add(Finding("warn", "exchange stops", f"could not read the positions and their stops: {exc}"))
        return
    if unprotected:
        add(
            Finding(
                "warn", "exchange stops", f"open positions without a stop on the exchange: {', '.join(unprotected)}"
            )
        )
    else:
        add(Finding("ok", "exchange stops", f"{len(positions)} open position(s), each with a stop on the exchange"))


async def _permissions(venue: CcxtVenue, add: Any) -> None:
    try:
        raw = await venue.fetch_key_permissions()
    except VenueError as exc:
        add(Finding("info", "key permissions", f"not reported ({type(exc).__name__}); check them on the exchange"))
        return
    if raw is None:
        add(Finding("info", "key permissions", f"{venue.exchange_id} does not report them through ccxt"))
        return
    if raw.get("enableWithdrawals"):
        add(
            Finding(
                "warn",
                "key permissions",
                "WITHDRAWALS ARE ENABLED on this key: a leaked key can empty the "
                "account. A trading bot needs none; make a key without withdrawal permission",
            )
        )
    if raw.get("enableFutures") is False:
        add(Finding("block", "key permissions", "futures trading is not enabled on this key"))
    elif not raw.get("enableWithdrawals"):
        ip = "IP-restricted" if raw.get("ipRestrict") else "not IP-restricted (restricting it is safer)"
        add(Finding("ok", "key permissions", f"futures enabled, withdrawals disabled, {ip}"))


async def _tiers(venue: Venue, config: BotConfig, add: Any) -> dict[str, tuple[Tier, ...]] | None:
    try:
        tiers = await venue.fetch_tiers(config.symbols)
    except VenueError as exc:
        add(Finding("block", "leverage tiers", str(exc)))
        return None
    for symbol, brackets in tiers.items():
        add(
            Finding(
                "ok",
                "leverage tiers",
                f"{symbol}: {len(brackets)} brackets, first up to "
                f"{plain(brackets[0].cap)} notional at {brackets[0].max_leverage}x",
            )
        )
    return tiers


async def _margin_settings(
    venue: Venue, config: BotConfig, tiers: dict[str, tuple[Tier, ...]], paper: bool, add: Any
) -> None:
    for symbol in config.symbols:
        wanted = start_leverage(config, tiers[symbol])
        if paper:
            add(Finding("info", "margin and leverage", f"{symbol}: paper account, isolated at {wanted}x at start"))
            continue
        try:
            leverage, mode = await venue.fetch_margin_settings(symbol)
        except VenueError as exc:
            add(Finding("warn", "margin and leverage", f"{symbol}: cannot read them: {exc}"))
            continue
        if mode == "isolated" and leverage == wanted:
            add(Finding("ok", "margin and leverage", f"{symbol}: isolated, {leverage}x"))
        else:
            add(
                Finding(
                    "info",
                    "margin and leverage",
                    f"{symbol}: now {mode or '?'} at {leverage or '?'}x; "
                    f"the bot sets isolated at {wanted}x when it starts (refused while a position is open)",
                )
            )


async def _sizing(
    venue: Venue,
    config: BotConfig,
    markets: dict[str, MarketRules],
    tiers: dict[str, tuple[Tier, ...]],
    equity: Decimal | None,
    stop_distance: Decimal,
    add: Any,
) -> None:
    """Ask the gate for the largest safe long at a stop `stop_distance` below the mark: if the risk budget
    cannot reach the exchange's minimum order there, the bot can never trade this symbol at that stop."""
    if equity is None:
        add(Finding("info", "sizing vs minimums", "skipped: no account equity to size against"))
        return
    gate, now = Gate(config), time.monotonic()
    budget = config.risk.risk_per_trade * equity
    for symbol in config.symbols:
        try:
            mark = (await venue.fetch_mark(symbol)).mark
            book = await venue.fetch_book(symbol)
        except VenueError as exc:
            add(Finding("block", "sizing vs minimums", f"{symbol}: no price to size with: {exc}"))
            continue
        view = MarketView(
            markets[symbol], tiers[symbol], start_leverage(config, tiers[symbol]), mark, now, book.bids, book.asks, now
        )
        snap = Snapshot(
            now=now,
            state=TradingState.ACTIVE,
            markets={symbol: view},
            equity=equity,
            available=equity,
            peak_equity=equity,
            day_start_equity=equity,
        )
        stop = mark * (1 - stop_distance)
        verdict = gate.check(OrderIntent(symbol, OrderSide.BUY, None, stop=stop), snap)
        rules = markets[symbol]
        minimum = f"minimum {plain(rules.min_qty)} qty / {plain(rules.min_notional)} USDT notional"
        context = (
            f"risk budget {budget:.2f} USDT (risk_per_trade "
            f"{plain(config.risk.risk_per_trade)} x equity {plain(equity)}), stop {stop_distance * 100:.2f} % "
            f"below the mark {plain(mark)}"
        )
        if verdict.accepted and verdict.qty:
            add(
                Finding(
                    "ok",
                    "sizing vs minimums",
                    f"{symbol}: largest safe order {plain(verdict.qty)} "
                    f"(~{plain((verdict.qty * mark).quantize(Decimal('1')))} USDT), {minimum}; {context}",
                )
            )
        else:
            why = ", ".join(r.value for r in verdict.reasons) or "rejected"
            add(
                Finding(
                    "block",
                    "sizing vs minimums",
                    f"{symbol}: the risk budget cannot reach the exchange's "
                    f"{minimum} ({why}); {context}. Raise risk.risk_per_trade or the equity, or trade with "
                    "tighter stops",
                )
            )


async def _reads(venue: Venue, config: BotConfig, add: Any) -> None:
    plan = await plan_reads(config, venue, list(config.symbols))
    if (problem := plan.problem()) is not None:
        add(Finding("block", "request weight", problem))
        return
    figures = f"routine reads {plan.steady_total:.0f} weight/min" + (
        f" of {plan.capacity:.0f} reads may spend" if plan.capacity is not None else ""
    )
    warning = plan.polling_warning()
    add(Finding("warn" if warning else "ok", "request weight", f"{figures}; {warning}" if warning else figures))


def guardrail_table(config: BotConfig) -> list[tuple[str, str]]:
    """The effective guardrail settings, one (setting, value) row each."""
    rows = []
    for section in ("risk", "limits", "killswitch", "stops"):
        for name, value in getattr(config, section).model_dump(mode="json").items():
            rows.append((f"{section}.{name}", str(value)))
    rows += [
        ("runtime.leverage", str(config.runtime.leverage or f"risk.max_leverage ({config.risk.max_leverage})")),
        ("runtime.unknown_exposure", config.runtime.unknown_exposure),
        ("runtime.on_strategy_error", config.runtime.on_strategy_error),
    ]
    return rows
