"""The `botkit` command line.

Exit codes: 0 success (or an accepted sizing), 1 a sizing verdict of reject, 2 bad input (arguments,
config, files). A user's mistake is always one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click
from pydantic import SecretStr
from rich.console import Console
from rich.live import Live
from rich.table import Table

from botkit import __version__
from botkit.config import ConfigError, RiskConfig, disabled_guardrails, effective_settings, load_config
from botkit.guards.control import control_path, send
from botkit.margin import (
    MarketRules,
    SizingPolicy,
    SizingReport,
    Tier,
    TierError,
    TradePlan,
    max_leverage_for_stop,
    plain,
    size,
    tiers_from_ccxt,
)
from botkit.sim.faults import FaultPlan, FaultPlanError, load_plan
from botkit.sim.market import SCENARIOS
from botkit.sim.server import Emulator, EmulatorSettings

EXIT_REJECT = 1
EXIT_USAGE = 2
RISK_DEFAULTS = RiskConfig()
UNBOUNDED_NOTIONAL = Decimal("1e30")  # the cap of the single bracket built from --mmr/--cum


LARGEST, SMALLEST = Decimal("1e15"), Decimal("1e-12")  # prices, sizes and rates of any real market lie between


class DecimalType(click.ParamType):
    """A finite decimal number, optionally required to be positive or non-negative."""

    name = "number"

    def __init__(self, minimum: Decimal | None = None, strict: bool = False) -> None:
        self.minimum, self.strict = minimum, strict

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Decimal:
        if isinstance(value, Decimal):
            return value
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            self.fail(f"{value!r} is not a number", param, ctx)
        if not number.is_finite():
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if abs(number) > LARGEST or (number != 0 and abs(number) < SMALLEST):
            self.fail(f"{value} is beyond any market (between {SMALLEST} and {LARGEST})", param, ctx)
        if self.minimum is not None and (number <= self.minimum if self.strict else number < self.minimum):
            self.fail(f"{value} must be {'>' if self.strict else '>='} {self.minimum}", param, ctx)
        return number


POSITIVE = DecimalType(Decimal(0), strict=True)
NON_NEGATIVE = DecimalType(Decimal(0))
SIGNED = DecimalType()


class UserError(Exception):
    """Bad input found after argument parsing; printed as one line, exit code 2."""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="botkit")
def cli() -> None:
    """botkit: trading bots on perpetual futures with client-side risk guardrails."""


# ------------------------------------------------------------------------------------ check-config


@cli.command("check-config")
@click.argument("config_file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the effective settings as JSON.")
def check_config(config_file: Path, as_json: bool) -> None:
    """Validate CONFIG_FILE (plus BOTKIT_* overrides), the strategy and its [params], and print the effective
    settings, secrets masked."""
    from botkit.runtime.strategy import load_strategy, make_strategy

    config = load_config(config_file)
    make_strategy(load_strategy(config.strategy), config.params)  # what `run` would refuse, refused here
    settings = effective_settings(config)
    if as_json:
        click.echo(json.dumps(settings, indent=2))
        return
    table = Table(title=f"{config_file}: valid (mode {config.mode})", show_header=True)
    table.add_column("setting")
    table.add_column("value")
    for key, value in _flatten(settings):
        table.add_row(key, "-" if value is None else str(value))
    Console().print(table)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


# ----------------------------------------------------------------------------------- halt / resume


@cli.command("halt")
@click.option("--config", "config_file", type=click.Path(path_type=Path), required=True, help="The bot's config.")
@click.option("--reason", default="manual halt", show_default=True, help="Journalled with the halt.")
@click.option("--fleet", "fleet", is_flag=True, help="Halt every bot of the fleet ([fleet] in the config), not one.")
@click.option("--account", help="With --fleet: only the bots of this account.")
def halt_command(config_file: Path, reason: str, fleet: bool, account: str | None) -> None:
    """Halt the bot: no new orders, open orders cancelled; it stays halted until `botkit resume`, across
    restarts. A running bot applies it within a second; with none running, the next start does. With
    --fleet: every bot of the fleet (or of one account), until `botkit resume --fleet`."""
    config = load_config(config_file, keys=False)
    if fleet or account:
        asyncio.run(_fleet_control(config, "halt", reason, account))
        return
    journal = config.journal.path
    if _offline_control(journal, "halt", reason):
        click.echo(f"no bot is running on {journal}: the halt is journalled there and the next start applies it")
        return
    send(control_path(journal), "halt", reason)
    click.echo(f"halt sent to {control_path(journal)}; the running bot applies it within a second")


@cli.command("resume")
@click.option("--config", "config_file", type=click.Path(path_type=Path), required=True, help="The bot's config.")
@click.option("--fleet", "fleet", is_flag=True, help="Lift the fleet's halt (every flag, or --account's).")
@click.option("--account", help="With --fleet: only this account's halt.")
def resume_command(config_file: Path, fleet: bool, account: str | None) -> None:
    """Resume a bot halted by `botkit halt` or by a latched trigger (a ban in force stays); with --fleet, lift
    the fleet's halt."""
    config = load_config(config_file, keys=False)
    if fleet or account:
        asyncio.run(_fleet_control(config, "resume", "", account))
        return
    journal = config.journal.path
    if _offline_control(journal, "resume", ""):
        click.echo(f"no bot is running on {journal}: the latched trips in it are cleared for the next start")
        return
    send(control_path(journal), "resume")
    click.echo(f"resume sent to {control_path(journal)}; the running bot applies it within a second")


async def _fleet_control(config: Any, command: str, reason: str, account: str | None) -> None:
    """`halt --fleet` / `resume --fleet`: the flag in Redis, and a message to every running bot."""
    from redis.exceptions import RedisError

    from botkit.fleet.coordinator import clear_halt, connect, set_halt, where

    if config.fleet is None:
        raise UserError("--fleet needs a [fleet] section (redis_url, name, account, ip_group) in the config")
    client = connect(config.fleet)
    scope = f"account {account}" if account else "every bot"
    try:
        if command == "halt":
            copies = await set_halt(client, reason, f"botkit halt ({config.fleet.name}'s config)", account)
            held = "" if copies is None else f"; {copies} replica(s) hold it"
            click.echo(f"fleet halt set for {scope}: running bots apply it within a heartbeat, later ones at "
                       f"start{held}")  # fmt: skip
        else:
            lifted = await clear_halt(client, account)
            click.echo(f"fleet halt lifted for {scope} ({lifted} flag(s)); each bot resumes per its own trips")
    except (RedisError, OSError) as exc:
        raise UserError(f"fleet: Redis at {where(config.fleet)} is unreachable: {type(exc).__name__}") from None
    finally:
        await client.aclose()


@cli.group("fleet")
def fleet_group() -> None:
    """The fleet of bots sharing Redis ([fleet] in the config)."""


