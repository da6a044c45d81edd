"""The bot's configuration: a TOML file, overridden by BOTKIT_* environment variables (nested with __).

Every model forbids unknown keys so a typo is an error, not a silently ignored setting. Validation
errors are turned into one line per problem by `format_errors`; `load_config` raises `ConfigError`
carrying those lines, never a pydantic traceback.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

Fraction = Annotated[Decimal, Field(ge=0, lt=1)]
PositiveDecimal = Annotated[Decimal, Field(gt=0)]
SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]+/[A-Z0-9]+:[A-Z0-9]+$")


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` holds one readable line per issue."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExchangeConfig(Section):
    id: str = Field("binanceusdm", description="ccxt exchange id")
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    api_key_file: Path | None = Field(None, description="file holding the API key (e.g. a container secret)")
    api_secret_file: Path | None = None
    emulator_url: AnyHttpUrl | None = Field(None, description="base URL of a botkit emulator to trade on")
    timeout_ms: int = Field(10_000, ge=100, le=120_000)

    @model_validator(mode="before")
    @classmethod
    def read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in ("api_key", "api_secret"):
            path = data.get(f"{name}_file")
            if path is None:
                continue
            if data.get(name) is not None:
                raise ValueError(f"set {name} or {name}_file, not both")
            try:
                value = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"cannot read {name}_file {str(path)!r}: {exc.strerror}") from None
            if not value:
                raise ValueError(f"{name}_file {str(path)!r} is empty")
            data[name] = value
        return data


class VenueConfig(Section):
    """How botkit talks to the exchange: client ids, retries with backoff, client-side rate limits."""

    client_id_prefix: str = Field("bk", pattern=r"^[A-Za-z0-9]{1,8}$", description="marks this bot's orders")
    retry_base_s: float = Field(0.2, gt=0, le=60, description="first backoff step; full jitter, doubling")
    retry_cap_s: float = Field(5.0, gt=0, le=600, description="longest single backoff wait")
    call_deadline_s: float = Field(30.0, gt=0, le=3600, description="a call gives up after this long")
    max_attempts: int = Field(8, ge=1, le=100)
    unknown_settle_s: float = Field(0.5, ge=0, le=60, description="wait before looking up a lost order")
    rate_headroom: float = Field(0.05, ge=0, lt=1, description="fraction of each exchange budget left unused")
    rate_cut_factor: float = Field(0.5, gt=0, le=1, description="budget multiplier after an HTTP 429")
    rate_recover_s: float = Field(60.0, ge=0, description="time to recover the full budget after a 429")
    rate_limits: dict[str, int] = Field(
        default_factory=dict, description="override budget limits by name, e.g. weight_1m = 1200"
    )

    @field_validator("rate_limits")
    @classmethod
    def positive_limits(cls, limits: dict[str, int]) -> dict[str, int]:
        for name, limit in limits.items():
            if limit < 1:
                raise ValueError(f"rate limit {name} must be >= 1")
        return limits

    @model_validator(mode="after")
    def cap_above_base(self) -> VenueConfig:
        if self.retry_cap_s < self.retry_base_s:
            raise ValueError("retry_cap_s must not be below retry_base_s")
        return self


class RiskConfig(Section):
    """Isolated-margin sizing policy (see botkit.margin)."""

    risk_per_trade: Decimal = Field(Decimal("0.01"), gt=0, le=Decimal("0.1"), description="fraction of equity")
    max_leverage: int = Field(10, ge=1, le=125)
    liq_buffer: Decimal = Field(
        Decimal("0.005"), ge=0, lt=Decimal("0.5"), description="liquidation beyond stop, fraction of entry"
    )
    taker_fee: Fraction = Decimal("0.0005")
    maker_fee: Fraction = Decimal("0.0002")
    slippage: Fraction = Field(Decimal("0.0005"), description="adverse fill beyond the stop, fraction")
    funding_rate: Decimal = Field(
        Decimal("0.0001"), ge=Decimal("-0.05"), le=Decimal("0.05"), description="assumed rate per interval"
    )
    funding_intervals: int = Field(3, ge=0, le=1000, description="funding settlements to plan for")
    max_notional: PositiveDecimal | None = None
    allow_clamp: bool = Field(False, description="accept with a reduced quantity instead of rejecting")


class LimitsConfig(Section):
    max_order_notional: PositiveDecimal = Decimal("10000")
    max_position_notional: PositiveDecimal = Decimal("25000")
    max_total_notional: PositiveDecimal = Decimal("50000")
    max_open_orders: int = Field(20, ge=1, le=1000)
    max_positions: int = Field(3, ge=1, le=200)
    price_band: Decimal = Field(Decimal("0.02"), gt=0, lt=1, description="max limit-price distance from mark")
    orders_per_10s: int = Field(50, ge=1)
    orders_per_minute: int = Field(600, ge=1)

    @model_validator(mode="after")
    def ordered(self) -> LimitsConfig:
        if self.max_position_notional > self.max_total_notional:
            raise ValueError("max_position_notional must not exceed max_total_notional")
        return self


class KillSwitchConfig(Section):
    stale_feed_seconds: Decimal = Field(Decimal("5"), gt=0, le=300, description="max age of any price used")
    mark_index_divergence_bps: Decimal = Field(Decimal("100"), gt=0, le=10_000)
    divergence_seconds: Decimal = Field(Decimal("10"), ge=0)
    max_drawdown: Fraction = Decimal("0.1")
    daily_loss: Fraction = Decimal("0.05")
    error_burst: int = Field(
        10, ge=1, description="failed venue attempts (retried or not) within error_window_seconds that halt"
    )
    error_window_seconds: Decimal = Field(Decimal("60"), gt=0)
    max_clock_skew_ms: int = Field(1000, ge=1)
    max_cancels_per_minute: int = Field(120, ge=1)
    max_cancel_to_fill: Decimal = Field(Decimal("50"), gt=0, description="cancels per fill over a minute")
    min_book_depth_notional: Decimal = Field(Decimal("0"), ge=0, description="market orders refused below it")
    liq_guard_buffer: Fraction = Field(Decimal("0.01"), description="reduce when mark is this close to liq")
    liq_slice: Decimal = Field(Decimal("0.25"), gt=0, le=1, description="fraction of the position per slice")
    liq_slice_pause_seconds: Decimal = Field(Decimal("2"), ge=0)
    on_halt: Literal["cancel", "cancel_and_flatten"] = "cancel"
    auto_resume: bool = False
    resume_after_seconds: Decimal = Field(Decimal("60"), ge=0)


class MarketRiskConfig(Section):
    """Early warning (botkit.guards.market_risk): the mark's realized volatility, funding and basis per
    symbol, and two pre-trade checks against the market's own noise. Each check rejects, warns (the
    intent goes, with the finding in its verdict) or is off."""

    half_life_seconds: Decimal = Field(Decimal(900), gt=0, description="volatility's EWMA half-life; no "
                                       "figure until the marks have covered one")  # fmt: skip
    funding_interval_seconds: Decimal = Field(Decimal(28800), gt=0, description="the exchange's funding period")
    funding_window: int = Field(96, ge=4, le=10_000, description="funding samples the z-score is taken against")
    funding_sample_seconds: Decimal = Field(Decimal(300), gt=0, description="one funding sample at most this often")
    drift_seconds: Decimal = Field(Decimal(3600), gt=0, description="the basis drift: now against this long ago")
    stop_noise: Literal["reject", "warn", "off"] = Field("warn", description="STOP_INSIDE_NOISE")
    stop_noise_k: Decimal = Field(Decimal(1), gt=0, description="the stop must be k sigma of the holding horizon away")
    holding_seconds: Decimal = Field(Decimal(3600), gt=0, description="how long a position is expected to be held")
    liq_sigma: Literal["reject", "warn", "off"] = Field("warn", description="LIQ_WITHIN_SIGMA")
    liq_sigma_n: Decimal = Field(Decimal(3), gt=0, description="the planning liquidation must be n sigma of one "
                                 "funding interval from the entry")  # fmt: skip
    crowding: Literal["reduce", "scale", "off"] = Field(
        "reduce", description="funding, basis and volatility all extreme toward a held position: REDUCING until "
        "all three calm (reduce), or new risk on the symbol sized on crowding_scale of the budget (scale)")
    crowding_scale: Decimal = Field(Decimal("0.5"), gt=0, lt=1, description="scale: the fraction of "
                                    "risk_per_trade a crowded symbol's new risk is sized on")  # fmt: skip
    crowding_cut: Decimal = Field(Decimal("0.5"), ge=0, le=1, description="the fraction of the position cut when "
                                  "its market turns crowded (0: REDUCING alone)")  # fmt: skip
    crowding_funding_z: Decimal = Field(Decimal("2.5"), gt=0, description="funding z-score toward the position")
    crowding_basis: Decimal = Field(Decimal("0.002"), gt=0, description="basis toward the position (0.002 = 20 bps)")
    crowding_vol_ratio: Decimal = Field(Decimal("1.5"), gt=1, description="volatility against its slower average")


class RuntimeConfig(Section):
    """How the running bot behaves around the strategy (botkit.runtime)."""

    leverage: int | None = Field(None, ge=1, le=125, description="set per symbol at start; default risk.max_leverage")
    on_strategy_error: Literal["skip", "halt"] = Field("skip", description="a hook that raises: skip the event or halt")
    unknown_exposure: Literal["reduce", "adopt"] = Field(
        "reduce", description="a position or order the bot did not make: REDUCING until resumed, or adopt it"
    )
    cancel_on_exit: bool = Field(True, description="cancel this bot's open orders on SIGINT/SIGTERM or the end")
    poll_seconds: Decimal = Field(Decimal("1"), gt=0, le=60, description="REST polling while a stream is down")
    account_seconds: Decimal = Field(Decimal("2"), gt=0, le=300, description="balance and positions refresh")
    reconcile_seconds: Decimal = Field(Decimal("15"), gt=0, le=3600, description="orders, margin settings, clock")
    rules_seconds: Decimal = Field(
        Decimal("60"), gt=0, le=86_400, description="market rules and leverage brackets re-read (sooner on a refusal)"
    )
    stream_retry_cap_s: Decimal = Field(Decimal("10"), gt=0, le=600, description="longest wait between reconnects")
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Prometheus /metrics on this port (0: any free)")
    status_port: int | None = Field(None, ge=0, le=65535, description="status page and HTTP API on this port")
    listen_host: str = Field("127.0.0.1", min_length=1, description="address of both (loopback by default)")


class StopsConfig(Section):
    """The protective stop the exchange holds for every open position (botkit.runtime.stops)."""

    enabled: bool = Field(True, description="keep a reduce-only stop-market on the exchange for every position")
    trigger: Literal["mark", "last"] = Field("mark", description="the price that triggers them: mark or last trade")
    price_protect: bool = Field(False, description="the exchange holds a trigger while mark and last differ widely")
    confirm_seconds: Decimal = Field(
        Decimal("3"), gt=0, le=60, description="a position without a confirmed stop this long trips stop_missing"
    )
    close_seconds: Decimal = Field(
        Decimal("10"), gt=0, le=600, description="still without one this much longer: close it with reduce-only orders"
    )
    check_seconds: Decimal = Field(
        Decimal("5"), gt=0, le=600, description="the exchange's list of stops compared with the bot's"
    )
    keep_on_exit: bool = Field(True, description="leave them on the exchange when the bot stops (they outlive it)")


class PaperConfig(Section):
    """Mode paper: the simulated account that botkit.sim fills against the observed market."""

    balance: Decimal = Field(Decimal("10000"), gt=0, description="starting USDT wallet of the paper account")
    queue: Literal["back", "front"] = Field(
        "back",
        description="a resting limit order fills when trades print through its price (back of the queue) "
        "or also at it (front)",
    )
    taker_fee: Decimal | None = Field(None, ge=0, lt=Decimal("0.01"), description="default: the exchange's rate")
    maker_fee: Decimal | None = Field(None, gt=Decimal("-0.01"), lt=Decimal("0.01"), description="default: as taker")
    tiers_dir: Path = Field(Path("config/tiers"), description="<market id>.json leverage brackets, used without keys")


class MarketFilters(Section):
    """One market's exchange filters, for a backtest (history files carry none)."""

    tick: PositiveDecimal = Field(description="price step")
    step: PositiveDecimal = Field(description="quantity step")
    min_qty: PositiveDecimal | None = Field(None, description="default: one step")
    max_qty: PositiveDecimal | None = None
    min_notional: Decimal = Field(Decimal(5), ge=0)


