"""The chaos harness: a real bot (runtime, gate, kill switch, guarded venue, real ccxt and ccxt.pro) trades
on the emulator while a fault plan breaks it; a monitor watches the exchange from outside through the
emulator's admin API; afterwards the invariants judge the run from the exchange's state and the journal,
recomputing the sizing rules with their own arithmetic (not botkit's).

A scenario also says how to switch its guardrail off (`off`): the suite runs it that way too and expects
the invariants to catch the damage, so each check is known to be able to fail.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import aiohttp

from botkit.config import BotConfig
from botkit.runtime.bot import Bot
from botkit.runtime.journal import Event, read_events
from botkit.runtime.orders import JournalHistory
from botkit.runtime.strategy import Strategy
from botkit.sim.faults import parse_plan
from botkit.sim.server import EmulatorSettings, running_emulator
from tests.integration.test_runtime import FAST_VENUE
from tests.support import background, disk_full_when

FULL = os.environ.get("BOTKIT_CHAOS") == "full"  # the long version: longer runs, more seeds
SEEDS = (11, 23, 37) if FULL else (11,)
HANG_S = 54.0  # a run not over this long after its duration has hung
FULL_SECONDS = 30.0  # the full variant: every run lasts 10 simulated minutes (the emulator runs 20x faster)
RULE_GRACE_S = 1.5  # after the exchange changes a rule, the bot has this long to learn it (one refusal)


@dataclass(frozen=True)
class Quiet:
    """A fault window (simulated seconds) inside which, after `grace_s` wall seconds, no new risk may go out."""

    start: float
    end: float
    grace_s: float
    why: str


@dataclass(frozen=True)
class Scenario:
    name: str
    guardrail: str  # what keeps the bot safe here; `off` removes it
    strategy: Callable[[], Strategy]
    faults: tuple[dict[str, Any], ...] = ()
    market: dict[str, Any] = field(default_factory=dict)  # EmulatorSettings changes
    config: dict[str, dict[str, Any]] = field(default_factory=dict)  # bot config sections
    seconds: float = 5.0  # wall seconds: 100 simulated ones
    trips: tuple[str, ...] = ()  # triggers that must trip ...
    recovers: tuple[str, ...] = ()  # ... and those that must clear again
    quiet: tuple[Quiet, ...] = ()
    max_bans: int = 0  # HTTP 418 answers the exchange may give (an injected ban counts)
    disk_full: tuple[float, float] | None = None  # simulated seconds while the journal's disk is full
    off_config: dict[str, dict[str, Any]] = field(default_factory=dict)  # the guardrail off: looser settings ...
    off_patch: Callable[[Bot], None] | None = None  # ... or a patched bot
    loss_budget: bool = False  # each closed position must have lost no more than its risk budget


@dataclass
class Sample:
    """The exchange, seen from outside at one moment."""

    wall_ms: int
    elapsed_s: float
    market: dict[str, Any]
    leverage: dict[str, int]
    positions: dict[str, tuple[D, D]] = field(default_factory=dict)  # exchange symbol -> (signed qty, entry)
    resting: list[tuple[str, str, D, D]] = field(default_factory=list)  # (symbol, side, unfilled, price), opening
    stops: list[tuple[str, str]] = field(default_factory=list)  # (symbol, side) of each open stop-market


@dataclass
class Run:
    scenario: Scenario
    config: BotConfig
    crashes: list[str]  # a hang, a crash, a traceback: how the bot failed to end cleanly
    events: list[Event]
    exchange: dict[str, Any]  # the admin API's state at the end
    samples: list[Sample]
    ended_ms: int

    def kinds(self, *kinds: str) -> list[Event]:
        return [e for e in self.events if e.kind in kinds]

    def orders(self) -> list[dict[str, Any]]:
        """The orders the bot placed itself (not those its stops placed when they triggered)."""
        stops = {a["clientAlgoId"] for a in self.stops()}
        return [
            o for account in self.exchange["accounts"] for o in account["orders"] if o["clientOrderId"] not in stops
        ]

    def stops(self) -> list[dict[str, Any]]:
        return [a for account in self.exchange["accounts"] for a in account["algo_orders"]]


async def admin_state(url: str, http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(f"{url}/_emu/state") as response:
        response.raise_for_status()
        return await response.json()


class Samples(list[Sample]):
    """The monitor's looks at the exchange, in order; `more(n)` returns once n more have been taken."""

    def __init__(self) -> None:
        super().__init__()
        self._grew = asyncio.Event()

    def append(self, sample: Sample) -> None:
        super().append(sample)
        self._grew.set()

    async def more(self, n: int) -> None:
        target = len(self) + n
        while len(self) < target:
            self._grew.clear()
            await self._grew.wait()