@fleet_group.command("status")
@click.option("--config", "config_file", type=click.Path(path_type=Path), required=True, help="Any bot's config.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def fleet_status(config_file: Path, as_json: bool) -> None:
    """One table of the fleet's bots: state, equity, positions, budget use, last heartbeat, reservations."""
    from botkit.fleet.status import read_fleet

    config = load_config(config_file, keys=False)
    if config.fleet is None:
        raise UserError(f"{config_file}: no [fleet] section")
    try:
        fleet = asyncio.run(read_fleet(config.fleet))
    except OSError as exc:
        raise UserError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(fleet, indent=2, default=str))
        return
    out = Console(highlight=False)

    def places(amount: Decimal) -> str:
        return f"{amount:.2f}"

    halts = ", ".join(f"{scope}: {flag.get('reason')}" for scope, flag in fleet["halts"].items()) or "none"
    out.print(f"fleet halts in force: {halts}", markup=False, soft_wrap=True)
    for account, held in fleet["accounts"].items():
        positions = ", ".join(f"{s} {places(p['notional'])} by {p['bot']}" for s, p in held["positions"].items())
        out.print(f"account {account}: notional {places(held['notional'])}, loss at the stops "
                  f"{places(held['loss'])}, open orders {held['open_orders']}; positions: {positions or 'none'}",
                  markup=False, soft_wrap=True)  # fmt: skip
    head = ("bot", "account", "ip group", "state", "equity", "positions", "orders", "weight used", "reservations",
            "heartbeat")  # fmt: skip
    rows = []
    for bot in fleet["bots"]:
        weight = bot.get("budgets", {}).get("weight_1m", {})
        rows.append((bot["name"], str(bot.get("account")), str(bot.get("ip_group")), str(bot.get("state", "gone")),
                     str(bot.get("equity")), ", ".join(f"{s} {p}" for s, p in bot.get("positions", {}).items()) or "-",
                     str(bot.get("open_orders", "-")), f"{weight.get('used', '-')}/{weight.get('limit', '-')}",
                     str(bot.get("reservations", "-")),
                     f"{bot['age_s']:.1f}s ago" if bot.get("age_s") is not None else "-"))  # fmt: skip
    if not out.is_terminal:  # a pipe or a file: a line a bot, never wrapped
        for row in rows:
            out.print("  ".join(f"{name}={value}" for name, value in zip(head, row, strict=True)), markup=False,
                      soft_wrap=True)  # fmt: skip
        return
    table = Table(*head)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _offline_control(journal: Path, command: str, reason: str) -> bool:
    """With no bot holding the journal, act on the journal itself (the next start reads it); False when a
    bot is running and must be told through its control file."""
    from botkit.guards.control import operator
    from botkit.runtime.events import SwitchChanged
    from botkit.runtime.journal import Journal, JournalError, is_locked
    from botkit.runtime.reconcile import latched_trips

    if not journal.parent.is_dir():
        raise UserError(f"journal {journal}: the folder {journal.parent} does not exist")
    if is_locked(journal):
        return False
    try:
        outstanding = latched_trips(journal)
        writer = Journal(journal, "operator")
    except JournalError as exc:
        if "in use by another botkit" in str(exc):
            return False  # a bot started meanwhile: tell it through the control file
        raise UserError(str(exc)) from None
    who = operator()
    try:
        if command == "halt":
            writer.write(SwitchChanged(event="tripped", trigger="manual", state="HALTED",
                                       figures=f"reason={reason} (by {who}, no bot running)"))
        else:
            for trigger in outstanding:
                writer.write(SwitchChanged(event="cleared", trigger=trigger, state="ACTIVE",
                                           figures=f"resumed by {who}, no bot running"))
    finally:
        writer.close()
    if writer.failed is not None:
        raise UserError(f"journal {journal}: cannot write: {writer.failed}")
    return True


# -------------------------------------------------------------------------------------------- size


def _risk_option(name: str, help_text: str, kind: click.ParamType, field: str) -> Any:
    return click.option(
        name, field, type=kind, default=getattr(RISK_DEFAULTS, field), show_default=True, help=help_text
    )


@cli.command("size")
@click.option("--side", type=click.Choice(["long", "short"]), required=True, help="Position direction.")
@click.option("--entry", type=POSITIVE, required=True, help="Planned entry price.")
@click.option("--stop", type=POSITIVE, required=True, help="Stop price.")
@click.option("--equity", type=POSITIVE, required=True, help="Account equity in the margin asset.")
@click.option("--available", type=NON_NEGATIVE, help="Available balance for margin and fees [default: equity].")
@click.option("--leverage", type=click.IntRange(1, 125), required=True, help="Leverage to open with.")
@_risk_option("--risk", "Fraction of equity a stop-out may cost.", POSITIVE, "risk_per_trade")
@_risk_option("--max-leverage", "Policy leverage cap.", click.IntRange(1, 125), "max_leverage")
@_risk_option("--liq-buffer", "Planning liquidation beyond the stop, fraction of entry.", NON_NEGATIVE, "liq_buffer")
@_risk_option("--taker-fee", "Taker fee rate (exit at the stop).", NON_NEGATIVE, "taker_fee")
@_risk_option("--maker-fee", "Maker fee rate (entry with --maker-entry).", NON_NEGATIVE, "maker_fee")
@click.option("--maker-entry", is_flag=True, help="The entry rests as a maker order (pays the maker fee).")
@_risk_option("--slippage", "Adverse fill beyond the stop, fraction of the stop.", NON_NEGATIVE, "slippage")
@_risk_option("--funding-rate", "Assumed funding rate per interval (signed).", SIGNED, "funding_rate")
@_risk_option("--funding-intervals", "Funding settlements to plan for.", click.IntRange(0, 1000), "funding_intervals")
@click.option("--max-notional", type=POSITIVE, help="Policy cap on the position's notional.")
@click.option("--tiers", "tiers_file", type=click.Path(path_type=Path), help="Leverage tiers, ccxt JSON shape.")
@click.option("--mmr", type=POSITIVE, help="Single maintenance margin rate (instead of --tiers).")
@click.option("--cum", type=NON_NEGATIVE, default=Decimal(0), show_default=True, help="Maintenance amount with --mmr.")
@click.option("--step", type=POSITIVE, default=Decimal("0.001"), show_default=True, help="Quantity step.")
@click.option("--tick", type=POSITIVE, default=Decimal("0.1"), show_default=True, help="Price tick.")
@click.option("--min-qty", type=NON_NEGATIVE, default=Decimal("0.001"), show_default=True, help="Exchange min qty.")
@click.option("--max-qty", type=POSITIVE, help="Exchange max quantity.")
@click.option(
    "--min-notional", type=NON_NEGATIVE, default=Decimal(100), show_default=True, help="Exchange min notional."
)
@click.option("--qty", type=POSITIVE, help="Check this quantity instead of computing the largest safe one.")
@click.option("--vol-annual", type=POSITIVE, help="The market's annualised volatility (0.6 = 60 %): report "
              "STOP_INSIDE_NOISE and LIQ_WITHIN_SIGMA against it.")
@click.option("--holding-seconds", type=POSITIVE, default=Decimal(3600), show_default=True,
              help="Holding horizon for STOP_INSIDE_NOISE.")