class BacktestConfig(Section):
    """`botkit backtest`: history replayed through the same runtime, on the [paper] account settings
    (balance, fees, queue, tiers_dir)."""

    data: Path | None = Field(None, description="history folder (botkit data download's layout)")
    interval: str | None = Field(None, description="candle interval to replay (default: the finest in the data)")
    spread_bps: Decimal = Field(Decimal(2), ge=0, lt=1000, description="bid-ask spread around each path price")
    slippage_bps: Decimal = Field(Decimal(1), ge=0, lt=1000, description="a market order's cost beyond the spread")
    markets: dict[str, MarketFilters] = Field(
        default_factory=dict, description="filters per symbol (default: the emulator's, for its symbols)"
    )
    stress: Literal["crowded"] | None = Field(None, description="crowded: a crowd of leveraged longs liquidated "
                                              "into the replay (the crowded-squeeze model)")  # fmt: skip
    stress_seed: int = Field(1, description="the crowd's seed")


class AlertsConfig(Section):
    """Messages to a person (botkit.operate.alerts): trips, state changes, guard actions, exchange-stop events,
    start-up failures, shutdowns and a daily summary, to any of these destinations (none set: no alerts)."""

    webhook_url: SecretStr | None = Field(None, description="generic JSON webhook: one POST per message")
    slack_url: SecretStr | None = Field(None, description="Slack-style incoming webhook ({'text': ...})")
    discord_url: SecretStr | None = Field(None, description="Discord webhook ({'content': ...})")
    telegram_token: SecretStr | None = Field(None, description="Telegram bot token (Bot API sendMessage)")
    telegram_chat_id: str | None = Field(None, min_length=1, description="the chat the Telegram bot writes to")
    telegram_api_url: AnyHttpUrl = Field(AnyHttpUrl("https://api.telegram.org"), description="Bot API base URL")
    group_seconds: Decimal = Field(Decimal(2), ge=0, le=600, description="alerts within this window go as one")
    timeout_seconds: Decimal = Field(Decimal(5), gt=0, le=120, description="one delivery attempt's limit")
    retries: int = Field(4, ge=0, le=20, description="attempts after the first, with doubling back-off")
    queue_size: int = Field(1000, ge=10, le=1_000_000, description="alerts waiting; past it the oldest go")
    daily_summary_utc: str | None = Field("00:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                                          description="HH:MM (UTC) of the daily summary; none: no summary")  # fmt: skip

    @model_validator(mode="after")
    def telegram_pair(self) -> AlertsConfig:
        if (self.telegram_token is None) != (self.telegram_chat_id is None):
            raise ValueError("alerts.telegram_token and alerts.telegram_chat_id go together")
        return self

    def secrets(self) -> list[str]:
        """Every secret value here (the URLs carry tokens too): never logged, never journalled."""
        values = (self.webhook_url, self.slack_url, self.discord_url, self.telegram_token)
        return [v.get_secret_value() for v in values if v is not None]


class FleetConfig(Section):
    """Many bots, one account or one IP: shared rate budgets, one kill switch and leases over Redis
    (botkit.fleet). Without this section nothing is shared and no Redis is needed."""

    redis_url: SecretStr = Field(description="redis://[user:password@]host:port/db (a password makes it a secret)")
    sentinels: list[str] = Field(default_factory=list, description="host:port of each Redis Sentinel: the "
                                 "primary is asked of them, and followed through a failover (redis_url then "
                                 "gives only the user, password, db and TLS)")  # fmt: skip
    sentinel_master: str = Field("mymaster", min_length=1, description="the primary's name in the Sentinels")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="this bot's name: one process per name across every machine")  # fmt: skip
    account: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                         description="the exchange account it trades: order counts and account limits are per account")
    ip_group: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                          description="the egress IP it shares: request weight, 429 and 418 are per IP")
    grace_seconds: Decimal = Field(Decimal(5), gt=0, le=600,
                                   description="Redis unreachable this long: REDUCING until it is back")  # fmt: skip
    heartbeat_seconds: Decimal = Field(Decimal(1), gt=0, le=60, description="status and lease renewal period")
    lease_seconds: Decimal = Field(Decimal(10), gt=0, le=3600,
                                   description="a dead bot's name and reservations are free after this")  # fmt: skip
    local_share: Decimal = Field(Decimal("0.25"), gt=0, le=1,
                                 description="share of each rate budget used alone while Redis is unreachable")
    propagate: list[str] = Field(default_factory=lambda: ["drawdown", "daily_loss", "liquidated"],
                                 description="this bot's trips that halt every bot of its account")  # fmt: skip
    # the account's limits across all its bots (every bot of an account should give the same ones)
    max_account_notional: PositiveDecimal | None = Field(
        None, description="positions at the mark + opening orders + in-flight intents of every bot of the account")
    max_account_loss: PositiveDecimal | None = Field(
        None, description="what the account loses if every stop fills (no stop known: the position's margin)")
    max_account_open_orders: int | None = Field(None, ge=1, le=100_000, description="open orders of every bot")

    @field_validator("sentinels")
    @classmethod
    def host_and_port(cls, sentinels: list[str]) -> list[str]:
        for address in sentinels:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"sentinel {address!r} must be host:port")
        return sentinels

    @model_validator(mode="after")
    def lease_outlives_heartbeats(self) -> FleetConfig:
        if self.lease_seconds < 3 * self.heartbeat_seconds:
            raise ValueError("fleet.lease_seconds must be at least 3 heartbeats (a late heartbeat must not lose it)")
        return self