async def monitor(url: str, samples: list[Sample], every_s: float = 0.05) -> None:
    async with aiohttp.ClientSession() as http:
        while True:
            samples.append(sample_of(await admin_state(url, http)))
            await asyncio.sleep(every_s)


def sample_of(state: dict[str, Any]) -> Sample:
    """The exchange now, from the admin API's state."""
    [account] = state["accounts"] or [{"margin": {}}]
    leverage = {s: int(m["leverage"]) for s, m in account["margin"].items()}
    positions = {p["symbol"]: (D(p["positionAmt"]), D(p["entryPrice"])) for p in account.get("positions", [])}
    resting = [(o["symbol"], o["side"].lower(), D(o["origQty"]) - D(o["executedQty"]), D(o["price"]))
               for o in account.get("open_orders", []) if not o["reduceOnly"]]  # fmt: skip
    stops = [(a["symbol"], a["side"].lower()) for a in account.get("open_algo_orders", [])
             if a["orderType"] == "STOP_MARKET"]  # fmt: skip
    return Sample(time.time_ns() // 1_000_000, state["clock"]["elapsed_s"], state["market"], leverage, positions,
                  resting, stops)  # fmt: skip


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        for name, value in layer.items():
            out[name] = out.get(name, {}) | value if isinstance(value, dict) else value
    return out


async def run_scenario(scenario: Scenario, tmp_path: Path, *, guarded: bool = True, seed: int = 11) -> Run:
    """One run, with whatever the test process built before it frozen out of the garbage collector: a
    worker that has run hundreds of tests holds a heap whose full collections pause the event loop for tens
    of milliseconds, a second of a crash at 20x (a pause the bot on its own machine would not have)."""
    gc.collect()
    gc.freeze()
    try:
        return await _run_scenario(scenario, tmp_path, guarded=guarded, seed=seed)
    finally:
        gc.unfreeze()


async def _run_scenario(scenario: Scenario, tmp_path: Path, *, guarded: bool, seed: int) -> Run:
    # the bot's budget (FAST_VENUE) is ten times Binance's, and so is the exchange's
    base = {"seed": seed, "speed": 20.0, "scenario": "calm", "weight_per_minute": 24_000}
    settings = EmulatorSettings(**(base | scenario.market))
    plan = parse_plan({"seed": seed, "rules": list(scenario.faults)})
    loop = asyncio.get_running_loop()
    loop_errors: list[str] = []
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: loop_errors.append(str(context.get("exception") or context)))
    samples: list[Sample] = []
    try:
        async with running_emulator(settings, plan) as emu:
            sections = merged(
                {
                    "venue": FAST_VENUE,
                    "killswitch": {"stale_feed_seconds": 2},
                    "runtime": {"poll_seconds": "0.2", "account_seconds": "0.5", "reconcile_seconds": 1},
                },
                scenario.config,
            )
            config = _config(emu, tmp_path, sections if guarded else merged(sections, scenario.off_config))
            window = scenario.disk_full or (math.inf, math.inf)
            with disk_full_when(lambda: window[0] <= emu.market.elapsed_s < window[1]):
                bot = Bot(config, scenario.strategy())
                if not guarded and scenario.off_patch is not None:
                    scenario.off_patch(bot)
                summary = None
                async with background(monitor(emu.url, samples)):
                    seconds = max(scenario.seconds, FULL_SECONDS) if FULL else scenario.seconds
                    summary = await bounded(market_timed(bot, emu, seconds), seconds + HANG_S)  # None: a hang
            async with aiohttp.ClientSession() as http:
                exchange = await admin_state(emu.url, http)
    finally:
        loop.set_exception_handler(previous_handler)
    crashes = [f"unhandled in the event loop: {error}" for error in loop_errors]
    if summary is None:
        crashes.append(f"hang: the run did not end within {HANG_S:g} s of its duration")
    elif summary.crashed is not None:
        crashes.append(f"crash: {summary.crashed}")
    return Run(scenario, config, crashes, list(read_events(config.journal.path)), exchange, samples,
               time.time_ns() // 1_000_000)  # fmt: skip


async def market_timed(bot: Bot, emu: Any, seconds: float) -> Any:
    """The bot's run, ended once the market has covered `seconds` at its speed. A busy machine holds the
    market back (it waits for a stalled process: Emulator._run_clock), and the run waits with it, so that a
    starved run (the off runs are niced) still sees all of its scenario's faults and moves."""
    run, reached = asyncio.ensure_future(bot.run()), asyncio.ensure_future(emu.reached(seconds * emu.settings.speed))
    try:
        await asyncio.wait({run, reached}, return_when=asyncio.FIRST_COMPLETED)
        if not run.done():
            bot.stop("duration")
        return await run
    finally:
        reached.cancel()
        if not run.done():  # cancelled: a hang (see bounded), which waits for this at most 10 s
            run.cancel()
            await asyncio.wait({run})


async def bounded(run: Coroutine[Any, Any, Any], seconds: float) -> Any:
    """The run's result, or None if it has not ended within `seconds`: then every task's stack is printed
    and the run cancelled, and waited for 10 s more at most (asyncio.wait_for would wait for ever on a task
    that swallows its cancellation, and the test process would be killed with nothing to show for it)."""
    task = asyncio.ensure_future(run)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task in done:
        return task.result()
    print(f"hang: the run did not end in {seconds:g} s; its tasks:")
    for pending in asyncio.all_tasks():
        pending.print_stack(limit=12)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=10)
    if task not in done:
        print("hang: the run did not end 10 s after it was cancelled either (a cancellation swallowed)")
    return None