@click.option("--noise-k", type=POSITIVE, default=Decimal(1), show_default=True, help="k of STOP_INSIDE_NOISE.")
@click.option("--liq-sigma-n", type=POSITIVE, default=Decimal(3), show_default=True, help="n of LIQ_WITHIN_SIGMA.")
@click.option("--funding-interval-seconds", type=POSITIVE, default=Decimal(28800), show_default=True,
              help="One funding interval, for LIQ_WITHIN_SIGMA.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="Take unset policy flags from [risk].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (numbers as exact decimal strings).")
@click.pass_context
def size_command(ctx: click.Context, **opts: Any) -> None:
    """Size an isolated-margin position: the largest safe quantity, or check one with --qty.

    Market defaults are BTCUSDT's filters on Binance USDⓈ-M. Exit code 0 accept, 1 reject, 2 bad input.
    """
    if opts["config_file"] is not None:
        risk = load_config(opts["config_file"], keys=False).risk
        for param in ctx.command.params:
            field = param.name
            if field and ctx.get_parameter_source(field) is click.core.ParameterSource.DEFAULT and hasattr(risk, field):
                opts[field] = getattr(risk, field)
    tiers = _tiers_from_options(opts["tiers_file"], opts["mmr"], opts["cum"])
    if opts["leverage"] > tiers[0].max_leverage:
        raise UserError(f"--leverage {opts['leverage']} is above the brackets' maximum {tiers[0].max_leverage}")
    side, entry, stop = opts["side"], opts["entry"], opts["stop"]
    if side == "long" and stop >= entry:
        raise UserError(f"--stop {stop} must be below --entry {entry} for a long")
    if side == "short" and stop <= entry:
        raise UserError(f"--stop {stop} must be above --entry {entry} for a short")
    try:
        plan = TradePlan(
            side=side,
            entry=entry,
            stop=stop,
            leverage=opts["leverage"],
            equity=opts["equity"],
            available=opts["equity"] if opts["available"] is None else opts["available"],
        )
        policy = SizingPolicy(
            risk_per_trade=opts["risk_per_trade"],
            max_leverage=opts["max_leverage"],
            liq_buffer=opts["liq_buffer"],
            taker_fee=opts["taker_fee"],
            entry_fee=opts["maker_fee"] if opts["maker_entry"] else opts["taker_fee"],
            slippage=opts["slippage"],
            funding_rate=opts["funding_rate"],
            funding_intervals=opts["funding_intervals"],
            max_notional=opts["max_notional"],
        )
        rules = MarketRules(
            step=opts["step"],
            tick=opts["tick"],
            min_qty=opts["min_qty"],
            max_qty=opts["max_qty"],
            min_notional=opts["min_notional"],
        )
        report = size(plan, rules, policy, tiers, qty=opts["qty"])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    max_lev = max_leverage_for_stop(plan, report.qty, policy, tiers)
    checked = opts["qty"] is not None
    noise = _market_noise(report, opts)
    if opts["as_json"]:
        click.echo(json.dumps(sizing_json(report, max_lev, checked) | ({"market_noise": noise} if noise else {}),
                              indent=2))  # fmt: skip
    else:
        _print_sizing(report, max_lev, checked, noise)
    if not report.accepted:
        ctx.exit(EXIT_REJECT)


def _market_noise(report: SizingReport, opts: dict[str, Any]) -> dict[str, Any] | None:
    """With --vol-annual: the two early-warning checks on this plan (botkit.guards.market_risk), as warnings."""
    from botkit.guards.market_risk import SECONDS_A_YEAR, liq_within_sigma, reach, stop_inside_noise

    plan = report.plan
    if opts["vol_annual"] is None or plan.stop is None:
        return None
    sigma = float(opts["vol_annual"]) / math.sqrt(SECONDS_A_YEAR)  # per √second
    horizon, interval = float(opts["holding_seconds"]), float(opts["funding_interval_seconds"])
    liq = report.planning_liquidation_price
    found = [stop_inside_noise(plan.entry, plan.stop, sigma, horizon, float(opts["noise_k"]))]
    if liq is not None:
        found.append(liq_within_sigma(plan.entry, liq, sigma, interval, float(opts["liq_sigma_n"])))
    return {
        "sigma_per_sqrt_second": f"{sigma:.6g}",
        "stop_distance": f"{float(abs(plan.entry - plan.stop) / plan.entry):.4%}",
        "noise": f"{reach(sigma, horizon, float(opts['noise_k'])):.4%}",
        "liquidation_distance": None if liq is None else f"{float(abs(plan.entry - liq) / plan.entry):.4%}",
        "liquidation_reach": f"{reach(sigma, interval, float(opts['liq_sigma_n'])):.4%}",
        "warnings": [str(f) for f in found if f is not None],
    }


def _tiers_from_options(tiers_file: Path | None, mmr: Decimal | None, cum: Decimal) -> tuple[Tier, ...]:
    if (tiers_file is None) == (mmr is None):
        raise UserError("give either --tiers FILE or --mmr (with optional --cum), not both or neither")
    if mmr is not None:
        if mmr >= 1:
            raise UserError(f"--mmr {mmr} must be below 1")
        return (Tier(Decimal(0), UNBOUNDED_NOTIONAL, mmr, cum, 125),)
    assert tiers_file is not None
    try:
        data = json.loads(tiers_file.read_text(encoding="utf-8"), parse_float=Decimal)
    except OSError as exc:
        raise UserError(f"--tiers {tiers_file}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"--tiers {tiers_file}: not valid JSON: {exc}") from None
    if isinstance(data, dict):  # fetch_leverage_tiers() shape: {symbol: rows}
        if len(data) != 1:
            raise UserError(f"--tiers {tiers_file}: holds {len(data)} symbols; keep exactly one")
        data = next(iter(data.values()))
    if not isinstance(data, list):
        raise UserError(f"--tiers {tiers_file}: expected a list of ccxt leverage-tier rows")
    try:
        return tiers_from_ccxt(data)
    except TierError as exc:
        raise UserError(f"--tiers {tiers_file}: {exc}") from None


def _s(value: Decimal | None) -> str | None:
    return None if value is None else plain(value)


def sizing_json(report: SizingReport, max_lev: int | None, checked: bool) -> dict[str, Any]:
    loss = report.stop_loss
    return {
        "qty": _s(report.qty),
        "notional": _s(report.notional),
        "initial_margin": _s(report.initial_margin),
        "liquidation_price": _s(report.liquidation_price),
        "planning_liquidation_price": _s(report.planning_liquidation_price),
        "stop_to_liquidation": _s(_stop_distance(report)),
        "loss_at_stop": _s(loss.total if loss else None),
        "loss_breakdown": None
        if loss is None
        else {k: _s(getattr(loss, k)) for k in ("price_loss", "entry_fee", "exit_fee", "slippage", "funding")},
        "risk_budget": _s(report.risk_budget),
        "max_leverage_for_stop": max_lev,
        "checked": "given" if checked else "largest_safe",
        "verdict": "accept" if report.accepted else "reject",
        "reasons": [str(v.code) for v in report.violations],
        "details": [str(v) for v in report.violations],
    }


def _stop_distance(report: SizingReport) -> Decimal | None:
    """How far the planning liquidation price sits beyond the stop (None: cannot be liquidated)."""
    liq, stop = report.planning_liquidation_price, report.plan.stop
    if liq is None or stop is None:
        return None
    return stop - liq if report.plan.side == "long" else liq - stop


def _print_sizing(report: SizingReport, max_lev: int | None, checked: bool, noise: dict[str, Any] | None) -> None:
    plan = report.plan
    if checked:
        title = f"{plan.side} {report.qty} @ {plan.entry}, stop {plan.stop}, {plan.leverage}x"
    elif report.accepted:
        title = f"largest safe {plan.side} @ {plan.entry}, stop {plan.stop}, {plan.leverage}x"
    else:
        title = f"no safe {plan.side} size @ {plan.entry}; the smallest legal order is shown"
    table = Table(title=title, show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    loss = report.stop_loss
    distance = _stop_distance(report)
    rows = [
        ("quantity", report.qty),
        ("notional", report.notional),
        ("initial margin", report.initial_margin),
        ("liquidation price (exchange)", report.liquidation_price or "none (cannot be liquidated)"),
        ("liquidation price (planning)", report.planning_liquidation_price or "none"),
        ("stop to planning liquidation", "-" if distance is None else distance),
        ("loss at stop", "-" if loss is None else f"{_s(loss.total)} (budget {_s(report.risk_budget)})"),
        ("largest leverage keeping the stop clear", "none" if max_lev is None else f"{max_lev}x"),
    ]
    if noise is not None:
        rows += [("stop distance / noise over the horizon", f"{noise['stop_distance']} / {noise['noise']}"),
                 ("liquidation distance / reach in a funding interval",
                  f"{noise['liquidation_distance'] or '-'} / {noise['liquidation_reach']}")]  # fmt: skip
    for name, value in rows:
        table.add_row(name, _s(value) if isinstance(value, Decimal) else str(value))
    verdict = "[green]ACCEPT[/green]" if report.accepted else "[red]REJECT[/red]"
    table.add_row("verdict", verdict)
    for violation in report.violations:
        table.add_row("", str(violation))
    for warning in noise["warnings"] if noise else []:
        table.add_row("warning", warning)
    Console().print(table)


# ----------------------------------------------------------------------------------------- emulate


@cli.command("emulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0 picks a free port.")
@click.option("--scenario", type=click.Choice(sorted(SCENARIOS)), default="calm", show_default=True)
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same market.")
@click.option("--speed", type=POSITIVE, default=Decimal(1), show_default=True, help="Simulated seconds per second.")
@click.option("--funding-interval", type=POSITIVE, default=Decimal(8 * 3600), show_default=True, help="Seconds.")
@click.option(
    "--step-ms",
    type=click.IntRange(1, 60_000),
    default=100,
    show_default=True,
    help="Simulated milliseconds per market step (larger steps let high speeds keep up).",
)
@click.option("--balance", type=POSITIVE, default=Decimal(10_000), show_default=True, help="USDT in the account.")
@click.option(
    "--history-days",
    type=click.IntRange(0, 366),
    default=30,
    show_default=True,
    help="Days of market history (candles, trades, funding) before the start, generated from the seed.",
)
@click.option("--extra-symbols", type=click.IntRange(0, 200), default=0, show_default=True,
              help="Synthetic perpetuals besides BTCUSDT and ETHUSDT (S01USDT, ...), for many-symbol runs.")
@click.option("--faults", "faults_file", type=click.Path(path_type=Path), help="Fault plan, TOML or JSON.")
@click.option("--api-key", envvar="BOTKIT_EMULATE_API_KEY", help="Use this API key instead of a generated one.")
@click.option("--api-secret", envvar="BOTKIT_EMULATE_API_SECRET", help="Use this secret instead of a generated one.")
def emulate(
    host: str, port: int, scenario: str, seed: int, speed: Decimal, funding_interval: Decimal, step_ms: int,
    balance: Decimal, history_days: int, extra_symbols: int, faults_file: Path | None, api_key: str | None,
    api_secret: str | None,
) -> None:  # fmt: skip
    """Serve the Binance USDⓈ-M exchange emulator until stopped (Ctrl-C)."""
    try:
        plan = load_plan(faults_file) if faults_file else None
    except FaultPlanError as exc:
        raise UserError(str(exc)) from None
    settings = EmulatorSettings(
        seed=seed, scenario=scenario, speed=float(speed), funding_interval_s=float(funding_interval), step_ms=step_ms,
        balance=balance, api_key=api_key, api_secret=api_secret, history_days=history_days,
        extra_symbols=extra_symbols,
    )  # fmt: skip
    asyncio.run(_serve_emulator(settings, plan, host, port))


async def _serve_emulator(settings: EmulatorSettings, plan: FaultPlan | None, host: str, port: int) -> None:
    emulator = Emulator(settings, plan)
    try:
        url = await emulator.start(host, port)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    click.echo(
        f"botkit emulator on {url} (scenario {settings.scenario}, seed {settings.seed}, speed {settings.speed}x)"
    )
    click.echo(f"  api key:    {emulator.api_key}")
    click.echo(f"  api secret: {emulator.api_secret}")
    click.echo(f"  admin API:  {url}/_emu/state")
    click.echo("  ccxt:       ex = ccxt.binanceusdm({'apiKey': KEY, 'secret': SECRET})")
    click.echo(f"              botkit.venue.endpoints.point_ccxt_at(ex, '{url}')")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await emulator.stop()
        click.echo("botkit emulator stopped")


def one_param(spec: str, option: str) -> tuple[str, Any]:
    """`name=value` (the value read as TOML: numbers stay numbers, a bare word is a string)."""
    from botkit.backtest.sweep import parse_values

    name, values = parse_values(spec, option)
    if len(values) != 1:
        raise UserError(f"{option} {spec!r}: one value" + (" (a sweep is --grid)" if option == "--set" else ""))
    return name, values[0]


@cli.command("strategies")
def strategies_command() -> None:
    """List the strategies --strategy NAME finds (botkit's and ./strategies/), with their parameters."""
    from botkit.runtime.strategy import available

    out = Console(highlight=False, soft_wrap=True)
    for name, cls, problem in available():
        if cls is None:
            out.print(f"{name}: does not load: {problem}", markup=False)
            continue
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().split("\n\n")[0]
        out.print(f"{name} ({cls.__name__}, bars of {cls.timeframe:g} s): {' '.join(doc.split())}", markup=False)
        for field, info in cls.Params.model_fields.items():
            default = "required" if info.is_required() else f"default {info.get_default()}"
            what = f": {info.description}" if info.description else ""
            out.print(f"    --param {field}=...  ({_type_name(info.annotation)}, {default}){what}", markup=False)
    out.print("\nRun one: botkit run --strategy NAME [--param name=value ...]; a file: --strategy path/file.py:Class",
              markup=False)  # fmt: skip


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


# ------------------------------------------------------------------------------------------ alerts


@cli.group("alerts")
def alerts_group() -> None:
    """Alerts to a person (the config's [alerts])."""


@alerts_group.command("test")
@click.option("--config", "config_file", type=click.Path(path_type=Path), required=True, help="The bot's config.")
def alerts_test(config_file: Path) -> int:
    """Send one test message to each destination in [alerts]; exit 1 if any did not take it."""
    from botkit.operate.alerts import send_test

    config = load_config(config_file, keys=False)
    if not any((config.alerts.webhook_url, config.alerts.slack_url, config.alerts.discord_url,
                config.alerts.telegram_token)):  # fmt: skip
        raise UserError(f"{config_file}: [alerts] names no destination (webhook_url, slack_url, discord_url, "
                        "telegram_token)")  # fmt: skip
    results = asyncio.run(send_test(config.alerts, config.journal.path.stem))
    out = Console(highlight=False, soft_wrap=True)
    for kind, error in results:
        out.print(f"{kind}: " + ("delivered" if error is None else f"failed: {error}"), markup=False)
    return 0 if all(error is None for _, error in results) else 1


# --------------------------------------------------------------------------------------------- run

DEMO_JOURNAL = Path("botkit-demo.sqlite")
DEMO_CONFIG = Path("config/demo.toml")  # what the demo does, visible and editable (built-in defaults without it)


@cli.command("run")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="Config file (default: the demo).")
@click.option("--strategy", "strategy_spec",
              help="A name in strategies/, module:Class or file.py[:Class] (overrides the config).")  # fmt: skip
@click.option("--duration", type=POSITIVE, help="Seconds to run (default: 60 for the demo, else until stopped).")
@click.option("--live", is_flag=True, help="Required to run a config whose mode is 'live'.")
@click.option("--offline", is_flag=True,
              help="Mode paper: take market data from an in-process emulator instead of the exchange.")  # fmt: skip
@click.option("--scenario", type=click.Choice(sorted(SCENARIOS)), default="demo", show_default=True,
              help="Market of the in-process emulator (demo, or paper --offline); its events are placed to fit "
                   "--duration.")  # fmt: skip
@click.option("--seed", type=int, default=1, show_default=True, help="The in-process emulator's market: same seed, "
              "same prices.")  # fmt: skip
@click.option("--speed", type=POSITIVE, default=Decimal(10), show_default=True,
              help="Simulated seconds per second of the in-process emulator (demo, or paper --offline).")  # fmt: skip
@click.option("--record", "record_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Record the market data the bot sees into this (new) folder, for a replay.")  # fmt: skip
@click.option("--param", "param_specs", multiple=True, metavar="NAME=VALUE",
              help="A strategy parameter (over the config's [params]); botkit strategies lists them.")  # fmt: skip
def run_command(config_file: Path | None, strategy_spec: str | None, duration: Decimal | None, live: bool,
                offline: bool, scenario: str, seed: int, speed: Decimal, record_dir: Path | None,
                param_specs: tuple[str, ...]) -> int:  # fmt: skip
    """Run a strategy. With no options: the offline demo (config/demo.toml's strategy on an in-process emulator
    for 60 s, in a market that tests its guardrails)."""
    from botkit.runtime.strategy import load_strategy, make_strategy

    demo = config_file is None
    if demo and DEMO_CONFIG.is_file():
        config_file = DEMO_CONFIG
    config = load_config(config_file)
    if demo:
        config = config.model_copy(update={"journal": config.journal.model_copy(update={"path": DEMO_JOURNAL})})
    if strategy_spec:
        config = config.model_copy(update={"strategy": strategy_spec})
    if config.mode == "live":
        if not live:
            raise UserError("mode 'live' trades real money: add --live to confirm")
        gaps = disabled_guardrails(config)
        if gaps:
            raise UserError("refusing a live run with guardrails disabled: " + "; ".join(gaps))
    if offline and config.mode != "paper":
        raise UserError(f"--offline is for mode 'paper' (this config's mode is {config.mode!r})")
    params = dict(config.params) | dict(one_param(spec, "--param") for spec in param_specs)
    strategy = make_strategy(load_strategy(config.strategy), params)
    seconds = float(duration) if duration is not None else (60.0 if demo else None)
    in_process = config.exchange.emulator_url is None and (config.mode == "demo" or offline)
    tape = None
    if record_dir is not None:
        from botkit.runtime.tape import Tape, TapeError

        try:
            tape = Tape(record_dir)
        except TapeError as exc:
            raise UserError(f"--record: {exc}") from None
    market = None
    if in_process:
        market = _fitted_market(config, scenario, seed, float(speed), seconds)
    return asyncio.run(_run_bot(config, strategy, seconds, market, tape))


def _fitted_market(config: Any, scenario: str, seed: int, speed: float, seconds: float | None) -> EmulatorSettings:
    """The in-process emulator's settings: the scenario's events placed within the run (a run without an end
    is taken as 10 minutes long), and for funding-squeeze, fundings every quarter of it."""
    run_s = seconds if seconds is not None else 600.0
    fitted = SCENARIOS[scenario].fitted(run_s, speed, float(config.killswitch.stale_feed_seconds))
    funding_s = run_s * speed / 4 if fitted.funding_pinned else 8 * 3600.0
    return EmulatorSettings(scenario=fitted, seed=seed, speed=speed, funding_interval_s=funding_s)


SET_ASIDE_KEPT = 5  # journals set aside by earlier runs that are kept (the oldest beyond go)
JOURNAL_PARTS = ("-wal", "-shm", ".log", "")  # the WAL too: after a kill it may hold committed rows


def _set_aside(journal: Path, out: Console) -> None:
    """An in-process emulator, or a paper account, is new every run: an earlier journal describes orders
    and positions that no longer exist, so it is kept under another name instead of being reconciled (the
    last SET_ASIDE_KEPT of them, each with its WAL, shared-memory and log files)."""
    if journal.exists():
        at = datetime.now()
        old = journal.with_name(f"{journal.stem}-{at:%Y%m%d-%H%M%S-%f}{journal.suffix}")
        while old.exists():  # the same microsecond: the next one (the names sort in time order)
            at += timedelta(microseconds=1)
            old = journal.with_name(f"{journal.stem}-{at:%Y%m%d-%H%M%S-%f}{journal.suffix}")
        for suffix in JOURNAL_PARTS:
            part = journal.with_name(journal.name + suffix)
            if part.exists():
                part.rename(old.with_name(old.name + suffix))
        out.print(f"the previous journal is now {old}")
    earlier = sorted(journal.parent.glob(f"{journal.stem}-[0-9]*-[0-9]*-[0-9]*{journal.suffix}"))
    for gone in earlier[:-SET_ASIDE_KEPT]:
        for suffix in JOURNAL_PARTS:
            with contextlib.suppress(FileNotFoundError):
                gone.with_name(gone.name + suffix).unlink()


async def _run_bot(config: Any, strategy: Any, seconds: float | None, market: EmulatorSettings | None,
                   tape: Any = None) -> int:  # fmt: skip
    """`market`: the in-process emulator to run on (None: the config's exchange or emulator)."""
    from botkit.log import configure_logging
    from botkit.operate import operating
    from botkit.runtime.bot import Bot
    from botkit.runtime.journal import JournalError, is_locked
    from botkit.runtime.panel import status_line, status_panel, summary_lines, summary_table
    from botkit.sim.server import running_emulator

    journal = config.journal.path
    if not journal.parent.is_dir():
        raise UserError(f"journal.path {journal}: the folder {journal.parent} does not exist")
    if journal.is_dir():
        raise UserError(f"journal.path {journal}: is a folder, not a journal file")
    if is_locked(journal):
        raise UserError(f"journal.path {journal}: another botkit is running on it (one bot per journal)")
    out = Console(highlight=False)
    panel = out.is_terminal
    if not panel:  # a pipe or a file: whole lines, never wrapped at some width
        out = Console(highlight=False, soft_wrap=True, no_color=True)
    log_file = None
    if panel:  # the panel owns the terminal: logs go to a file beside the journal
        log_file = config.journal.path.with_name(config.journal.path.name + ".log").open("a", encoding="utf-8")
    secrets: list[Any] = [s for s in (config.exchange.api_key, config.exchange.api_secret) if s is not None]
    secrets += config.alerts.secrets()
    configure_logging(config.logging.level, config.logging.format, secrets, stream=log_file)
    async with contextlib.AsyncExitStack() as stack:
        url = str(config.exchange.emulator_url) if config.exchange.emulator_url else None
        if market is not None:
            emu = await stack.enter_async_context(running_emulator(market))
            keys = {"api_key": SecretStr(emu.api_key), "api_secret": SecretStr(emu.api_secret)}
            config = config.model_copy(update={"exchange": config.exchange.model_copy(update=keys)})
            url = emu.url
            name = getattr(market.scenario, "name", market.scenario)
            out.print(f"botkit {config.mode}: {type(strategy).__name__} on the in-process emulator at {url} "
                      f"(scenario {name}, seed {market.seed}, {market.speed:g}x), {config.symbols}")  # fmt: skip
        if market is not None or config.mode == "paper":
            _set_aside(config.journal.path, out)
        try:
            bot = Bot(config, strategy, emulator_url=url, tape=tape)
        except JournalError as exc:
            raise UserError(str(exc)) from None
        if log_file is not None:
            bot.log_path = log_file.name
        try:
            ops = await stack.enter_async_context(operating(bot))
        except OSError as exc:
            bot.journal.close()
            raise UserError(f"runtime.metrics_port / runtime.status_port: {exc}") from None
        for link, what in ((ops.status_url, "status page"), (ops.metrics_url, "metrics")):
            if link is not None:
                out.print(f"{what}: {link}")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, bot.stop, f"signal {signal.Signals(sig).name}")
        runner = asyncio.create_task(bot.run(seconds))
        started = time.monotonic()
        if panel:
            with Live(status_panel(bot.status(), 0), console=out, refresh_per_second=4, transient=False) as live:
                while not runner.done():
                    await asyncio.wait([runner], timeout=0.5)
                    live.update(status_panel(bot.status(), time.monotonic() - started))
        else:
            while not runner.done():
                await asyncio.wait([runner], timeout=10)
                if not runner.done():
                    out.print(status_line(bot.status(), time.monotonic() - started))
        summary = runner.result()
    if log_file is not None:
        log_file.close()
    if panel:
        out.print(summary_table(summary))
    else:
        out.print(summary_lines(summary), markup=False)
    if tape is not None:
        out.print(f"recording: {tape.path} ({tape.entries} entries); replay it with botkit replay {summary.journal} "
                  f"--recording {tape.path.parent}")  # fmt: skip
    if summary.crashed:
        Console(stderr=True).print(f"botkit: error: {summary.crashed}", markup=False)
        return 1
    return 0


# ------------------------------------------------------------------------------------------- check


@cli.command("check")
@click.option("--config", "config_file", type=click.Path(path_type=Path), required=True, help="The config to check.")
@click.option("--stop-distance", type=POSITIVE, default=Decimal("0.01"), show_default=True,
              help="Reference stop distance (fraction of the mark) for the sizing-vs-minimums check.")  # fmt: skip
def check_command(config_file: Path, stop_distance: Decimal) -> int:
    """Pre-flight before a testnet or live run: venue, clock, key and permissions, margin settings, tiers,
    sizing against the exchange's minimums, guardrails. Exit code 1 on any blocking finding."""
    from botkit.log import configure_logging
    from botkit.preflight import guardrail_table, preflight

    config = load_config(config_file)
    if stop_distance >= 1:
        raise UserError(f"--stop-distance {stop_distance}: a fraction of the mark below 1, e.g. 0.01")
    secrets = [s for s in (config.exchange.api_key, config.exchange.api_secret) if s is not None]
    configure_logging("error", config.logging.format, secrets)
    try:
        findings = asyncio.run(preflight(config, stop_distance=stop_distance))
    except Exception as exc:  # one line, never a traceback; the findings so far are lost with it
        raise UserError(f"check could not finish: {type(exc).__name__}: {exc}") from None
    out = Console(highlight=False)
    styles = {"ok": "green", "info": "cyan", "warn": "bold yellow", "block": "bold red"}
    table = Table(title=f"botkit check: {config_file}", show_lines=False)
    for column in ("", "check", "finding"):
        table.add_column(column, overflow="fold")
    for f in findings:
        table.add_row(f"[{styles[f.level]}]{f.level.upper()}[/]", f.check, f.detail)
    out.print(table)
    guardrails = Table(title="effective guardrail settings")
    guardrails.add_column("setting")
    guardrails.add_column("value")
    for name, value in guardrail_table(config):
        guardrails.add_row(name, value)
    out.print(guardrails)
    blocking = [f for f in findings if f.level == "block"]
    if blocking:
        out.print(f"[bold red]{len(blocking)} blocking finding(s): do not start this bot until they are fixed[/]")
        return 1
    warnings = sum(f.level == "warn" for f in findings)
    out.print(f"[green]ready[/] ({warnings} warning(s))")
    return 0


# ------------------------------------------------------------------------------------------ health


@cli.command("health")
@click.argument("journal", type=click.Path(path_type=Path))
@click.option("--max-age", type=POSITIVE, default=Decimal(30), show_default=True,
              help="Seconds: a running bot journals a snapshot every runtime.account_seconds.")  # fmt: skip
def health_command(journal: Path, max_age: Decimal) -> int:
    """Container health check: exit 0 while the bot behind JOURNAL is running and writing to it."""
    from botkit.runtime.journal import JournalError, read_events

    try:
        newest = next(read_events(journal, last=True), None)
    except JournalError as exc:
        raise UserError(str(exc)) from None
    if newest is None:
        click.echo(f"unhealthy: {journal} is empty")
        return 1
    age = time.time() - newest.wall_ms / 1000
    if newest.kind == "session.stopped":
        click.echo(f"unhealthy: the bot stopped {age:.0f} s ago ({newest.data.get('reason')})")
        return 1
    if age > float(max_age):
        click.echo(f"unhealthy: nothing journalled for {age:.0f} s (last: {newest.kind})")
        return 1
    click.echo(f"healthy: last event {newest.kind} {age:.1f} s ago")
    return 0


# ------------------------------------------------------------------------------------------ report


@cli.command("report")
@click.argument("journal", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
@click.option("--html", "html_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write a self-contained HTML page with charts to this file.")  # fmt: skip
def report_command(journal: Path, as_json: bool, html_file: Path | None) -> None:
    """The post-incident report of a journal: timeline, feed gaps, pricing, rejections, orders, fills,
    funding, PnL and liquidation distance."""
    from botkit.report import build_report, render_text
    from botkit.report_html import render_html
    from botkit.runtime.journal import JournalError

    try:
        report = build_report(journal)
    except JournalError as exc:
        raise UserError(str(exc)) from None
    if html_file is not None:
        try:
            html_file.write_text(render_html(report), encoding="utf-8", errors="replace")  # a lone surrogate: "?"
        except OSError as exc:
            raise UserError(f"--html {html_file}: cannot write it: {exc.strerror}") from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(_printable(render_text(report)))
        if html_file is not None:
            click.echo(f"\nwrote {html_file}")


# ------------------------------------------------------------------------------- history and backtests


def _moment_ms(value: str | None, option: str) -> int | None:
    """A UTC date or date-time (2021-11-17, 2021-11-17T06:00) as epoch milliseconds."""
    if value is None:
        return None
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"{option} {value!r}: expected a UTC date like 2021-11-17 or 2021-11-17T06:00") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


@cli.group("data")
def data_group() -> None:
    """Market history for backtests."""


@data_group.command("download")
@click.option("--symbol", required=True, help="Unified symbol, e.g. XRP/USDT:USDT.")
@click.option("--from", "start", required=True, help="First day (UTC), e.g. 2021-11-01.")
@click.option("--to", "end", required=True, help="End (UTC, not included), e.g. 2021-12-01.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("history"),
              show_default=True, help="History folder; the symbol's files go to <out>/<market id>/.")  # fmt: skip
@click.option("--interval", default="1m", show_default=True, help="Candle interval.")
@click.option("--kinds", default="ohlcv,mark,index,funding", show_default=True,
              help="What to fetch: ohlcv (trade price), mark, index, funding.")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["parquet", "feather"]), default="parquet", show_default=True)