class JournalConfig(Section):
    path: Path = Path("botkit-journal.sqlite")
    rotate_mb: Decimal | None = Field(Decimal(256), gt=0, description="archive the file past this size (none: never)")
    rotate_daily: bool = Field(False, description="also archive it when a UTC day ends")


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = Field("auto", description="auto: console on a TTY, else JSON")


class BotConfig(BaseSettings):
    """The whole bot. Sections mirror the pipeline: venue, sizing, limits, kill switch, journal, logs."""

    model_config = SettingsConfigDict(
        env_prefix="BOTKIT_", env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    mode: Literal["demo", "paper", "testnet", "live"] = "demo"
    strategy: str = Field("sma_cross", min_length=1)
    symbols: list[str] = Field(default_factory=lambda: ["BTC/USDT:USDT"], min_length=1)
    exchange: ExchangeConfig = ExchangeConfig()
    venue: VenueConfig = VenueConfig()
    risk: RiskConfig = RiskConfig()
    limits: LimitsConfig = LimitsConfig()
    killswitch: KillSwitchConfig = KillSwitchConfig()
    market_risk: MarketRiskConfig = MarketRiskConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    stops: StopsConfig = StopsConfig()
    paper: PaperConfig = PaperConfig()
    backtest: BacktestConfig = BacktestConfig()
    alerts: AlertsConfig = AlertsConfig()
    fleet: FleetConfig | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="the strategy's parameters (its Params model)")
    journal: JournalConfig = JournalConfig()
    logging: LoggingConfig = LoggingConfig()

    @field_validator("symbols")
    @classmethod
    def unified_symbols(cls, symbols: list[str]) -> list[str]:
        for symbol in symbols:
            if not SYMBOL_PATTERN.match(symbol):
                raise ValueError(f"{symbol!r} is not a unified perpetual symbol like 'BTC/USDT:USDT'")
        if len(set(symbols)) != len(symbols):
            raise ValueError("symbols must not repeat")
        return symbols

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's contents arrive as init kwargs; the environment overrides them.
        return env_settings, init_settings