def _config(emu: Any, tmp_path: Path, sections: dict[str, Any]) -> BotConfig:
    return BotConfig(
        **merged(
            {
                "mode": "demo",
                "symbols": ["BTC/USDT:USDT"],
                "exchange": {"api_key": emu.api_key, "api_secret": emu.api_secret, "emulator_url": emu.url},
                "journal": {"path": tmp_path / "journal.sqlite"},
            },
            sections,
        )
    )


# ------------------------------------------------------------------------------------------ invariants


def violations(run: Run) -> list[str]:
    """Every broken invariant of a run, one line each (empty: the run held)."""
    checks = (no_hang_or_crash, no_duplicate_orders, journal_knows_every_exchange_order,
              journal_adds_up_to_the_position, sizing_holds, committed_risk_holds, no_new_risk_unless_active,
              trips_journalled, quiet_windows_held, no_bans_earned, no_liquidation,
              positions_have_stops, stops_match_positions)  # fmt: skip
    checks += (losses_within_budget,) if run.scenario.loss_budget else ()
    return [problem for check in checks for problem in check(run)]


def no_hang_or_crash(run: Run) -> list[str]:
    return run.crashes + [f"runtime error journalled: {e.data.get('error')}" for e in run.kinds("error")]


def no_duplicate_orders(run: Run) -> list[str]:
    ids = [o["clientOrderId"] for o in run.orders()] + [a["clientAlgoId"] for a in run.stops()]
    found = [f"duplicate: client id {c} used twice on the exchange" for c in {c for c in ids if ids.count(c) > 1}]
    for kind, on_exchange in (("order", run.orders()), ("stop", run.stops())):
        sent = len({e.client_id for e in run.kinds(f"{kind}.sending")})
        if len(on_exchange) > sent:
            found.append(f"duplicate {kind}s: {len(on_exchange)} on the exchange for {sent} sent")
    return found


def journal_knows_every_exchange_order(run: Run) -> list[str]:
    sent = {e.client_id for e in run.kinds("order.sending")}
    stops = {e.client_id for e in run.kinds("stop.sending")}
    orders = [f"unknown to the journal: exchange order {o['clientOrderId']}" for o in run.orders()
              if o["clientOrderId"] not in sent]  # fmt: skip
    return orders + [f"unknown to the journal: exchange stop {a['clientAlgoId']}" for a in run.stops()
                     if a["clientAlgoId"] not in stops]  # fmt: skip


def _exchange_symbol(symbol: str) -> str:
    base, rest = symbol.split("/")
    return base + rest.split(":")[0]


def _sample_at(run: Run, wall_ms: float) -> Sample:
    before = [s for s in run.samples if s.wall_ms <= wall_ms]
    return before[-1] if before else run.samples[0]


def _position(figures: dict[str, Any], side: str) -> tuple[D, D]:
    """(qty, entry) already held on the side of a new order, from the figures the gate used."""
    if not figures.get("position_qty"):
        return D(0), D(0)
    same_side = (figures["position_side"] == "long") == (side == "buy")
    return (D(figures["position_qty"]), D(figures["position_entry"])) if same_side else (D(0), D(0))