@click.option("--exchange", "exchange_id", default="binanceusdm", show_default=True, help="ccxt exchange id.")
@click.option("--emulator", "emulator_url", help="Fetch from a botkit emulator at this URL instead.")
def data_download(symbol: str, start: str, end: str, out_dir: Path, interval: str, kinds: str, fmt: str,
                  exchange_id: str, emulator_url: str | None) -> None:  # fmt: skip
    """Fetch candles (trade, mark, index price) and funding rates through ccxt; resumes where it stopped."""
    from botkit.backtest.runner import market_id

    start_ms, end_ms = _moment_ms(start, "--from"), _moment_ms(end, "--to")
    assert start_ms is not None and end_ms is not None
    wanted = tuple(k.strip() for k in kinds.split(",") if k.strip())
    _fetch_history(symbol, start_ms, end_ms, out_dir / market_id(symbol), interval, wanted, fmt, exchange_id,
                   emulator_url)  # fmt: skip


def _fetch_history(symbol: str, start_ms: int, end_ms: int, folder: Path, interval: str, kinds: tuple[str, ...],
                   fmt: str, exchange_id: str, emulator_url: str | None) -> None:  # fmt: skip
    """Download one symbol's history into its folder (resuming), and say what is there."""
    import ccxt.async_support as ccxt_async

    from botkit.data.download import download
    from botkit.data.store import DataError
    from botkit.venue.ccxt_venue import point_ccxt_at

    exchange_class = getattr(ccxt_async, exchange_id, None)
    if not isinstance(exchange_class, type):
        raise UserError(f"--exchange {exchange_id!r}: not an exchange ccxt knows")

    def page(kind: str, pages: int) -> None:
        click.echo(f"  {kind}: page {pages}", err=True)

    async def fetch() -> list[Any]:
        exchange = exchange_class({"enableRateLimit": True, "options": {"defaultType": "swap"}})
        if emulator_url is not None:
            point_ccxt_at(exchange, emulator_url)
        try:
            await exchange.load_markets()
            if symbol not in exchange.markets:
                raise UserError(f"--symbol {symbol}: {exchange_id} does not list it")
            return await download(exchange, symbol, start_ms, end_ms, folder, interval=interval, kinds=kinds,
                                  fmt=fmt, on_page=page)  # fmt: skip
        finally:
            await exchange.close()

    try:
        fetched = asyncio.run(fetch())
    except (DataError, UserError) as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:  # the exchange unreachable, say: one line; what was fetched stays for a resume
        raise UserError(f"download stopped ({type(exc).__name__}: {str(exc)[:200]}); run it again to resume") from None
    for f in fetched:
        resumed = f" (resumed at {f.resumed_from})" if f.resumed_from is not None else ""
        gaps = f", {len(f.gaps)} gap(s): " + ", ".join(f"{a}..{b}" for a, b in f.gaps[:5]) if f.gaps else ""
        click.echo(f"{f.kind:<8} {f.rows} rows in {f.path}{resumed}, {f.duplicates} duplicate(s) dropped{gaps}")