def unknown_env_settings(environ: Mapping[str, str]) -> list[str]:
    """BOTKIT_SECTION__FIELD variables that name no setting: a misspelt one would otherwise be ignored."""
    problems = []
    sections = BotConfig.model_fields
    for name in sorted(environ):
        if not name.upper().startswith("BOTKIT_") or "__" not in name:
            continue
        section, _, rest = name[len("BOTKIT_"):].lower().partition("__")
        field = sections.get(section)
        model = field.annotation if field is not None else None
        if field is None:
            problems.append(f"{name}: no section {section!r} (sections: {', '.join(sorted(sections))})")
        elif isinstance(model, type) and issubclass(model, BaseModel) and rest.split("__")[0] not in model.model_fields:
            problems.append(f"{name}: no setting {rest.split('__')[0]!r} in [{section}]")
    return problems


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such config file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    try:
        return tomllib.loads(text, parse_float=Decimal)  # Decimal: no binary float noise in money settings
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def load_config(path: Path | None = None, *, keys: bool = True) -> BotConfig:
    """Load and validate the config (file, then BOTKIT_* overrides); raises ConfigError, one line a problem.

    `keys=False` for the commands that never talk to the exchange's private API (`halt`, `resume`, `size`):
    acting in an incident must not need secrets."""
    data = read_toml(path) if path is not None else {}
    where = str(path) if path is not None else "config"
    unknown = unknown_env_settings(os.environ)
    if unknown:
        raise ConfigError(unknown)
    try:
        config = BotConfig(**data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, where)) from None
    except SettingsError as exc:  # a BOTKIT_* variable holding something that is not JSON where JSON is due
        field = str(exc).split('"')[1] if '"' in str(exc) else "?"
        raise ConfigError([f"BOTKIT_{field.upper()}: not valid JSON for the setting {field!r}"]) from None
    missing = config.exchange.api_key is None or config.exchange.api_secret is None
    if keys and config.mode in ("testnet", "live") and missing:
        raise ConfigError([f"{where}: mode {config.mode!r} needs exchange.api_key and exchange.api_secret "
                           "(set BOTKIT_EXCHANGE__API_KEY / BOTKIT_EXCHANGE__API_SECRET or the *_file settings)"])
    return config