def _opening(sending: Event) -> bool:
    return sending.data["source"] == "strategy" and not sending.data["reduce_only"]


def _sent(run: Run) -> list[tuple[Event, Event]]:
    """(intent, order.sending) of every opening strategy order the bot sent: all it committed to the journal
    as about to leave, except those it held back because the trading state changed meanwhile."""
    held_back = {e.client_id for e in run.kinds("order.failed")
                 if {"STATE_HALTED", "STATE_REDUCING"} & set(e.data.get("reasons", ()))}  # fmt: skip
    latest: dict[str | None, Event] = {}
    pairs = []
    for event in run.events:
        if event.kind == "intent":
            latest[event.symbol] = event
        elif event.kind == "order.sending" and _opening(event) and event.client_id not in held_back:
            pairs.append((latest[event.symbol], event))
    return pairs


def sizing_holds(run: Run) -> list[str]:
    """Each opening order, checked against the rules with independent arithmetic and the exchange's own rules
    and brackets in force when it was sent (those of RULE_GRACE_S earlier, for a rule that just changed)."""
    risk, limits = run.config.risk, run.config.limits
    found = []
    for intent, sending in _sent(run):
        who = f"order {sending.client_id}"
        figures, asked = intent.data["figures"], intent.data["intent"]
        side, qty = sending.data["side"], D(sending.data["qty"])
        price = sending.data["price"]
        entry = D(price) if price is not None else D(figures["best_ask" if side == "buy" else "best_bid"])
        notional = qty * entry
        then = _sample_at(run, sending.wall_ms - RULE_GRACE_S * 1000)
        market = then.market[_exchange_symbol(sending.symbol)]
        if notional > limits.max_order_notional:
            found.append(f"{who}: notional {notional} above max_order_notional {limits.max_order_notional}")
        if notional < D(market["min_notional"]):
            found.append(f"{who}: notional {notional} below the exchange's minimum {market['min_notional']}")
        held, held_entry = _position(figures, side)
        total = held + qty
        avg = (held * held_entry + qty * entry) / total
        leverage = _sample_at(run, sending.wall_ms).leverage.get(_exchange_symbol(sending.symbol), 20)
        bracket = next((t for t in market["tiers"] if D(t["floor"]) <= total * avg < D(t["cap"])), market["tiers"][-1])
        if leverage > bracket["max_leverage"]:
            found.append(f"{who}: leverage {leverage} above the bracket's {bracket['max_leverage']} at {total * avg}")
        if asked.get("stop") is None:
            found.append(f"{who}: opens without a stop")
            continue
        stop = D(asked["stop"])
        # loss at the stop = Q·|E − S| + Q·E·maker + Q·S·(taker + slippage): the cheapest fees, a lower bound
        loss = total * abs(avg - stop) + total * avg * risk.maker_fee + total * stop * (risk.taker_fee + risk.slippage)
        budget = risk.risk_per_trade * D(figures["equity"])
        if loss > budget:
            found.append(f"{who}: loss at the stop {loss:.4f} above the budget {budget:.4f}")
        # isolated liquidation (one-way): LP = (WB + cum − s·Q·E) / (Q·mmr − s·Q), WB = Q·E / leverage
        s = 1 if side == "buy" else -1
        wallet = total * avg / leverage
        liq = (wallet + D(bracket["cum"]) - s * total * avg) / (total * D(bracket["mmr"]) - s * total)
        if (s > 0 and liq >= stop) or (s < 0 and liq <= stop):
            found.append(f"{who}: liquidation {liq:.2f} not beyond the stop {stop} at {leverage}x")
    return found


BALANCE = EmulatorSettings().balance  # every run's account starts with it
COMMITTED_TOLERANCE = D("1.10")  # market entries fill a little worse than the book top the gate priced them at