DOWNLOADS = Path("history")  # where `botkit backtest --symbol --from --to` keeps what it downloads


@cli.command("backtest")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=Path("config/backtest.toml"),
              show_default=True, help="The bot's config ([backtest] and [paper] set the replay).")  # fmt: skip
@click.option("--strategy", "strategy_spec", help="A name in strategies/ or module:Class (overrides the config).")
@click.option("--data", "data_dir", type=click.Path(path_type=Path, file_okay=False), help="History folder.")
@click.option("--symbol", "symbols", multiple=True, help="Symbol(s) to replay (default: the config's).")
@click.option("--from", "start", help="Replay from this UTC date or time.")
@click.option("--to", "end", help="Replay up to this UTC date or time (not included).")
@click.option("--interval", help="Candle interval to replay (default: [backtest] interval, else the finest).")
@click.option("--journal", "journal_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Journal of the run (default: beside journal.path, named after the time).")  # fmt: skip
@click.option("--json", "json_file", type=click.Path(path_type=Path, dir_okay=False), help="Write the results here.")
@click.option("--html", "html_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the results as a page with charts here.")  # fmt: skip
@click.option("--set", "sets", multiple=True, help="A strategy parameter, name=value (over the config's).")
@click.option("--grid", "grids", multiple=True, help="Sweep: name=v1,v2,... (the cross product of all --grid).")
@click.option("--grid-file", type=click.Path(path_type=Path, dir_okay=False), help="Sweep: [[set]] tables (TOML).")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Sweep processes.")
@click.option("--recording", "recording", type=click.Path(path_type=Path, file_okay=False),
              help="Replay a session recorded with `botkit run --record` instead of candle history.")  # fmt: skip