def _allowed(error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown setting (check the spelling; see config/demo.toml for every setting)"
    if kind == "literal_error":
        return f"allowed: {ctx.get('expected')}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(v for k, v in ctx.items() if k in ("gt", "ge", "lt", "le")))
        return f"must be {op} {bound}"
    msg = error["msg"].removeprefix("Value error, ")
    return msg[0].lower() + msg[1:]


def format_errors(exc: ValidationError, where: str) -> list[str]:
    """One line per problem: `where: field.path = value: what is allowed`."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in error["loc"])
        if not loc:  # a rule across fields: its message names them
            lines.append(f"{where}: {_allowed(error)}")
            continue
        value = error.get("input")
        if isinstance(value, dict) or error["type"] == "missing":
            shown = ""
        elif "secret" in loc or "api_key" in loc:
            shown = " = '**********'"
        else:
            shown = f" = {value}" if isinstance(value, Decimal | int | float) else f" = {value!r}"
        lines.append(f"{where}: {loc}{shown}: {_allowed(error)}")
    return lines


def disabled_guardrails(config: BotConfig) -> list[str]:
    """Settings that switch a guardrail off, or loosen it until it no longer guards: a live run refuses them."""
    ks = config.killswitch
    found = []
    if ks.liq_guard_buffer == 0:
        found.append("killswitch.liq_guard_buffer = 0 turns the client-side liquidation guard off")
    if ks.stale_feed_seconds > 60:
        found.append(
            f"killswitch.stale_feed_seconds = {ks.stale_feed_seconds}: prices older than a minute are not data"
        )
    if ks.max_drawdown >= Decimal("0.5"):
        found.append(f"killswitch.max_drawdown = {ks.max_drawdown}: a drawdown limit of half the account or more")
    if ks.daily_loss >= Decimal("0.5"):
        found.append(f"killswitch.daily_loss = {ks.daily_loss}: a daily loss limit of half the account or more")
    if ks.error_burst > 100:
        found.append(f"killswitch.error_burst = {ks.error_burst}: more than 100 venue errors before halting")
    if not config.stops.enabled:
        found.append("stops.enabled = false: positions have no stop on the exchange, nothing protects them when "
                     "the bot is down")  # fmt: skip
    return found


def effective_settings(config: BotConfig) -> dict[str, Any]:
    """The settings as plain data with secrets masked, for display."""
    return config.model_dump(mode="json")