def committed_risk_holds(run: Run) -> list[str]:
    """At every moment the monitor saw, everything committed on a side of a symbol on the exchange (the
    position, if on that side, plus every resting order that adds to it) stays within one risk budget at the
    stop of the latest opening intent the gate accepted there: recomputed from the exchange's own state, not
    from what the bot journalled. Concurrent or stacked intents each sized to the whole budget break it."""
    risk = run.config.risk
    accepted: dict[tuple[str, str], list[tuple[int, D, D]]] = {}  # (symbol, side) -> [(wall_ms, stop, equity)]
    asked: dict[str | None, Event] = {}
    for event in run.events:
        if event.kind == "intent" and event.data.get("source") == "strategy":
            asked[event.symbol] = event
        elif event.kind == "verdict" and event.data["decision"] != "REJECT" and event.symbol in asked:
            intent = asked.pop(event.symbol)
            wanted, figures = intent.data["intent"], intent.data["figures"] or {}
            if wanted.get("stop") is not None and not wanted.get("reduce_only") and figures.get("equity"):
                key = (_exchange_symbol(event.symbol or ""), wanted["side"])
                accepted.setdefault(key, []).append((intent.wall_ms, D(wanted["stop"]), D(figures["equity"])))
    found: dict[tuple[str, str], str] = {}
    for sample in run.samples:
        for (symbol, side), history in accepted.items():
            latest = [h for h in history if h[0] <= sample.wall_ms]
            if not latest or (symbol, side) in found:
                continue
            _, stop, equity = latest[-1]
            amount, entry = sample.positions.get(symbol, (D(0), D(0)))
            qty = abs(amount) if (amount > 0) == (side == "buy") and amount != 0 else D(0)
            cost = qty * entry
            for resting_symbol, resting_side, left, price in sample.resting:
                if resting_symbol == symbol and resting_side == side and left > 0:
                    qty, cost = qty + left, cost + left * price
            if qty == 0:
                continue
            # loss if all of it fills and is stopped out: Q·|avg − S| + maker fee in + (taker + slippage) at S
            loss = abs(cost - qty * stop) + cost * risk.maker_fee + qty * stop * (risk.taker_fee + risk.slippage)
            budget = risk.risk_per_trade * equity
            if loss > budget * COMMITTED_TOLERANCE:
                found[(symbol, side)] = (f"{symbol} {side}: {qty} committed on the exchange loses {loss:.2f} at the "
                                         f"stop {stop}, budget {budget:.2f}")  # fmt: skip
    return list(found.values())


def no_new_risk_unless_active(run: Run) -> list[str]:
    """No opening strategy order was sent after the journal recorded a state other than ACTIVE."""
    found, state = [], "ACTIVE"
    sent = {sending.id for _, sending in _sent(run)}
    for event in run.events:
        if event.kind == "killswitch" and event.data["event"] == "state":
            state = event.data["state"]
        elif event.id in sent and state != "ACTIVE":
            found.append(f"new risk while {state}: order {event.client_id}")
    return found


def trips_journalled(run: Run) -> list[str]:
    found, seen = [], set()
    for event in run.kinds("killswitch"):
        kind, trigger, figures = event.data["event"], event.data.get("trigger"), event.data.get("figures")
        if not trigger or not figures:
            found.append(f"killswitch {kind} without its trigger or figures: {event.data}")
        if kind in ("tripped", "cleared"):
            seen.add((kind, trigger))
        elif ("tripped", trigger) not in seen and ("cleared", trigger) not in seen:
            found.append(f"state change by {trigger} with no trip or clearing of it before: {event.data}")
    found += [f"expected trip missing: {t}" for t in run.scenario.trips if ("tripped", t) not in seen]
    found += [f"expected recovery missing: {t}" for t in run.scenario.recovers if ("cleared", t) not in seen]
    return found


def _wall_at(run: Run, elapsed_s: float) -> float:
    """The wall time (ms) at which the exchange's simulated clock reached `elapsed_s`."""
    return next((s.wall_ms for s in run.samples if s.elapsed_s >= elapsed_s), run.ended_ms)


def quiet_windows_held(run: Run) -> list[str]:
    found = []
    for window in run.scenario.quiet:
        start, end = _wall_at(run, window.start) + window.grace_s * 1000, _wall_at(run, window.end)
        inside = [sending.client_id for _, sending in _sent(run) if start <= sending.wall_ms < end]
        if inside:
            found.append(f"new risk while {window.why}: {len(inside)} orders, e.g. {inside[0]}")
    return found


def no_bans_earned(run: Run) -> list[str]:
    bans = run.exchange["rate_limit_answers"].get("418", 0)
    allowed = run.scenario.max_bans
    return [f"banned by the exchange: {bans} HTTP 418 answers (at most {allowed} expected)"] if bans > allowed else []


def journal_adds_up_to_the_position(run: Run) -> list[str]:
    """The bot's own fills in the journal add up to each position the exchange holds (for a run that ended
    cleanly: a fill landing as the bot stops may not be journalled)."""
    own = JournalHistory(run.events).positions()
    found = []
    for account in run.exchange["accounts"]:
        for row in account["positions"]:
            symbol = next((s for s in run.config.symbols if _exchange_symbol(s) == row["symbol"]), None)
            held, journalled = D(row["positionAmt"]), own.get(symbol, D(0)) if symbol else D(0)
            if symbol and held != journalled:  # both signed: + long, − short
                found.append(f"{symbol}: the journal's fills add up to {journalled}, the exchange holds {held}")
    return found