@click.option("--exchange", "exchange_id", default="binanceusdm", show_default=True,
              help="Without a history folder: download --symbol's --from/--to history from this exchange first.")
@click.option("--emulator", "emulator_url", help="... or from a botkit emulator at this URL.")
@click.option("--stress", type=click.Choice(["crowded"]), help="Replay under stress: crowded puts a crowd of "
              "leveraged longs into the history, liquidated into the price (the crowded-squeeze model).")
@click.option("--stress-seed", type=int, help="The stress crowd's seed (default: [backtest] stress_seed, 1).")
def backtest_command(config_file: Path, strategy_spec: str | None, data_dir: Path | None, symbols: tuple[str, ...],
                     start: str | None, end: str | None, interval: str | None, journal_file: Path | None,
                     json_file: Path | None, html_file: Path | None, sets: tuple[str, ...], grids: tuple[str, ...],
                     grid_file: Path | None, workers: int, recording: Path | None, exchange_id: str,
                     emulator_url: str | None, stress: str | None, stress_seed: int | None) -> int:  # fmt: skip
    """Replay history through the strategy, gate, kill switch, liquidation guard, exchange-held stops and
    journal on a simulated account; print the results and the report of the run."""
    from botkit.backtest.runner import market_id
    from botkit.backtest.sweep import Job, grid, run_sweep
    from botkit.data.store import DataError, interval_ms
    from botkit.log import configure_logging
    from botkit.report import build_report, render_text

    config = load_config(config_file, keys=False)
    updates: dict[str, Any] = {}
    if strategy_spec:
        updates["strategy"] = strategy_spec
    if symbols:
        updates["symbols"] = list(symbols)
    params = dict(config.params)
    for spec in sets:
        name, value = one_param(spec, "--set")
        params[name] = value
    if stress is not None or stress_seed is not None:
        if recording is not None:
            raise UserError("--stress replays candle history; a recording is replayed as it was")
        updates["backtest"] = config.backtest.model_dump(mode="python") | (
            {"stress": stress} if stress is not None else {}) | (
            {"stress_seed": stress_seed} if stress_seed is not None else {})  # fmt: skip
    config = load_config_with(config, updates | {"params": params})
    start_ms, end_ms = _moment_ms(start, "--from"), _moment_ms(end, "--to")
    if interval is not None:
        try:
            interval_ms(interval)
        except DataError as exc:
            raise UserError(f"--interval: {exc}") from None
    stem = journal_file or config.journal.path.with_name(
        f"{config.journal.path.stem}-{time.strftime('%Y%m%d-%H%M%S')}{config.journal.path.suffix}"
    )
    if not stem.parent.is_dir():
        raise UserError(f"journal {stem}: the folder {stem.parent} does not exist")
    configure_logging("error", "console", [])
    if recording is None and data_dir is None and config.backtest.data is None:
        if start_ms is None or end_ms is None or not symbols:
            raise UserError("no history: give --data DIR (or [backtest] data), or --symbol, --from and --to to "
                            "download it first")  # fmt: skip
        data_dir = DOWNLOADS
        for symbol in config.symbols:
            _fetch_history(symbol, start_ms, end_ms, data_dir / market_id(symbol), interval or "1m",
                           ("ohlcv", "mark", "index", "funding"), "parquet", exchange_id, emulator_url)  # fmt: skip
    if recording is not None:
        replayed = _replay(config, recording, stem)
        click.echo(_printable(render_text(build_report(stem))))
        click.echo(f"\nreplayed {replayed.entries} recorded entries of {recording}{_missed(replayed)}")
        click.echo(f"journal: {stem}")
        return 0
    sweep = grid(grids, grid_file)
    if sweep:
        settings = config.model_dump(mode="json")
        jobs = [Job(settings, p, str(stem.with_name(f"{stem.stem}-{n}{stem.suffix}")),
                    str(data_dir) if data_dir else None, interval, start_ms, end_ms)
                for n, p in enumerate(sweep, start=1)]  # fmt: skip
        rows = run_sweep(jobs, workers)
        _print_sweep(rows)
        if json_file is not None:
            json_file.write_text(json.dumps(rows, indent=2), encoding="utf-8")
        return 1 if all("error" in r for r in rows) else 0
    return _backtest_once(config, stem, data_dir, interval, start_ms, end_ms, json_file, html_file)


@cli.command("replay")
@click.argument("journal", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--recording", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The session's recording (botkit run --record).")  # fmt: skip
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="Replay under this config (default: the session's own, from its journal).")  # fmt: skip
@click.option("--out", "out_journal", type=click.Path(path_type=Path, dir_okay=False),
              help="The replay's journal (default: beside the session's, named after the time).")  # fmt: skip
def replay_command(journal: Path, recording: Path, config_file: Path | None, out_journal: Path | None) -> int:
    """Re-run a recorded session's decisions (under another config: what if the guardrails had been set
    otherwise?) and print every verdict that would change."""
    from botkit.backtest.replay import changed_verdicts, decisions
    from botkit.log import configure_logging
    from botkit.runtime.journal import JournalError, read_events

    try:
        started = next(read_events(journal, ["session.started"], last=True), None)
    except JournalError as exc:
        raise UserError(str(exc)) from None
    if started is None:
        raise UserError(f"{journal}: no session in this journal")
    if config_file is not None:
        config = load_config(config_file, keys=False)
    else:
        config = load_config_with(load_config(None, keys=False), {k: v for k, v in started.data["config"].items()
                                                                   if k not in ("exchange", "journal")})  # fmt: skip
    out = out_journal or journal.with_name(f"{journal.stem}-replay-{time.strftime('%Y%m%d-%H%M%S')}{journal.suffix}")
    configure_logging("error", "console", [])
    replayed = _replay(config, recording, out)
    before, after = decisions(journal), decisions(out)
    counts = {kind: sum(1 for k, _ in after if k == kind) for kind in ("intent", "verdict", "fill")}
    click.echo(f"replayed {replayed.entries} recorded entries of {recording}: {counts['intent']} intents, "
               f"{counts['verdict']} verdicts, {counts['fill']} fills{_missed(replayed)}")  # fmt: skip
    if before == after:
        click.echo("every intent, verdict and fill is the same as the session's")
    else:
        changed = changed_verdicts(journal, out)
        click.echo(f"{len(changed)} verdict(s) would change:" if changed else "the verdicts are the same; fills differ")
        for line in changed:
            click.echo(f"  {line}")
    click.echo(f"journal of the replay: {out}")
    return 0