def positions_have_stops(run: Run) -> list[str]:
    """No position held without a stop-market on its closing side on the exchange for longer than the
    bot's `stops.confirm_seconds` (wall time, seen in the samples; a sample apart of slack)."""
    if not run.config.stops.enabled:
        return []
    allowed_ms = float(run.config.stops.confirm_seconds) * 1000 + 200
    since: dict[str, int] = {}
    worst: dict[str, int] = {}
    for sample in run.samples:
        for symbol, (qty, _) in sample.positions.items():
            closing = "sell" if qty > 0 else "buy"
            if qty and (symbol, closing) not in sample.stops:
                start = since.setdefault(symbol, sample.wall_ms)
                worst[symbol] = max(worst.get(symbol, 0), sample.wall_ms - start)
            else:
                since.pop(symbol, None)
        for symbol in [s for s in since if not sample.positions.get(s, (D(0), D(0)))[0]]:
            del since[symbol]
    return [f"{symbol}: a position without a stop on the exchange for {ms / 1000:.2f}s (max {allowed_ms / 1000:g}s)"
            for symbol, ms in worst.items() if ms > allowed_ms]  # fmt: skip


def stops_match_positions(run: Run) -> list[str]:
    """When the bot has stopped: one stop-market per position on the exchange (a second one left behind is a
    duplicate), and none where the bot is flat (an orphan would fire against a later position)."""
    if not run.config.stops.enabled:
        return []
    found = []
    for account in run.exchange["accounts"]:
        held = {row["symbol"]: D(row["positionAmt"]) for row in account["positions"]}
        for symbol in {a["symbol"] for a in account["open_algo_orders"]}:
            closing = "SELL" if held.get(symbol, D(0)) > 0 else "BUY"
            stops = [a["clientAlgoId"] for a in account["open_algo_orders"]
                     if a["symbol"] == symbol and a["orderType"] == "STOP_MARKET"]  # fmt: skip
            if not held.get(symbol):
                found += [f"{symbol}: stop {cid} left open with no position" for cid in stops]
            elif len(stops) > 1 or any(a["side"] != closing for a in account["open_algo_orders"]
                                       if a["symbol"] == symbol and a["orderType"] == "STOP_MARKET"):  # fmt: skip
                found.append(f"{symbol}: {len(stops)} stops left for one position: {stops}")
    return found


def closed_positions(run: Run) -> list[tuple[str, D, D]]:
    """(symbol, loss, risk budget) of each position opened and closed again during the run, from the
    exchange's own fills: the loss is the realized PnL less every commission from the first fill to the one
    that made it flat; the budget is risk_per_trade of the equity it started from (the balance and what
    earlier positions realized)."""
    [account] = run.exchange["accounts"]
    held: dict[str, D] = {}
    net: dict[str, D] = {}  # symbol -> the open position's realized PnL less commissions so far
    equity: dict[str, D] = {}  # symbol -> the equity its open position started from
    realized, closed = D(0), []
    for fill in account["fills"]:
        symbol, signed = fill["symbol"], D(fill["qty"]) * (1 if fill["side"] == "BUY" else -1)
        if held.get(symbol, D(0)) == 0:
            net[symbol], equity[symbol] = D(0), BALANCE + realized
        result = D(fill["realizedPnl"]) - D(fill["commission"])
        net[symbol] += result
        realized += result
        held[symbol] = held.get(symbol, D(0)) + signed
        if held[symbol] == 0:
            closed.append((symbol, -net[symbol], run.config.risk.risk_per_trade * equity[symbol]))
    return closed


def losses_within_budget(run: Run) -> list[str]:
    """No closed position lost more than the risk budget it was sized for (within the committed tolerance):
    a cascade that fills the stop far beyond its price breaks it."""
    return [f"{symbol}: a position lost {loss:.2f}, its risk budget {budget:.2f}"
            for symbol, loss, budget in closed_positions(run) if loss > budget * COMMITTED_TOLERANCE]  # fmt: skip


def no_liquidation(run: Run) -> list[str]:
    return [f"liquidated by the exchange: {liquidation}" for liquidation in run.exchange["liquidations"]]