def _replay(config: Any, recording: Path, journal: Path) -> Any:
    """Run one replay of a recording (one line for what cannot be replayed)."""
    from botkit.backtest.replay import Replay
    from botkit.runtime.bot import StartupError
    from botkit.runtime.strategy import load_strategy, make_strategy
    from botkit.runtime.tape import TapeError

    strategy = make_strategy(load_strategy(config.strategy), config.params)
    try:
        return asyncio.run(Replay(config, strategy, recording, journal).run())
    except TapeError as exc:
        raise UserError(str(exc)) from None
    except StartupError as exc:
        raise UserError(f"the replay could not start: {exc}") from None
    except Exception as exc:  # one line; the replay's journal says what happened up to it
        raise UserError(f"the replay failed: {type(exc).__name__}: {exc} (journal {journal})") from None


def _missed(replayed: Any) -> str:
    parts = [f"{n} {what}" for what, n in replayed.missed.items()]
    if replayed.extra:
        parts.append(f"{replayed.extra} call(s) the session did not make (made at the end)")
    return "; the replay could not follow: " + ", ".join(parts) if parts else ""


def load_config_with(config: Any, updates: dict[str, Any]) -> Any:
    """The config with command-line overrides, validated again (a bad --set is one line, not a crash)."""
    from pydantic import ValidationError

    from botkit.config import BotConfig, format_errors

    try:
        return BotConfig(**{**config.model_dump(mode="python"), **updates})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, "command line")) from None


def _backtest_once(config: Any, journal: Path, data_dir: Path | None, interval: str | None, start_ms: int | None,
                   end_ms: int | None, json_file: Path | None, html_file: Path | None) -> int:  # fmt: skip
    from rich.progress import Progress as Bar

    from botkit.backtest.runner import run_backtest
    from botkit.data.store import DataError
    from botkit.report import build_report, render_text
    from botkit.report_html import render_backtest_html
    from botkit.runtime.bot import StartupError
    from botkit.runtime.strategy import load_strategy, make_strategy

    strategy = make_strategy(load_strategy(config.strategy), config.params)
    out = Console(highlight=False)
    try:
        if out.is_terminal:
            with Bar(console=out, transient=True) as bar:
                task = bar.add_task("replaying", total=None)
                results = asyncio.run(run_backtest(
                    config, strategy, journal, data=data_dir, interval=interval, start_ms=start_ms, end_ms=end_ms,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                ))  # fmt: skip
        else:
            results = asyncio.run(run_backtest(config, strategy, journal, data=data_dir, interval=interval,
                                               start_ms=start_ms, end_ms=end_ms))  # fmt: skip
    except DataError as exc:
        raise UserError(str(exc)) from None
    except StartupError as exc:
        raise UserError(f"the backtest could not start: {exc}") from None
    except (ConfigError, UserError):
        raise
    except Exception as exc:  # one line; the journal says what happened up to it
        raise UserError(f"the backtest failed: {type(exc).__name__}: {exc} (journal {journal})") from None
    report = build_report(journal)
    click.echo(_printable(render_text(report)))
    click.echo("")
    click.echo(results.text())
    if json_file is not None:
        json_file.write_text(json.dumps(results.to_json(), indent=2), encoding="utf-8")
        click.echo(f"wrote {json_file}")
    if html_file is not None:
        html_file.write_text(render_backtest_html(results.to_json()), encoding="utf-8", errors="replace")
        click.echo(f"wrote {html_file} (the journal's own report: botkit report {journal} --html FILE)")
    return 0


def _print_sweep(rows: list[dict[str, Any]]) -> None:
    table = Table(title="backtest sweep")
    for column in ("params", "return", "max dd", "Sharpe", "trades", "win rate", "profit factor", "liq", "journal"):
        table.add_column(column, overflow="fold")

    def pct(x: Any) -> str:
        return "n/a" if x is None else f"{x * 100:.2f}%"

    def num(x: Any) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        if "error" in r:
            table.add_row(params, f"[red]{r['error']}[/]", "", "", "", "", "", "", r["journal"])
            continue
        table.add_row(params, pct(r["return"]), pct(r["max_drawdown"]), num(r["sharpe"]), str(r["trades"]),
                      pct(r["win_rate"]), num(r["profit_factor"]), str(r["liquidations"]), r["journal"])  # fmt: skip
    Console(highlight=False).print(table)


# -------------------------------------------------------------------------------------------- main


def _printable(text: str) -> str:
    """Text any terminal can print: what a journal holds may include lone surrogates (written as JSON escapes)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every user-caused error into one line and exit code 2."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    args = sys.argv[1:] if argv is None else argv
    if any("\x00" in arg for arg in args):  # no file or value has one; click's path checks would raise on it
        err.print("botkit: error: an argument contains a NUL byte", markup=False)
        return EXIT_USAGE
    try:
        code = cli.main(args=args, prog_name="botkit", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        return EXIT_USAGE
    except click.UsageError as exc:
        err.print(f"botkit: error: {exc.format_message()}", markup=False)
        return EXIT_USAGE
    except (UserError, click.BadParameter) as exc:
        err.print(f"botkit: error: {exc}", markup=False)
        return EXIT_USAGE
    except ConfigError as exc:
        for line in exc.problems:
            err.print(f"botkit: config error: {line}", markup=False)
        return EXIT_USAGE
    except click.Abort:
        err.print("botkit: aborted", markup=False)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
