"""A Binance USDⓈ-M futures REST + WebSocket emulator on aiohttp, for the real, unmodified ccxt client.

`Emulator` ties the synthetic market, the venue engine, the fault plan and Binance-like request
verification and rate limits to one aiohttp application. `running_emulator()` starts one in process on
a free loopback port; `point_ccxt_at()` points a ccxt `binanceusdm` instance (async or pro) at it.

Times: the market's clock (event times, funding, candles) starts at the wall clock and advances by
`step_ms` of simulated time per step; `speed` sets how many steps run per real second. Request
timestamps are checked against the wall clock plus any injected skew, as Binance checks them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import itertools
import json
import math
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from botkit.domain import OrderSide, OrderType
from botkit.margin import ceil_to_step, floor_to_step, maintenance_margin, notional_cap_for_leverage, plain
from botkit.sim.engine import (
    Account,
    AlgoChanged,
    AlgoOrder,
    Engine,
    EngineEvent,
    Fill,
    Income,
    Order,
    OrderChanged,
    Rejection,
)
from botkit.sim.faults import REST_KINDS, FaultPlan, FaultPlanError, FaultRule, parse_plan
from botkit.sim.history import INTERVALS_MS, bucket_start
from botkit.sim.history import Trade as HistoryTrade
from botkit.sim.history import decimal as from_units
from botkit.sim.market import (
    SCENARIOS,
    SPECS,
    BookSide,
    Market,
    Scenario,
    SymbolSpec,
    SymbolState,
    Trade,
    book_changes,
    book_side,
    levels,
    synthetic_specs,
)

D = Decimal
T = TypeVar("T", OrderSide, OrderType)
ZERO = Decimal(0)
Params = dict[str, str]
Handler = Callable[[web.Request, Params, Account | None], Awaitable[Any]]
CATCH_UP_STEPS = 4  # above speed 1, a market further behind than this waits for the process (see _run_clock)
CLOSE_FRAME = "\x00close"  # queued to make a socket's writer close it (an injected disconnect)


@dataclass(frozen=True)
class EmulatorSettings:
    seed: int = 1
    scenario: str | Scenario = "calm"  # a name in SCENARIOS, or a Scenario (e.g. one fitted to a run)
    speed: float = 1.0  # simulated seconds per real second
    step_ms: int = 100
    funding_interval_s: float = 8 * 3600
    start_ms: int | None = None  # None: the wall clock at start
    balance: Decimal = D(10_000)
    api_key: str | None = None
    api_secret: str | None = None
    weight_per_minute: int = 2400
    orders_per_10s: int = 300
    orders_per_minute: int = 1200
    ban_seconds: float = 120.0  # the first 418 ban; each further ban doubles it
    ban_grace_s: float = 1.0  # requests this soon after a 429 (already in flight) get 429 again, not a ban
    rate_limit_speed: float = 1.0  # rate-limit windows, cool-downs and bans run this many times faster
    run_clock: bool = True  # False: the market moves only through the admin API (deterministic tests)
    withdrawals_enabled: bool = False  # what GET /sapi/v1/account/apiRestrictions reports for the API key
    history_days: int = 30  # market history before the start, generated from the seed on demand
    extra_symbols: int = 0  # synthetic perpetuals besides BTCUSDT and ETHUSDT (S01USDT, ...), for many-symbol runs


# ------------------------------------------------------------------------------------- rate limits


@dataclass
class _Usage:
    window: int = -1
    weight: int = 0
    order_windows: dict[int, tuple[int, int]] = field(default_factory=dict)  # window length -> (index, count)
    cooldown_until: float = 0.0
    limited_at: float = 0.0
    banned_until: float = 0.0
    bans: int = 0


class RateLimiter:
    """Binance's limits: request weight per minute per IP, and new orders per 10 s and per minute per account.

    Over the weight limit: HTTP 429 with Retry-After until the window ends. A request during that cool-down
    (after a short grace for requests already in flight) earns an HTTP 418 ban, `ban_seconds` long and
    doubling with each repeat. Over an order limit: HTTP 429 (-1015) for new orders only.
    """

    def __init__(self, settings: EmulatorSettings, now: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.now = settings, now
        self.usage: dict[str, _Usage] = {}  # by IP: request weight, cool-downs and bans
        self.accounts: dict[str, _Usage] = {}  # by API key: order counts
        self.answered: Counter[int] = Counter()  # 429 and 418 answers given, rate-limit and injected

    def cool_down(self, ip: str, seconds: float) -> None:
        """An injected 429: the IP must now wait `seconds` like after a real one, or earn a ban."""
        u = self.usage.setdefault(ip, _Usage())
        now = self.now()
        u.cooldown_until, u.limited_at = max(u.cooldown_until, now + seconds), now
        self.answered[429] += 1

    def ban(self, ip: str, seconds: float) -> None:
        """An injected 418: the IP is banned for `seconds`, like after a real one (requests meanwhile get 418)."""
        u = self.usage.setdefault(ip, _Usage())
        u.banned_until = max(u.banned_until, self.now() + seconds)
        self.answered[418] += 1

    def check(self, ip: str, weight: int) -> tuple[int | None, float, dict[str, str]]:
        """(status or None, retry-after seconds, usage headers) for one request's IP weight."""
        now = self.now()
        u = self.usage.setdefault(ip, _Usage())
        if u.banned_until > now:
            return 418, u.banned_until - now, {}
        if u.cooldown_until > now:
            if now - u.limited_at <= self.settings.ban_grace_s:
                return 429, u.cooldown_until - now, {}
            u.bans += 1
            u.banned_until = now + self.settings.ban_seconds * 2 ** (u.bans - 1)
            return 418, u.banned_until - now, {}
        minute = int(now // 60)
        if u.window != minute:
            u.window, u.weight = minute, 0
        u.weight += weight
        headers = {"X-MBX-USED-WEIGHT-1M": str(u.weight)}
        if u.weight > self.settings.weight_per_minute:
            u.cooldown_until, u.limited_at = (minute + 1) * 60, now
            return 429, u.cooldown_until - now, headers
        return None, 0.0, headers

    def count_orders(self, account: str, counts: tuple[int, int]) -> tuple[str | None, float, dict[str, str]]:
        """New orders count against the account, not the IP: (the limit broken or None, retry-after seconds,
        order-count headers). Over a limit the order is refused with 429 until its window ends; other
        requests go on, and no ban follows."""
        now = self.now()
        u = self.accounts.setdefault(account, _Usage())
        headers, broken, retry = {}, None, 0.0
        limits = self.settings.orders_per_10s, self.settings.orders_per_minute
        for length, limit, name, count in zip((10, 60), limits, ("TEN_SECONDS", "ONE_MINUTE"), counts, strict=True):
            index = int(now // length)
            seen, used = u.order_windows.get(length, (index, 0))
            used = used if seen == index else 0
            over = used + count > limit
            if over:
                broken, retry = f"{limit} orders per {name}", max(retry, (index + 1) * length - now)
            headers[f"X-MBX-ORDER-COUNT-{'10S' if length == 10 else '1M'}"] = str(used if over else used + count)
            u.order_windows[length] = (index, used)
        if broken is None:
            for length, count in zip((10, 60), counts, strict=True):
                index, used = u.order_windows[length]
                u.order_windows[length] = (index, used + count)
        return broken, retry, headers


# ----------------------------------------------------------------------------------------- helpers


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(data, default=lambda v: plain(v) if isinstance(v, Decimal) else str(v)),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error(code: int, msg: str, status: int = 400, headers: dict[str, str] | None = None) -> web.Response:
    return _json({"code": code, "msg": msg}, status, headers)


def _decimal(params: Params, name: str, required: bool = True) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise Rejection(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        return None
    try:
        value = D(raw)
    except InvalidOperation:
        raise Rejection(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.",
        ) from None
    if not value.is_finite():
        raise Rejection(-1100, f"Illegal characters found in parameter '{name}'.")
    return value


def _int(params: Params, name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise Rejection(-1100, f"Illegal characters found in parameter '{name}'.") from None


def _one_way_side_and_type(params: Params) -> tuple[OrderSide, OrderType]:
    """A new order's side and type, for an account in one-way mode (the only mode the emulator has)."""
    if params.get("positionSide", "BOTH") != "BOTH":
        raise Rejection(-4061, "Order's position side does not match user's setting.")
    side = _from_wire(OrderSide, params.get("side", ""), -1117, "Invalid side.")
    return side, _from_wire(OrderType, params.get("type", ""), -1116, "Invalid orderType.")


def _limit(params: Params, default: int, maximum: int) -> int:
    """A history endpoint's `limit`: its default when absent, at most its maximum."""
    limit = _int(params, "limit", default) or default
    if limit < 1:
        raise Rejection(-1130, "Invalid data sent for a parameter.")
    return min(limit, maximum)


def _page(rows: list[dict[str, Any]], time_key: str, params: Params, *, default: int, maximum: int,
          recent_ms: int | None = None, now_ms: int = 0) -> list[dict[str, Any]]:  # fmt: skip
    """Binance's paging of a history (rows oldest first): with startTime, the first `limit` rows from it (to
    endTime); with endTime alone, the last `limit` up to it; with neither, the last `limit`, or, for
    endpoints that default to a recent span (`recent_ms`), the first `limit` of that span."""
    limit = _limit(params, default, maximum)
    start, end = _int(params, "startTime"), _int(params, "endTime")
    if start is None and end is None and recent_ms is not None:
        start = now_ms - recent_ms
    chosen = [r for r in rows if (start is None or r[time_key] >= start) and (end is None or r[time_key] <= end)]
    return chosen[:limit] if start is not None else chosen[-limit:]


WEEK_MS = 7 * 86_400_000


def _id_or_time_page(rows: list[dict[str, Any]], id_key: str, from_id: int | None,
                     params: Params) -> list[dict[str, Any]]:  # fmt: skip
    """userTrades and allOrders: the first `limit` rows from an id on, or a time page (at most 7 days)."""
    start, end = _int(params, "startTime"), _int(params, "endTime")
    if from_id is not None:
        return [r for r in rows if r[id_key] >= from_id][: _limit(params, 500, 1000)]
    if start is not None and end is not None and not 0 <= end - start <= WEEK_MS:
        raise Rejection(-1127, "More than 7 days between startTime and endTime.")
    return _page(rows, "time", params, default=500, maximum=1000)


@functools.lru_cache(maxsize=64)
def _places(step: Decimal) -> int:
    """The decimals a price or quantity on this step is printed with (Binance pads to them)."""
    return max(0, -int(step.normalize().as_tuple().exponent))


def _fixed(value: Decimal, places: int) -> str:
    return f"{value:.{places}f}"


def _units(value: int, places: int) -> str:
    """A history value in 1e-8 units, printed with `places` decimals (cut, not rounded: history prices and
    quantities sit on their tick and step)."""
    whole, fraction = divmod(abs(value), 100_000_000)
    text = f"{whole}.{fraction:08d}"[: len(str(whole)) + 1 + places] if places else str(whole)
    return "-" + text if value < 0 else text


KLINE_KINDS = {"/fapi/v1/klines": "trade", "/fapi/v1/continuousKlines": "continuous",
               "/fapi/v1/markPriceKlines": "mark", "/fapi/v1/indexPriceKlines": "index",
               "/fapi/v1/premiumIndexKlines": "premium"}  # fmt: skip
INTERVALS = (*INTERVALS_MS, "1M")


def _batch(params: Params, name: str, most: int) -> list[Params]:
    """The orders of a batch request: a JSON list of at most `most` objects of string parameters."""
    raw = params.get(name)
    if not raw:
        raise Rejection(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    try:
        items = json.loads(raw)
    except ValueError:
        raise Rejection(-1130, "Invalid data sent for a parameter.") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise Rejection(-1130, "Invalid data sent for a parameter.")
    if len(items) > most:
        raise Rejection(-1130, f"Invalid data sent for a parameter: at most {most} orders.")
    return [{k: v if isinstance(v, str) else json.dumps(v) for k, v in i.items()} for i in items]


def _trade(t: HistoryTrade) -> Trade:
    """A generated trade as the market's own."""
    return Trade(t.id, from_units(t.price), from_units(t.qty), t.buyer_maker, t.time_ms)


def _flag(params: Params, name: str) -> bool:
    """A boolean parameter: Binance's docs spell it TRUE/FALSE in one place and true/false in another."""
    return params.get(name, "false").lower() == "true"


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


# New orders a request counts (per 10 s, per minute); every other request counts none.
ORDER_COUNTS = {("POST", "/fapi/v1/order"): (1, 1), ("PUT", "/fapi/v1/order"): (1, 1),
                ("POST", "/fapi/v1/algoOrder"): (1, 1), ("POST", "/fapi/v1/batchOrders"): (5, 1),
                ("PUT", "/fapi/v1/batchOrders"): (5, 1)}  # fmt: skip
# Request weights that depend on the parameters: (with a symbol, without one).
SYMBOL_WEIGHTS = {"/fapi/v1/ticker/24hr": (1, 40), "/fapi/v1/openOrders": (1, 40), "/fapi/v1/openAlgoOrders": (1, 40),
                  "/fapi/v1/premiumIndex": (1, 10), "/fapi/v1/ticker/bookTicker": (2, 5),
                  "/fapi/v1/ticker/price": (1, 2), "/fapi/v2/ticker/price": (1, 2),
                  "/fapi/v1/forceOrders": (20, 50)}  # fmt: skip


def _weight(path: str, params: Params, weight: int) -> int:
    """A request's IP weight, as Binance's table gives it."""
    if path == "/fapi/v1/depth":
        limit = _int(params, "limit", 500) or 500
        return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
    if path in KLINE_KINDS:
        limit = _int(params, "limit", 500) or 500
        return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
    if path in SYMBOL_WEIGHTS:
        return SYMBOL_WEIGHTS[path][0 if "symbol" in params else 1]
    return weight


# ------------------------------------------------------------------------------------- WebSockets


@dataclass(eq=False)
class _Socket:
    """One client connection; frames go through a queue so they leave in the order they were made. Raw
    connections get each event as it is; combined ones (/stream) wrap it as {"stream": name, "data": event}."""

    ws: web.WebSocketResponse
    path: str
    combined: bool
    streams: set[str] = field(default_factory=set)  # market streams and listen keys subscribed
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    def send(self, payload: dict[str, Any]) -> None:
        if not self.ws.closed:
            self.outbox.put_nowait(json.dumps(payload))

    def publish(self, stream: str, payload: dict[str, Any] | list[dict[str, Any]]) -> None:
        if not self.ws.closed:
            self.outbox.put_nowait(json.dumps({"stream": stream, "data": payload} if self.combined else payload))

    async def write_forever(self) -> None:
        while True:
            frame = await self.outbox.get()
            if frame is CLOSE_FRAME:
                await self.ws.close()
                return
            try:
                await self.ws.send_str(frame)
            except ConnectionError:  # the client went away between two frames: no one is left to write to
                return


# Market stream names, as Binance spells them: <symbol>@<kind>, or !<kind> for every symbol.
_DEPTH = r"depth(?:5|10|20)?(?:@100ms|@250ms|@500ms)?"
_KLINE = "kline_(?:" + "|".join(INTERVALS) + ")"
SYMBOL_STREAM = re.compile(
    rf"^[a-z0-9]+@(?:aggTrade|trade|markPrice(?:@1s)?|bookTicker|miniTicker|ticker|forceOrder|{_DEPTH}|{_KLINE})$"
)
ALL_STREAM = re.compile(r"^!(?:markPrice@arr(?:@1s)?|miniTicker@arr|ticker@arr|bookTicker|forceOrder@arr)$")
LISTEN_KEY_MS = 60 * 60_000  # a listen key lives this long after its last keepalive


def _period_ms(kind: str) -> int:
    """How often a stream sends, in ms of market time (0: with every step that has something to send)."""
    if kind.startswith("depth"):
        return int(kind.rsplit("@", 1)[1].removesuffix("ms")) if "@" in kind else 250
    if kind.startswith("markPrice"):
        return 1000 if kind.endswith("@1s") else 3000
    if kind.startswith("kline_"):
        return 250
    if kind in ("miniTicker", "ticker", "miniTicker@arr", "ticker@arr"):
        return 1000
    return 0


# ---------------------------------------------------------------------------------------- emulator


class Emulator:
    def __init__(self, settings: EmulatorSettings = EmulatorSettings(), faults: FaultPlan | None = None) -> None:
        if settings.speed <= 0 or settings.rate_limit_speed <= 0:
            raise ValueError("speed and rate_limit_speed must be positive")
        self.settings = settings
        start_ms = settings.start_ms if settings.start_ms is not None else int(time.time() * 1000)
        self.market = Market(
            settings.seed,
            settings.scenario,
            start_ms=start_ms,
            step_ms=settings.step_ms,
            funding_interval_s=settings.funding_interval_s,
            history_days=settings.history_days,
            specs=SPECS + synthetic_specs(settings.extra_symbols),
        )
        self.engine = Engine(self.market)
        self.faults = faults or FaultPlan()
        self.limiter = RateLimiter(settings, now=lambda: time.monotonic() * settings.rate_limit_speed)
        self.api_key = settings.api_key or secrets.token_hex(32)
        self.api_secret = settings.api_secret or secrets.token_hex(32)
        self.engine.add_account(self.api_key, self.api_secret, settings.balance)
        self.engine.trigger_veto = self._trigger_veto
        self.listen_keys: dict[str, tuple[Account, int]] = {}  # key -> (account, expiry on the server clock)
        self.depth_marks: dict[tuple[str, str], tuple[BookSide, BookSide, int]] = {}  # what each depth stream sent
        self._liquidations_sent = 0  # liquidations the forceOrder streams have sent
        self.sockets: set[_Socket] = set()
        self.engine.listeners.append(self._on_private_event)
        self.closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._clock_task: asyncio.Task[None] | None = None
        self.url = ""
        self.busy_seconds = 0.0  # time spent inside request handling, for benchmarks
        self.clock_late_s = 0.0  # the worst a step of the market ran late on the wall clock
        self.clock_paused_s = 0.0  # wall time the market waited for a stalled process (speed > 1)
        self._reached: list[tuple[float, asyncio.Future[None]]] = []  # (elapsed_s, waiter): see reached()
        self.countdowns: dict[tuple[str, str], int] = {}  # (API key, symbol) -> when countdownCancelAll fires
        self.margin_changes: dict[str, list[dict[str, Any]]] = {}  # API key -> positionMargin changes
        self.app = self._build_app()

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []  # aiohttp keeps the listening server private
        bound = sockets[0].getsockname()[1] if sockets else port
        self.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{bound}"
        if self.settings.run_clock:
            self._clock_task = asyncio.create_task(self._run_clock())
        return self.url

    async def stop(self) -> None:
        self.closing.set()
        if self._clock_task:
            self._clock_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock_task
        for sock in list(self.sockets):
            await sock.ws.close()
        if self._runner:
            await self._runner.cleanup()

    async def _run_clock(self) -> None:
        interval = self.settings.step_ms / 1000 / self.settings.speed
        next_at = time.monotonic()
        while True:
            late = time.monotonic() - next_at
            self.clock_late_s = max(self.clock_late_s, late)
            if self.settings.speed > 1 and late > CATCH_UP_STEPS * interval:
                # a fast market is a test device: when the process stalls (a busy machine, a collection), the
                # market waits for it instead of running the missed steps in a burst the bot could not
                # watch, which at 20x turns a 0.1 s stall into 2 s of a crash. At speed 1 the market keeps
                # to the wall clock, as its event times must.
                self.clock_paused_s += late
                next_at = time.monotonic()
            next_at += interval
            self._step(broadcast=True)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    # ------------------------------------------------------------------------------ the clock

    def _step(self, broadcast: bool) -> None:
        self._apply_market_faults()
        self.engine.step()
        self._run_timers()
        if broadcast:
            self._broadcast_market()
        if self._reached:
            elapsed, waiting = self.market.elapsed_s, self._reached
            self._reached = [w for w in waiting if w[0] > elapsed]
            for waiter in (w for target, w in waiting if target <= elapsed and not w.done()):
                waiter.set_result(None)

    async def reached(self, elapsed_s: float) -> None:
        """Return once the market has run `elapsed_s` simulated seconds (a test's run measured in market time)."""
        if self.market.elapsed_s >= elapsed_s:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reached.append((elapsed_s, waiter))
        await waiter

    def advance_steps(self, steps: int, broadcast: bool = True) -> None:
        for _ in range(steps):
            self._step(broadcast)

    def advance_seconds(self, seconds: float) -> None:
        """Run the market forward: the last 3000 steps at full fidelity; before them the clock jumps, the
        market standing still, funding settling at each funding time it passes, at that time."""
        steps = int(seconds * 1000 / self.market.step_ms)
        full = min(steps, 3000)
        if steps > full:
            market = self.market
            target = market.now_ms + (steps - full) * market.step_ms
            while market.next_funding_ms <= target:
                market.skip(market.next_funding_ms - market.now_ms)
                market.next_funding_ms += market.funding_interval_ms
                self.engine.settle_funding()
            market.skip(target - market.now_ms)
        self.advance_steps(full, broadcast=False)

    def server_time_ms(self) -> int:
        """The exchange's clock: the wall clock, plus the time a clock jump skipped, plus any injected skew.
        Event, order and income times are the market's clock, which keeps with it when the market runs at
        speed 1 (steps driven faster, as tests do, run the market ahead of it)."""
        skew = sum((int(r.value or 0) for r in self.faults.active("clock_skew", self.market.elapsed_s)), 0)
        return int(time.time() * 1000) + self.market.skipped_ms + skew

    def _apply_market_faults(self) -> None:
        elapsed = self.market.elapsed_s
        for state in self.market.symbols.values():
            state.mark_bias_bps = D(0)
        for rule in self.faults.active("mark_divergence", elapsed):
            for name, state in self.market.symbols.items():
                if rule.symbol in (None, name):
                    state.mark_bias_bps += rule.value or D(0)
        for rule in self.faults.active("tighten_brackets", elapsed) + self.faults.active("min_notional", elapsed):
            if rule.fired:
                continue
            rule.fired = 1
            for name, state in self.market.symbols.items():
                if rule.symbol not in (None, name):
                    continue
                if rule.kind == "tighten_brackets":
                    self.market.tighten_brackets(name)
                elif rule.value is not None:
                    state.min_notional = rule.value
        self._apply_stop_faults(elapsed)

    def _apply_stop_faults(self, elapsed: float) -> None:
        """The algo service misbehaving: a conditional order cancelled on its own (as reported of Binance's
        demo venue), or forgotten for a while (queries answer "unknown order", yet it still triggers). A
        rule's target matches the order's client id."""
        if not (self.faults.active("stop_cancelled", elapsed) or self.faults.active("stop_forgotten", elapsed)):
            return
        for account in self.engine.accounts.values():
            for algo in account.open_algos():
                if algo.status != "NEW":
                    continue
                rule = self.faults.pick(("stop_cancelled", "stop_forgotten"), algo.client_id, "*", elapsed)
                if rule is None:
                    continue
                if rule.kind == "stop_cancelled":
                    algo.reason = "canceled by the system"
                    self.engine.cancel_algo(account, algo.id, None)
                elif algo.hidden_until_ms <= self.market.now_ms:
                    algo.hidden_until_ms = self.market.now_ms + int(rule.seconds * 1000)

    def _trigger_veto(self, algo: AlgoOrder) -> str | None:
        rule = self.faults.pick(("trigger_rejected",), algo.client_id, "*", self.market.elapsed_s)
        return None if rule is None else "Trigger rejected by the system (injected)"

    # ------------------------------------------------------------------------------ middleware

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        routes: list[tuple[str, str, Handler, int, str]] = [
            # method, path, handler, weight, auth: "" public / "key" API key only / "signed"
            ("GET", "/fapi/v1/ping", self.h_ping, 1, ""),
            ("GET", "/fapi/v1/time", self.h_time, 1, ""),
            ("GET", "/fapi/v1/exchangeInfo", self.h_exchange_info, 1, ""),
            ("GET", "/fapi/v1/depth", self.h_depth, 0, ""),
            ("GET", "/fapi/v1/ticker/24hr", self.h_ticker, 1, ""),
            ("GET", "/fapi/v1/ticker/bookTicker", self.h_book_ticker, 2, ""),
            ("GET", "/fapi/v1/ticker/price", self.h_price, 1, ""),
            ("GET", "/fapi/v2/ticker/price", self.h_price, 1, ""),
            ("GET", "/fapi/v1/openInterest", self.h_open_interest, 1, ""),
            ("GET", "/fapi/v1/premiumIndex", self.h_premium_index, 1, ""),
            ("GET", "/fapi/v1/fundingInfo", self.h_funding_info, 1, ""),
            ("GET", "/fapi/v1/fundingRate", self.h_funding_rate_history, 1, ""),
            *(("GET", path, self.h_klines, 0, "") for path in KLINE_KINDS),
            ("GET", "/fapi/v1/trades", self.h_trades, 5, ""),
            ("GET", "/fapi/v1/historicalTrades", self.h_historical_trades, 20, "key"),
            ("GET", "/fapi/v1/aggTrades", self.h_agg_trades, 20, ""),
            ("GET", "/fapi/v3/account", self.h_account, 5, "signed"),
            ("GET", "/fapi/v2/account", self.h_account, 5, "signed"),
            ("GET", "/fapi/v2/balance", self.h_balance, 5, "signed"),
            ("GET", "/fapi/v3/balance", self.h_balance, 5, "signed"),
            ("GET", "/fapi/v3/positionRisk", self.h_position_risk, 5, "signed"),
            ("GET", "/fapi/v2/positionRisk", self.h_position_risk_v2, 5, "signed"),
            ("GET", "/fapi/v1/leverageBracket", self.h_leverage_bracket, 1, "signed"),
            ("POST", "/fapi/v1/leverage", self.h_leverage, 1, "signed"),
            ("POST", "/fapi/v1/marginType", self.h_margin_type, 1, "signed"),
            ("GET", "/fapi/v1/symbolConfig", self.h_symbol_config, 5, "signed"),
            ("GET", "/fapi/v1/positionSide/dual", self.h_position_mode, 30, "signed"),
            ("GET", "/fapi/v1/commissionRate", self.h_commission, 20, "signed"),
            ("POST", "/fapi/v1/order", self.h_create_order, 0, "signed"),
            ("PUT", "/fapi/v1/order", self.h_modify_order, 0, "signed"),
            ("POST", "/fapi/v1/order/test", self.h_test_order, 0, "signed"),
            ("POST", "/fapi/v1/batchOrders", self.h_batch_create, 5, "signed"),
            ("PUT", "/fapi/v1/batchOrders", self.h_batch_modify, 5, "signed"),
            ("DELETE", "/fapi/v1/batchOrders", self.h_batch_cancel, 1, "signed"),
            ("POST", "/fapi/v1/countdownCancelAll", self.h_countdown_cancel_all, 10, "signed"),
            ("GET", "/fapi/v1/openOrder", self.h_open_order, 1, "signed"),
            ("GET", "/fapi/v1/forceOrders", self.h_force_orders, 20, "signed"),
            ("POST", "/fapi/v1/positionMargin", self.h_position_margin, 1, "signed"),
            ("GET", "/fapi/v1/positionMargin/history", self.h_margin_history, 1, "signed"),
            ("GET", "/fapi/v1/accountConfig", self.h_account_config, 5, "signed"),
            ("GET", "/fapi/v1/rateLimit/order", self.h_order_rate_limits, 1, "signed"),
            ("GET", "/fapi/v1/adlQuantile", self.h_adl_quantile, 5, "signed"),
            ("GET", "/fapi/v1/feeBurn", self.h_fee_burn, 30, "signed"),
            ("POST", "/fapi/v1/feeBurn", self.h_set_fee_burn, 1, "signed"),
            ("GET", "/fapi/v1/apiTradingStatus", self.h_trading_status, 1, "signed"),
            ("GET", "/fapi/v1/multiAssetsMargin", self.h_multi_assets, 30, "signed"),
            ("POST", "/fapi/v1/multiAssetsMargin", self.h_set_multi_assets, 1, "signed"),
            ("POST", "/fapi/v1/positionSide/dual", self.h_set_position_mode, 1, "signed"),
            ("GET", "/fapi/v1/order", self.h_query_order, 1, "signed"),
            ("DELETE", "/fapi/v1/order", self.h_cancel_order, 1, "signed"),
            ("GET", "/fapi/v1/openOrders", self.h_open_orders, 1, "signed"),
            ("GET", "/fapi/v1/allOrders", self.h_all_orders, 5, "signed"),
            ("DELETE", "/fapi/v1/allOpenOrders", self.h_cancel_all, 1, "signed"),
            ("POST", "/fapi/v1/algoOrder", self.h_create_algo, 0, "signed"),
            ("GET", "/fapi/v1/algoOrder", self.h_query_algo, 1, "signed"),
            ("DELETE", "/fapi/v1/algoOrder", self.h_cancel_algo, 1, "signed"),
            ("DELETE", "/fapi/v1/algoOpenOrders", self.h_cancel_all_algos, 1, "signed"),
            ("GET", "/fapi/v1/openAlgoOrders", self.h_open_algos, 1, "signed"),
            ("GET", "/fapi/v1/allAlgoOrders", self.h_all_algos, 5, "signed"),
            ("GET", "/fapi/v1/userTrades", self.h_user_trades, 5, "signed"),
            ("GET", "/fapi/v1/income", self.h_income, 30, "signed"),
            ("GET", "/sapi/v1/account/apiRestrictions", self.h_api_restrictions, 1, "signed"),
            ("POST", "/fapi/v1/listenKey", self.h_listen_key, 1, "key"),
            ("PUT", "/fapi/v1/listenKey", self.h_listen_key_keepalive, 1, "key"),
            ("DELETE", "/fapi/v1/listenKey", self.h_listen_key_close, 1, "key"),
        ]
        self._routes = {(m, p): (h, w, a) for m, p, h, w, a in routes}
        for method, path, *_ in routes:
            r.add_route(method, path, self._dispatch)
        ws_paths = ("/ws", "/ws/{names:.*}", "/stream", "/{area:public|market|private}/ws",
                    "/{area:public|market|private}/ws/{names:.*}", "/{area:public|market|private}/stream")  # fmt: skip
        for path in ws_paths:
            r.add_get(path, self._websocket)
        r.add_get("/_emu/state", self.admin_state)
        r.add_get("/_emu/faults", self.admin_get_faults)
        r.add_put("/_emu/faults", self.admin_put_faults)
        r.add_get("/_emu/scenario", self.admin_get_scenario)
        r.add_put("/_emu/scenario", self.admin_put_scenario)
        r.add_get("/_emu/clock", self.admin_get_clock)
        r.add_post("/_emu/clock/advance", self.admin_advance)
        r.add_route("*", "/{tail:.*}", self._not_found)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        if request.path.startswith("/_emu/") and request.remote not in ("127.0.0.1", "::1"):
            return _error(-2015, "The admin API answers on loopback only.", 403)
        started = time.perf_counter()
        try:
            return await handler(request)
        except Rejection as exc:
            return _error(exc.code, exc.msg, exc.status)
        except web.HTTPException:
            raise
        except Exception as exc:  # an emulator bug must still answer like Binance, and say what broke
            return _error(-1000, f"An unknown error occurred while processing the request: {exc!r}", 500)
        finally:
            self.busy_seconds += time.perf_counter() - started  # includes injected waits, by design

    async def _not_found(self, request: web.Request) -> web.Response:
        return _error(-5000, f"Path {request.path}, Method {request.method} is invalid", 404)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        handler, weight, auth = self._routes[(request.method, request.path)]
        raw_query = request.rel_url.raw_query_string
        raw_body = (await request.text()) if request.can_read_body else ""
        params = dict(parse_qsl(raw_query, keep_blank_values=True)) | dict(parse_qsl(raw_body, keep_blank_values=True))
        weight = _weight(request.path, params, weight)
        ip = request.remote or "?"
        status, retry_after, headers = self.limiter.check(ip, weight)
        if status is not None:
            self.limiter.answered[status] += 1
        if status == 418:
            return _error(-1003, f"Way too many requests; IP banned until {int(time.time() + retry_after) * 1000}.",
                          418, _retry_after(retry_after))  # fmt: skip
        if status == 429:
            return _error(-1003, "Too many requests; current limit is exceeded. Please use WebSocket Streams.",
                          429, headers | _retry_after(retry_after))  # fmt: skip
        rule = self.faults.pick(REST_KINDS, request.path, request.method, self.market.elapsed_s)
        accept_then_vanish: FaultRule | None = None
        if rule is not None:
            if rule.kind == "latency":
                await asyncio.sleep(rule.latency_ms / 1000)
            elif rule.kind == "stall":
                await self._hold(rule.seconds)
                return _error(-1007, "Timeout waiting for response from backend server.", 503)
            elif rule.kind == "http_error":
                return _error(rule.code, rule.msg, rule.status, headers)
            elif rule.kind == "rate_limit":
                self.limiter.cool_down(ip, rule.seconds)
                return _error(-1003, "Too many requests (injected).", 429, headers | _retry_after(rule.seconds))
            elif rule.kind == "ban":
                self.limiter.ban(ip, rule.seconds)
                return _error(-1003, "Way too many requests; IP banned (injected).", 418, _retry_after(rule.seconds))
            elif rule.kind == "timeout_after_accept":
                accept_then_vanish = rule
        try:
            account = self._authenticate(request, auth, raw_query, raw_body, params) if auth else None
            counts = ORDER_COUNTS.get((request.method, request.path))
            if counts is not None and account is not None:
                broken, retry, order_headers = self.limiter.count_orders(account.api_key, counts)
                headers |= order_headers
                if broken is not None:
                    self.limiter.answered[429] += 1
                    return _error(-1015, f"Too many new orders; current limit is {broken}.", 429,
                                  headers | _retry_after(retry))  # fmt: skip
            self._run_timers()
            result = await handler(request, params, account)
        except Rejection as exc:  # refusals carry the usage headers too
            return _error(exc.code, exc.msg, exc.status, headers)
        if accept_then_vanish is not None:
            await self._hold(accept_then_vanish.seconds)
        return _json(result, headers=headers)

    async def _hold(self, seconds: float) -> None:
        """Wait without answering (a stall), but let shutdown end the wait at once."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), seconds)

    def _authenticate(self, request: web.Request, auth: str, raw_query: str, raw_body: str, params: Params) -> Account:
        """The account behind the API key; for "signed" routes also the timestamp and HMAC signature."""
        key = request.headers.get("X-MBX-APIKEY", "")
        if not key:
            raise Rejection(-2014, "API-key format invalid.", 401)
        account = self.engine.accounts.get(key)
        if account is None:
            raise Rejection(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        if auth == "key":
            return account
        timestamp = _int(params, "timestamp")
        if timestamp is None:
            raise Rejection(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        recv_window = _int(params, "recvWindow", 5000) or 5000
        if recv_window > 60_000:
            raise Rejection(-1131, "recvWindow must be less than 60000")
        now = self.server_time_ms()
        if timestamp > now + 1000 or now - timestamp > recv_window:
            raise Rejection(-1021, "Timestamp for this request is outside of the recvWindow.")
        signature, payload = None, []
        for part in (raw_query, raw_body):  # Binance signs query string + body; the signature may be in either
            head, sep, tail = part.rpartition("signature=")
            if sep and "&" not in tail:
                signature, part = tail, head.removesuffix("&")
            payload.append(part)
        if signature is None:
            raise Rejection(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        expected = hmac.new(account.secret.encode(), "".join(payload).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise Rejection(-1022, "Signature for this request is not valid.")
        return account

    def _order_json(self, order: Order, as_accepted: bool = False) -> dict[str, Any]:
        return order_json(order, self.market.symbols[order.symbol].spec, as_accepted)

    # --------------------------------------------------------------------------- public market

    async def h_ping(self, request: web.Request, params: Params, account: Account | None) -> Any:
        return {}

    async def h_time(self, request: web.Request, params: Params, account: Account | None) -> Any:
        return {"serverTime": self.server_time_ms()}

    async def h_exchange_info(self, request: web.Request, params: Params, account: Account | None) -> Any:
        symbols = []
        for state in self.market.symbols.values():
            spec = state.spec
            symbols.append(
                {
                    "symbol": spec.symbol, "pair": spec.symbol, "contractType": "PERPETUAL",
                    "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
                    "baseAsset": spec.base, "quoteAsset": spec.quote, "marginAsset": spec.quote,
                    "pricePrecision": -int(spec.tick.as_tuple().exponent),
                    "quantityPrecision": -int(spec.step.as_tuple().exponent),
                    "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
                    "triggerProtect": "0.0500", "liquidationFee": plain(spec.liquidation_fee),
                    "marketTakeBound": "0.05",
                    "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
                    "filters": [
                        {"filterType": "PRICE_FILTER", "minPrice": plain(spec.tick), "maxPrice": "10000000",
                         "tickSize": plain(spec.tick)},
                        {"filterType": "LOT_SIZE", "minQty": plain(spec.min_qty), "maxQty": plain(spec.max_qty),
                         "stepSize": plain(spec.step)},
                        {"filterType": "MARKET_LOT_SIZE", "minQty": plain(spec.min_qty),
                         "maxQty": plain(spec.market_max_qty), "stepSize": plain(spec.step)},
                        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                        {"filterType": "MIN_NOTIONAL", "notional": plain(state.min_notional)},
                        {"filterType": "PERCENT_PRICE", "multiplierUp": plain(spec.percent_up),
                         "multiplierDown": plain(spec.percent_down), "multiplierDecimal": "4"},
                    ],
                    "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                                   "TRAILING_STOP_MARKET"],
                    "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
                }
            )  # fmt: skip
        s = self.settings
        return {
            "timezone": "UTC",
            "serverTime": self.server_time_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": s.weight_per_minute,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": s.orders_per_10s},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": s.orders_per_minute},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": symbols,
        }

    def _symbols(self, params: Params) -> list[str]:
        if "symbol" in params:
            self.engine.symbol(params["symbol"])
            return [params["symbol"]]
        return list(self.market.symbols)

    async def h_depth(self, request: web.Request, params: Params, account: Account | None) -> Any:
        state = self.engine.symbol(params.get("symbol"))
        limit = _int(params, "limit", 500) or 500
        if limit not in (5, 10, 20, 50, 100, 500, 1000):
            raise Rejection(-1130, "Invalid data sent for a parameter.")
        tick, step = _places(state.spec.tick), _places(state.spec.step)
        return {
            "lastUpdateId": state.update_id,
            "E": self.market.now_ms,
            "T": self.market.now_ms,
            "bids": [[_fixed(p, tick), _fixed(q, step)] for p, q in levels(state, "bids", limit)],
            "asks": [[_fixed(p, tick), _fixed(q, step)] for p, q in levels(state, "asks", limit)],
        }

    def _ticker(self, symbol: str) -> dict[str, Any]:
        st = self.market.symbols[symbol]
        last = self.market.last_price(symbol)
        change = last - st.day_open
        average = (st.day_quote_volume / st.day_volume).quantize(st.spec.tick) if st.day_volume else last
        last_qty = st.trades[-1].qty if st.trades else D(0)
        return {
            "symbol": symbol, "priceChange": plain(change),
            "priceChangePercent": plain((change / st.day_open * 100).quantize(D("0.001"))),
            "weightedAvgPrice": plain(average), "lastPrice": plain(last), "lastQty": plain(last_qty),
            "openPrice": plain(st.day_open),
            "highPrice": plain(st.day_high), "lowPrice": plain(st.day_low), "volume": plain(st.day_volume),
            "quoteVolume": plain(st.day_quote_volume), "openTime": self.market.start_ms,
            "closeTime": self.market.now_ms,
            "firstId": 1, "lastId": st.trade_id, "count": st.day_count,
        }  # fmt: skip

    async def h_ticker(self, request: web.Request, params: Params, account: Account | None) -> Any:
        rows = [self._ticker(s) for s in self._symbols(params)]
        return rows[0] if "symbol" in params else rows

    def _book_ticker(self, symbol: str) -> dict[str, Any]:
        st = self.market.symbols[symbol]
        bid, ask = st.bids[0] if st.bids else (st.mark, D(0)), st.asks[0] if st.asks else (st.mark, D(0))
        return {"symbol": symbol, "bidPrice": plain(bid[0]), "bidQty": plain(bid[1]), "askPrice": plain(ask[0]),
                "askQty": plain(ask[1]), "time": self.market.now_ms, "lastUpdateId": st.update_id}  # fmt: skip

    async def h_book_ticker(self, request: web.Request, params: Params, account: Account | None) -> Any:
        rows = [self._book_ticker(s) for s in self._symbols(params)]
        return rows[0] if "symbol" in params else rows

    async def h_price(self, request: web.Request, params: Params, account: Account | None) -> Any:
        rows = [{"symbol": s, "price": plain(self.market.last_price(s)), "time": self.market.now_ms}
                for s in self._symbols(params)]  # fmt: skip
        return rows[0] if "symbol" in params else rows

    def _premium(self, symbol: str) -> dict[str, Any]:
        st = self.market.symbols[symbol]
        return {
            "symbol": symbol, "markPrice": _fixed(st.mark, 8), "indexPrice": _fixed(st.index, 8),
            "estimatedSettlePrice": _fixed(st.index, 8), "lastFundingRate": _fixed(st.funding_rate, 8),
            "interestRate": "0.00010000", "nextFundingTime": self.market.next_funding_ms, "time": self.market.now_ms,
        }  # fmt: skip

    async def h_premium_index(self, request: web.Request, params: Params, account: Account | None) -> Any:
        rows = [self._premium(s) for s in self._symbols(params)]
        return rows[0] if "symbol" in params else rows

    async def h_funding_info(self, request: web.Request, params: Params, account: Account | None) -> Any:
        hours = self.market.funding_interval_ms / 3_600_000
        return [
            {"symbol": s, "adjustedFundingRateCap": plain(st.spec.funding_cap),
             "adjustedFundingRateFloor": plain(-st.spec.funding_cap),
             "fundingIntervalHours": int(hours) if hours == int(hours) else hours, "disclaimer": False}
            for s, st in self.market.symbols.items()
        ]  # fmt: skip

    async def h_funding_rate_history(self, request: web.Request, params: Params, account: Account | None) -> Any:
        rows: list[dict[str, Any]] = []
        for symbol in self._symbols(params):
            rows += [{"symbol": symbol, "fundingTime": t, "fundingRate": _fixed(rate, 8), "markPrice": _fixed(mark, 8)}
                     for t, rate, mark in self.market.history[symbol].funding()]  # fmt: skip
            rows += [r | {"fundingRate": _fixed(D(r["fundingRate"]), 8), "markPrice": _fixed(D(r["markPrice"]), 8)}
                     for r in self.engine.funding_rates if r["symbol"] == symbol]  # fmt: skip
        rows.sort(key=lambda r: r["fundingTime"])
        return _page(rows, "fundingTime", params, default=100, maximum=1000)

    async def h_klines(self, request: web.Request, params: Params, account: Account | None) -> Any:
        """Trade, mark, index and premium-index candles of every interval Binance serves."""
        kind = KLINE_KINDS[request.path]
        name = params.get("pair") if kind in ("index", "continuous") else params.get("symbol")
        if not name and kind in ("index", "continuous"):
            raise Rejection(-1102, "Mandatory parameter 'pair' was not sent, was empty/null, or malformed.")
        state = self.engine.symbol(name)
        if kind == "continuous" and params.get("contractType") != "PERPETUAL":
            raise Rejection(-1102, "Mandatory parameter 'contractType' was not sent, was empty/null, or malformed.")
        interval = params.get("interval")
        if not interval:
            raise Rejection(-1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.")
        if interval not in INTERVALS:
            raise Rejection(-1120, "Invalid interval.")
        limit = _limit(params, 500, 1500)
        candles = self.market.history[state.spec.symbol].candles(
            interval, "trade" if kind == "continuous" else kind, _int(params, "startTime"), _int(params, "endTime"),
            limit,
        )  # fmt: skip
        spec = state.spec
        if kind in ("trade", "continuous"):
            price, qty = _places(spec.tick), _places(spec.step)
            return [[c.open_ms, _units(c.open, price), _units(c.high, price), _units(c.low, price),
                     _units(c.close, price), _units(c.volume, qty), c.close_ms, _units(c.quote_volume, 8), c.trades,
                     _units(c.volume // 2, qty), _units(c.quote_volume // 2, 8), "0"] for c in candles]  # fmt: skip
        return [[c.open_ms, _units(c.open, 8), _units(c.high, 8), _units(c.low, 8), _units(c.close, 8), "0",
                 c.close_ms, "0", c.minutes, "0", "0", "0"] for c in candles]  # fmt: skip

    async def h_trades(self, request: web.Request, params: Params, account: Account | None) -> Any:
        """Recent trades: the newest `limit` of the market's last 10,000."""
        state = self.engine.symbol(params.get("symbol"))
        rows = list(state.recent)[-_limit(params, 500, 1000) :]
        return [self._trade_json(state, t) for t in rows]

    async def h_historical_trades(self, request: web.Request, params: Params, account: Account | None) -> Any:
        """Trades from `fromId` on; without it, the recent ones."""
        from_id = _int(params, "fromId")
        if from_id is None:
            return await self.h_trades(request, params, account)
        state = self.engine.symbol(params.get("symbol"))
        trades = itertools.islice(self._trades_from(state, from_id), _limit(params, 500, 1000))
        return [self._trade_json(state, t) for t in trades]

    @staticmethod
    def _trade_json(state: SymbolState, t: Trade) -> dict[str, Any]:
        price, qty = _places(state.spec.tick), _places(state.spec.step)
        return {"id": t.id, "price": _fixed(t.price, price), "qty": _fixed(t.qty, qty),
                "quoteQty": _fixed(t.price * t.qty, 8), "time": t.time_ms, "isBuyerMaker": t.buyer_maker}  # fmt: skip

    def _trades_from(self, state: SymbolState, first_id: int) -> Iterator[Trade]:
        """Trades from id `first_id` on: the generated history's, then the live market's it still holds."""
        yield from map(_trade, self.market.history[state.spec.symbol].trades_from_id(first_id))
        yield from (t for t in state.recent if t.id >= first_id)

    async def h_agg_trades(self, request: web.Request, params: Params, account: Account | None) -> Any:
        """Aggregate trades by `fromId`, by time (at most an hour), or the newest; oldest first."""
        state = self.engine.symbol(params.get("symbol"))
        limit, from_id = _limit(params, 500, 1000), _int(params, "fromId")
        start, end = _int(params, "startTime"), _int(params, "endTime")
        if start is not None and end is not None and not 0 <= end - start <= 3_600_000:
            raise Rejection(-1127, "More than 1 hours between startTime and endTime.")
        if from_id is not None:
            rows = list(itertools.islice(
                (t for t in self._trades_from(state, from_id)
                 if (start is None or t.time_ms >= start) and (end is None or t.time_ms <= end)), limit))  # fmt: skip
        elif start is not None or end is not None:
            lo = start if start is not None else end - 3_600_000  # type: ignore[operator]
            hi = end if end is not None else lo + 3_600_000
            generated = [_trade(t) for t in self.market.history[state.spec.symbol].trades(lo, hi + 1)]
            live = [t for t in state.recent if lo <= t.time_ms <= hi]
            rows = (generated + live)[:limit] if start is not None else (generated + live)[-limit:]
        else:
            rows = list(state.recent)[-limit:]
        tick, step = _places(state.spec.tick), _places(state.spec.step)
        return [{"a": t.id, "p": _fixed(t.price, tick), "q": _fixed(t.qty, step), "f": t.id, "l": t.id,
                 "T": t.time_ms, "m": t.buyer_maker} for t in rows]  # fmt: skip

    # ------------------------------------------------------------------------------- account

    async def h_account(self, request: web.Request, params: Params, account: Account | None) -> Any:
        """v3: assets and the open positions; v2 also the account's flags and every symbol's position row."""
        assert account is not None
        row = account_json(self.engine, account)
        if request.path.startswith("/fapi/v2/"):
            row = {"feeTier": 0, "feeBurn": False, "canTrade": True, "canDeposit": True, "canWithdraw": True,
                   "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1} | row  # fmt: skip
            fields = ("symbol", "initialMargin", "maintMargin", "positionInitialMargin", "openOrderInitialMargin",
                      "leverage", "isolated", "entryPrice", "breakEvenPrice", "maxNotional", "positionSide",
                      "positionAmt", "notional", "isolatedWallet", "updateTime", "bidNotional", "askNotional")
            row["positions"] = [{k: r[k] for k in fields} | {"unrealizedProfit": r["unRealizedProfit"]}
                                for r in (self._position_v2(account, s) for s in self.market.symbols)]  # fmt: skip
        return row

    async def h_balance(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        asset = account_json(self.engine, account)["assets"][0]
        return [{"accountAlias": "emu", "asset": "USDT", "balance": asset["walletBalance"],
                 "crossWalletBalance": asset["crossWalletBalance"], "crossUnPnl": asset["crossUnPnl"],
                 "availableBalance": asset["availableBalance"], "maxWithdrawAmount": asset["maxWithdrawAmount"],
                 "marginAvailable": True, "updateTime": asset["updateTime"]}]  # fmt: skip

    async def h_position_risk(self, request: web.Request, params: Params, account: Account | None) -> Any:
        """v3: only the symbols with a position or open orders."""
        assert account is not None
        return [position_json(self.engine, account, s) for s in self._symbols(params)
                if account.position(s).qty or account.open_orders(s)]  # fmt: skip

    def _position_v2(self, account: Account, symbol: str) -> dict[str, Any]:
        row = position_json(self.engine, account, symbol)
        config = account.config(symbol)
        cap = plain(notional_cap_for_leverage(config.leverage, self.market.symbols[symbol].tiers))
        row |= {"leverage": str(config.leverage), "marginType": "isolated" if config.margin_type == "ISOLATED"
                else "cross", "isAutoAddMargin": "false", "isolated": config.margin_type == "ISOLATED",
                "maxNotionalValue": cap, "maxNotional": cap}  # fmt: skip
        return row

    async def h_position_risk_v2(self, request: web.Request, params: Params, account: Account | None) -> Any:
        """v2: every symbol asked for, flat or not."""
        assert account is not None
        return [self._position_v2(account, s) for s in self._symbols(params)]

    async def h_leverage_bracket(self, request: web.Request, params: Params, account: Account | None) -> Any:
        rows = [
            {"symbol": s, "notionalCoef": 1.0, "brackets": [
                {"bracket": i, "initialLeverage": t.max_leverage, "notionalCap": float(t.cap),
                 "notionalFloor": float(t.floor), "maintMarginRatio": float(t.mmr), "cum": float(t.cum)}
                for i, t in enumerate(self.market.symbols[s].tiers, start=1)]}
            for s in self._symbols(params)
        ]  # fmt: skip
        return rows[0] if "symbol" in params else rows

    async def h_leverage(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        leverage = _int(params, "leverage")
        if leverage is None:
            raise Rejection(-1102, "Mandatory parameter 'leverage' was not sent, was empty/null, or malformed.")
        return self.engine.set_leverage(account, params.get("symbol", ""), leverage)

    async def h_margin_type(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        return self.engine.set_margin_type(account, params.get("symbol", ""), params.get("marginType", ""))

    async def h_symbol_config(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        return [
            {"symbol": s, "marginType": account.config(s).margin_type, "isAutoAddMargin": "false",
             "leverage": account.config(s).leverage, "maxNotionalValue": "1000000000"}
            for s in self._symbols(params)
        ]  # fmt: skip

    async def h_position_mode(self, request: web.Request, params: Params, account: Account | None) -> Any:
        return {"dualSidePosition": False}

    async def h_commission(self, request: web.Request, params: Params, account: Account | None) -> Any:
        self.engine.symbol(params.get("symbol"))
        return {"symbol": params["symbol"], "makerCommissionRate": plain(self.engine.maker_fee),
                "takerCommissionRate": plain(self.engine.taker_fee)}  # fmt: skip

    # -------------------------------------------------------------------------------- orders

    def _new_order(self, params: Params) -> dict[str, Any]:
        """A new order's fields from its parameters, checked as Binance checks them on the wire."""
        side, type = _one_way_side_and_type(params)
        if type is OrderType.LIMIT and not params.get("timeInForce"):
            raise Rejection(-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")
        return {"symbol": params.get("symbol"), "side": side, "type": type,
                "qty": _decimal(params, "quantity") or D(0), "price": _decimal(params, "price", required=False),
                "time_in_force": params.get("timeInForce"), "reduce_only": _flag(params, "reduceOnly"),
                "client_id": params.get("newClientOrderId")}  # fmt: skip

    async def h_create_order(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        answer = params.get("newOrderRespType", "ACK")
        if answer not in ("ACK", "RESULT"):
            raise Rejection(-1136, "Invalid newOrderRespType.")
        order = self.engine.place_order(account, **self._new_order(params))
        return self._order_json(order) if answer == "RESULT" else self._order_json(order, as_accepted=True)

    async def h_test_order(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        self.engine.check_order(account, **self._new_order(params))
        return {}

    async def h_modify_order(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        side = _from_wire(OrderSide, params.get("side", ""), -1117, "Invalid side.")
        qty, price = _decimal(params, "quantity") or D(0), _decimal(params, "price") or D(0)
        order = self.engine.modify_order(account, params.get("symbol"), *self._order_ref(params), side=side, qty=qty,
                                         price=price)  # fmt: skip
        return self._order_json(order)

    @staticmethod
    async def _each(handler: Handler, request: web.Request, items: list[Params], account: Account | None) -> Any:
        """A batch: each item through the single-order handler, its answer or its refusal in its place."""
        answers: list[Any] = []
        for item in items:
            try:
                answers.append(await handler(request, item, account))
            except Rejection as exc:
                answers.append({"code": exc.code, "msg": exc.msg})
        return answers

    async def h_batch_create(self, request: web.Request, params: Params, account: Account | None) -> Any:
        items = [item | {"newOrderRespType": "RESULT"} for item in _batch(params, "batchOrders", 5)]
        return await self._each(self.h_create_order, request, items, account)

    async def h_batch_modify(self, request: web.Request, params: Params, account: Account | None) -> Any:
        return await self._each(self.h_modify_order, request, _batch(params, "batchOrders", 5), account)

    async def h_batch_cancel(self, request: web.Request, params: Params, account: Account | None) -> Any:
        ids, client_ids = params.get("orderIdList"), params.get("origClientOrderIdList")
        refs: list[dict[str, str]] = []
        for raw, name in ((ids, "orderId"), (client_ids, "origClientOrderId")):
            if raw:
                try:
                    values = json.loads(raw)
                except ValueError:
                    raise Rejection(-1130, "Invalid data sent for a parameter.") from None
                if not isinstance(values, list) or len(values) > 10:
                    raise Rejection(-1130, "Invalid data sent for a parameter.")
                refs += [{"symbol": params.get("symbol", ""), name: str(v)} for v in values]
        if not refs:
            raise Rejection(-1102, "Mandatory parameter 'orderIdList' was not sent, was empty/null, or malformed.")
        return await self._each(self.h_cancel_order, request, refs, account)

    async def h_countdown_cancel_all(self, request: web.Request, params: Params, account: Account | None) -> Any:
        """A dead man's switch: cancel the symbol's open orders unless called again within `countdownTime` ms
        (0 switches it off)."""
        assert account is not None
        symbol = params.get("symbol")
        self.engine.symbol(symbol)
        countdown = _int(params, "countdownTime")
        if countdown is None:
            raise Rejection(-1102, "Mandatory parameter 'countdownTime' was not sent, was empty/null, or malformed.")
        key = (account.api_key, str(symbol))
        if countdown == 0:
            self.countdowns.pop(key, None)
        else:
            self.countdowns[key] = self.server_time_ms() + countdown
        return {"symbol": symbol, "countdownTime": str(countdown)}

    def _run_timers(self) -> None:
        """What falls due on the server's clock: countdownCancelAll deadlines and listen keys (checked at each
        market step and each request)."""
        self._expire_listen_keys()
        if not self.countdowns:
            return
        now = self.server_time_ms()
        for (key, symbol), deadline in list(self.countdowns.items()):
            if deadline <= now:
                del self.countdowns[(key, symbol)]
                self.engine.cancel_all(self.engine.accounts[key], symbol)

    async def h_open_order(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        order = self.engine.find_order(account, params.get("symbol"), *self._order_ref(params))
        if not order.is_open:
            raise Rejection(-2013, "Order does not exist.")
        return self._order_json(order)

    async def h_force_orders(self, request: web.Request, params: Params, account: Account | None) -> Any:
        """The account's liquidation orders (autoCloseType LIQUIDATION; the emulator has no ADL)."""
        assert account is not None
        symbol = params.get("symbol")
        if symbol is not None:
            self.engine.symbol(symbol)
        if params.get("autoCloseType", "LIQUIDATION") != "LIQUIDATION":
            return []
        rows = [self._order_json(o) for o in account.orders.values()
                if o.type is OrderType.LIQUIDATION and symbol in (None, o.symbol)]  # fmt: skip
        return _page(rows, "time", params, default=50, maximum=100, recent_ms=WEEK_MS, now_ms=self.market.now_ms)

    async def h_position_margin(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        amount = _decimal(params, "amount") or D(0)
        kind = _int(params, "type")
        if kind is None:
            raise Rejection(-1102, "Mandatory parameter 'type' was not sent, was empty/null, or malformed.")
        self.engine.modify_isolated_margin(account, params.get("symbol"), amount, kind)
        self.margin_changes.setdefault(account.api_key, []).append(
            {"symbol": params.get("symbol"), "type": kind, "deltaType": "TRADE", "amount": plain(amount),
             "asset": "USDT", "time": self.market.now_ms, "positionSide": "BOTH"}
        )  # fmt: skip
        return {"amount": float(amount), "code": 200, "msg": "Successfully modify position margin.", "type": kind}

    async def h_margin_history(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        self.engine.symbol(params.get("symbol"))
        rows = [r for r in self.margin_changes.get(account.api_key, []) if r["symbol"] == params["symbol"]]
        if params.get("type"):
            rows = [r for r in rows if str(r["type"]) == params["type"]]
        return _page(rows, "time", params, default=500, maximum=500, recent_ms=30 * 86_400_000,
                     now_ms=self.market.now_ms)  # fmt: skip

    async def h_account_config(self, request: web.Request, params: Params, account: Account | None) -> Any:
        return {"feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True, "dualSidePosition": False,
                "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1}  # fmt: skip

    async def h_order_rate_limits(self, request: web.Request, params: Params, account: Account | None) -> Any:
        s = self.settings
        return [
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": s.orders_per_10s},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": s.orders_per_minute},
        ]

    async def h_adl_quantile(self, request: web.Request, params: Params, account: Account | None) -> Any:
        """Every position's auto-deleveraging queue: the emulator has no ADL, so always the front (0)."""
        assert account is not None
        return [{"symbol": s, "adlQuantile": {"LONG": 0, "SHORT": 0, "BOTH": 0}}
                for s in self._symbols(params) if account.position(s).qty]  # fmt: skip

    async def h_fee_burn(self, request: web.Request, params: Params, account: Account | None) -> Any:
        return {"feeBurn": False}

    async def h_set_fee_burn(self, request: web.Request, params: Params, account: Account | None) -> Any:
        if _flag(params, "feeBurn"):
            raise Rejection(-1020, "This operation is not supported: the emulator pays fees in USDT only.")
        return {"code": 200, "msg": "success"}

    async def h_trading_status(self, request: web.Request, params: Params, account: Account | None) -> Any:
        return {"indicators": {}, "updateTime": self.market.now_ms}

    async def h_multi_assets(self, request: web.Request, params: Params, account: Account | None) -> Any:
        return {"multiAssetsMargin": False}

    async def h_set_multi_assets(self, request: web.Request, params: Params, account: Account | None) -> Any:
        if _flag(params, "multiAssetsMargin"):
            raise Rejection(-1020, "This operation is not supported: the emulator has single-asset mode only.")
        raise Rejection(-4171, "Adjusted asset mode is currently set and does not need to be adjusted repeatedly")

    async def h_set_position_mode(self, request: web.Request, params: Params, account: Account | None) -> Any:
        if _flag(params, "dualSidePosition"):
            raise Rejection(-1020, "This operation is not supported: the emulator has one-way mode only.")
        raise Rejection(-4059, "No need to change position side.")

    async def h_open_interest(self, request: web.Request, params: Params, account: Account | None) -> Any:
        """Open interest: a base from the book's depth plus every account's open positions, and a crowd's
        (crowded-squeeze: it rises as the crowd piles in and falls as it is liquidated)."""
        state = self.engine.symbol(params.get("symbol"))
        held = sum((abs(a.position(state.spec.symbol).qty) for a in self.engine.accounts.values()), ZERO)
        crowd = self.market.crowds.get(state.spec.symbol)
        if crowd is not None:
            held += Decimal(repr(crowd.open_qty()))
        return {"symbol": state.spec.symbol, "openInterest": _fixed(state.spec.depth * 5000 + held,
                _places(state.spec.step)), "time": self.market.now_ms}  # fmt: skip

    def _order_ref(self, params: dict[str, str]) -> tuple[int | None, str | None]:
        order_id, client_id = _int(params, "orderId"), params.get("origClientOrderId")
        if order_id is None and client_id is None:
            raise Rejection(-1102, "Either orderId or origClientOrderId must be sent.")
        return order_id, client_id

    async def h_query_order(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        return self._order_json(self.engine.find_order(account, params.get("symbol"), *self._order_ref(params)))

    async def h_cancel_order(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        return self._order_json(self.engine.cancel_order(account, params.get("symbol"), *self._order_ref(params)))

    async def h_open_orders(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        symbol = params.get("symbol")
        if symbol is not None:
            self.engine.symbol(symbol)
        return [self._order_json(o) for o in account.open_orders(symbol)]

    async def h_all_orders(self, request: web.Request, params: Params, account: Account | None) -> Any:
        """A symbol's orders: from `orderId` on, else by time (at most 7 days apart), else the newest."""
        assert account is not None
        self.engine.symbol(params.get("symbol"))
        rows = [self._order_json(o) for o in account.orders.values() if o.symbol == params["symbol"]]
        return _id_or_time_page(rows, "orderId", _int(params, "orderId"), params)

    async def h_cancel_all(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        self.engine.cancel_all(account, params.get("symbol"))
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    async def h_create_algo(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        if params.get("algoType") != "CONDITIONAL":
            raise Rejection(-1102, "Mandatory parameter 'algoType' was not sent, was empty/null, or malformed.")
        side, type = _one_way_side_and_type(params)
        algo = self.engine.place_algo(
            account,
            symbol=params.get("symbol"),
            side=side,
            type=type,
            qty=_decimal(params, "quantity", required=False),
            trigger=_decimal(params, "triggerPrice", required=False),
            price=_decimal(params, "price", required=False),
            working_type=params.get("workingType", "CONTRACT_PRICE"),
            reduce_only=_flag(params, "reduceOnly"),
            close_position=_flag(params, "closePosition"),
            price_protect=_flag(params, "priceProtect"),
            time_in_force=params.get("timeInForce"),
            client_id=params.get("clientAlgoId"),
            activate=_decimal(params, "activatePrice", required=False)
            or _decimal(params, "activationPrice", required=False),
            callback_rate=_decimal(params, "callbackRate", required=False),
        )
        return algo_json(algo)

    def _algo(self, account: Account, params: Params) -> AlgoOrder:
        algo_id, client_id = _int(params, "algoId"), params.get("clientAlgoId")
        if algo_id is None and client_id is None:
            raise Rejection(-1102, "Either algoId or clientAlgoId must be sent.")
        return self.engine.find_algo(account, algo_id, client_id)

    async def h_query_algo(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        return algo_json(self._algo(account, params), account)

    async def h_cancel_algo(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        algo_id, client_id = _int(params, "algoId"), params.get("clientAlgoId")
        if algo_id is None and client_id is None:
            raise Rejection(-1102, "Either algoId or clientAlgoId must be sent.")
        algo = self.engine.cancel_algo(account, algo_id, client_id)
        return {"algoId": algo.id, "clientAlgoId": algo.client_id, "code": "200", "msg": "success"}

    async def h_cancel_all_algos(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        self.engine.cancel_all_algos(account, params.get("symbol"))
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    async def h_open_algos(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        symbol = params.get("symbol")
        if symbol is not None:
            self.engine.symbol(symbol)
        shown = self.engine.visible_algos(account)
        return [algo_json(a, account) for a in shown if a.is_open and symbol in (None, a.symbol)]

    async def h_all_algos(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        self.engine.symbol(params.get("symbol"))
        rows = [algo_json(a, account) for a in self.engine.visible_algos(account) if a.symbol == params["symbol"]]
        return rows[-(_int(params, "limit", 500) or 500) :]

    async def h_user_trades(self, request: web.Request, params: Params, account: Account | None) -> Any:
        """A symbol's fills: from `fromId` on, else by time (at most 7 days apart), else the newest."""
        assert account is not None
        self.engine.symbol(params.get("symbol"))
        from_id = _int(params, "fromId")
        if from_id is not None and ("startTime" in params or "endTime" in params):
            raise Rejection(-1128, "Combination of optional parameters invalid.")
        rows = [fill_json(f) for f in account.fills if f.symbol == params["symbol"]]
        return _id_or_time_page(rows, "id", from_id, params)

    async def h_income(self, request: web.Request, params: Params, account: Account | None) -> Any:
        """Income rows by time, oldest first; with neither startTime nor endTime, the last 7 days'."""
        assert account is not None
        kind, symbol = params.get("incomeType"), params.get("symbol")
        rows = [income_json(i) for i in account.incomes if kind in (None, i.income_type) and symbol in (None, i.symbol)]
        return _page(rows, "time", params, default=100, maximum=1000, recent_ms=WEEK_MS, now_ms=self.market.now_ms)

    async def h_api_restrictions(self, request: web.Request, params: Params, account: Account | None) -> Any:
        return {"ipRestrict": False, "createTime": self.market.start_ms, "enableReading": True,
                "enableFutures": True, "enableWithdrawals": self.settings.withdrawals_enabled,
                "enableInternalTransfer": False, "permitsUniversalTransfer": False, "enableVanillaOptions": False,
                "enableMargin": False, "enableSpotAndMarginTrading": False}  # fmt: skip

    async def h_listen_key(self, request: web.Request, params: Params, account: Account | None) -> Any:
        """The account's listen key (the one it has, if valid), good for 60 minutes from now."""
        assert account is not None
        key = self._listen_key_of(account) or secrets.token_urlsafe(48)[:64]
        self.listen_keys[key] = (account, self.server_time_ms() + LISTEN_KEY_MS)
        return {"listenKey": key}

    async def h_listen_key_keepalive(self, request: web.Request, params: Params, account: Account | None) -> Any:
        assert account is not None
        key = self._listen_key_of(account)
        if key is None:
            raise Rejection(-1125, "This listenKey does not exist.")
        self.listen_keys[key] = (account, self.server_time_ms() + LISTEN_KEY_MS)
        return {"listenKey": key}

    def _listen_key_of(self, account: Account) -> str | None:
        """The account's live listen key (Binance keeps one per account)."""
        return next((key for key, (owner, _) in self.listen_keys.items() if owner is account), None)

    async def h_listen_key_close(self, request: web.Request, params: Params, account: Account | None) -> Any:
        self.listen_keys = {k: v for k, v in self.listen_keys.items() if v[0] is not account}
        return {}

    def _expire_listen_keys(self) -> None:
        """A listen key not kept alive for 60 minutes ends: its streams get listenKeyExpired and then nothing."""
        if not self.listen_keys:
            return
        now = self.server_time_ms()
        for key, (_, expiry) in list(self.listen_keys.items()):
            if expiry <= now:
                del self.listen_keys[key]
                for sock in self.sockets:
                    if key in sock.streams:
                        sock.publish(key, {"e": "listenKeyExpired", "E": now, "listenKey": key})
                        sock.streams.discard(key)

    # ---------------------------------------------------------------------------- WebSockets

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        """Raw (/ws, /ws/<name>[/<name>...]) and combined (/stream?streams=a/b) connections, on the plain,
        /public, /market and /private paths; a name is a market stream or a listen key (also
        /private/ws?listenKey=...). More can be added with SUBSCRIBE."""
        combined = request.path.endswith("/stream")
        names = request.match_info.get("names", "") or request.query.get("streams", "")
        wanted = [n for n in names.split("/") if n]
        if request.query.get("listenKey"):
            wanted.append(request.query["listenKey"])
        if request.match_info.get("area") == "private" and not any(n in self.listen_keys for n in wanted):
            return _error(-1125, "This listenKey does not exist.", 400)
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        sock = _Socket(ws, request.path, combined)
        for name in wanted:
            self._subscribe(sock, name)
        self.sockets.add(sock)
        writer = asyncio.create_task(sock.write_forever())
        try:
            # a client that vanishes mid-frame resets the connection: there is no one left to answer
            with contextlib.suppress(ConnectionResetError):
                async for msg in ws:
                    if msg.type == WSMsgType.TEXT:
                        self._answer_frame(sock, msg.data)
        finally:
            self.sockets.discard(sock)
            writer.cancel()
        return ws

    def _subscribe(self, sock: _Socket, name: str) -> bool:
        """Add a market stream or a listen key to a connection; False if it is neither."""
        if name in self.listen_keys:
            sock.streams.add(name)
            return True
        if not (SYMBOL_STREAM.match(name) or ALL_STREAM.match(name)):
            return False
        followed = any(name in other.streams for other in self.sockets if other is not sock)
        sock.streams.add(name)
        symbol, _, kind = name.partition("@")
        state = self.market.symbols.get(symbol.upper())
        if kind.startswith("depth") and state is not None and not followed:
            # no one else follows this stream: its chain starts here, its first event telling every change
            self.depth_marks[(state.spec.symbol, name)] = (book_side(state, "bids"), book_side(state, "asks"),
                                                           state.update_id)  # fmt: skip
        return True

    def _answer_frame(self, sock: _Socket, data: str) -> None:
        """SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY and GET_PROPERTY, with Binance's errors."""
        try:
            frame = json.loads(data)
        except ValueError as exc:
            sock.send({"error": {"code": 3, "msg": f"Invalid JSON: {exc}"}, "id": None})
            return
        if not isinstance(frame, dict):
            sock.send({"error": {"code": 3, "msg": "Invalid JSON: expected an object"}, "id": None})
            return
        ident, method, params = frame.get("id"), frame.get("method"), frame.get("params")
        if ident is not None and (not isinstance(ident, int) or isinstance(ident, bool) or ident < 0):
            sock.send({"error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"},
                       "id": None})  # fmt: skip
            return
        if method is None:
            sock.send({"error": {"code": 2, "msg": "Invalid request: missing field `method`"}, "id": ident})
            return
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                sock.send({"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": ident})
                return
            if method == "UNSUBSCRIBE":
                sock.streams.difference_update(params)
            elif not all([self._subscribe(sock, p) for p in params]):
                sock.send({"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": ident})
                return
            sock.send({"result": None, "id": ident})
        elif method == "LIST_SUBSCRIPTIONS":
            sock.send({"result": sorted(sock.streams), "id": ident})
        elif method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not isinstance(params, list) or not params or params[0] != "combined":
                sock.send({"error": {"code": 0, "msg": "Unknown property"}, "id": ident})
            elif method == "GET_PROPERTY":
                sock.send({"result": sock.combined, "id": ident})
            elif len(params) != 2 or not isinstance(params[1], bool):
                sock.send({"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": ident})
            else:
                sock.combined = params[1]
                sock.send({"result": None, "id": ident})
        else:
            sock.send({"error": {"code": 2, "msg": f"Invalid request: unknown variant `{method}`, expected one of "
                                 "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"},
                       "id": ident})  # fmt: skip

    def _on_private_event(self, account: Account, event: EngineEvent) -> None:
        key = self._listen_key_of(account)
        if key is None:
            return
        frames = self._user_frames(account, event)
        for sock in self.sockets:
            if key in sock.streams:
                for frame in frames:
                    sock.publish(key, frame)

    def _user_frames(self, account: Account, event: EngineEvent) -> list[dict[str, Any]]:
        """An engine event as Binance's user data stream sends it (a fill also as a TRADE_LITE event)."""
        if isinstance(event, AlgoChanged):
            a = event.algo
            return [{
                "e": "ALGO_UPDATE", "T": event.time_ms, "E": event.time_ms,
                "o": {
                    "caid": a.client_id, "aid": a.id, "at": "CONDITIONAL", "o": _wire(a.type), "s": a.symbol,
                    "S": _wire(a.side), "ps": "BOTH", "f": a.time_in_force, "q": plain(a.qty), "X": a.status,
                    "ai": str(a.order_id or ""), "ap": plain(_child_average(account, a)),
                    "aq": plain(_child_filled(account, a)), "act": "MARKET" if a.order_id else "0",
                    "tp": plain(a.trigger), "p": plain(a.price), "V": "EXPIRE_MAKER", "wt": a.working_type,
                    "pm": "NONE", "cp": a.close_position, "pP": a.price_protect, "R": a.reduce_only,
                    "tt": a.trigger_ms, "gtd": 0, "rm": a.reason,
                },
            }]  # fmt: skip
        if isinstance(event, OrderChanged):
            order, fill = event.order, event.fill
            frames = [{
                "e": "ORDER_TRADE_UPDATE", "E": event.time_ms, "T": event.time_ms,
                "o": {
                    "s": order.symbol, "c": order.client_id, "S": _wire(order.side), "o": _wire(order.type),
                    "f": order.time_in_force, "q": plain(order.qty), "p": plain(order.price),
                    "ap": plain(order.average), "sp": "0",
                    "x": event.execution, "X": order.status, "i": order.id,
                    "l": plain(fill.qty if fill else ZERO), "z": plain(order.filled),
                    "L": plain(fill.price if fill else ZERO), "n": plain(fill.commission if fill else ZERO),
                    "N": "USDT", "T": event.time_ms, "t": fill.id if fill else 0,
                    "b": plain(self._order_notional(account, order.symbol, OrderSide.BUY)),
                    "a": plain(self._order_notional(account, order.symbol, OrderSide.SELL)),
                    "m": bool(fill and fill.maker), "R": order.reduce_only, "wt": "CONTRACT_PRICE",
                    "ot": _wire(order.type), "ps": "BOTH", "cp": False,
                    "rp": plain(fill.realized_pnl if fill else ZERO), "pP": False, "si": 0, "ss": 0,
                    "V": "NONE", "pm": "NONE", "gtd": 0, "er": "0",
                },
            }]  # fmt: skip
            if fill is not None:
                frames.append({
                    "e": "TRADE_LITE", "E": event.time_ms, "T": event.time_ms, "s": order.symbol,
                    "q": plain(order.qty), "p": plain(order.price), "m": fill.maker, "c": order.client_id,
                    "S": _wire(order.side), "L": plain(fill.price), "l": plain(fill.qty), "t": fill.id, "i": order.id,
                })  # fmt: skip
            return frames
        pos, config = account.position(event.symbol), account.config(event.symbol)
        return [{
            "e": "ACCOUNT_UPDATE", "E": event.time_ms, "T": event.time_ms,
            "a": {
                "m": event.reason,
                "B": [{"a": "USDT", "wb": plain(account.wallet_balance), "cw": plain(account.wallet), "bc": "0"}],
                "P": [
                    {"s": event.symbol, "pa": plain(pos.qty), "ep": plain(pos.entry),
                     "bep": plain(_break_even(pos.qty, pos.entry, self.engine.taker_fee,
                                              self.market.symbols[event.symbol].spec.tick)) if pos.qty else "0",
                     "cr": "0", "up": plain(self.engine.unrealized(account, event.symbol)),
                     "mt": "isolated" if config.margin_type == "ISOLATED" else "cross",
                     "iw": plain(pos.isolated_wallet), "ps": "BOTH"}
                ],
            },
        }]  # fmt: skip

    @staticmethod
    def _order_notional(account: Account, symbol: str, side: OrderSide) -> Decimal:
        return sum((o.remaining * o.price for o in account.open_orders(symbol) if o.side is side), ZERO)

    def _broadcast_market(self) -> None:
        """Send each market stream's events for this step to every connection subscribed to it."""
        if not self.sockets:
            return
        elapsed = self.market.elapsed_s
        stalled = self.market.feed_stalled()
        made: dict[str, list[Any]] = {}  # each stream's events this step, made once for every subscriber
        sent_depth: set[tuple[str, str]] = set()  # the depth streams that sent at this step
        for sock in list(self.sockets):
            market_streams = [s for s in sock.streams if s not in self.listen_keys]
            if not market_streams:
                continue
            if self.faults.pick(("ws_disconnect",), sock.path, "*", elapsed) is not None:
                sock.outbox.put_nowait(CLOSE_FRAME)
                continue
            for stream in market_streams:
                if stalled or self.faults.pick(("freeze_feed",), stream, "*", elapsed):
                    continue
                if stream not in made:
                    made[stream] = self._stream_events(stream, sent_depth)
                corrupt = self.faults.pick(("corrupt_frame",), stream, "*", elapsed)
                for payload in made[stream]:
                    sock.publish(stream, _garbled(payload) if corrupt and isinstance(payload, dict) else payload)
        self._liquidations_sent = len(self.engine.liquidations)
        followed = {stream for sock in self.sockets for stream in sock.streams}
        for (symbol, stream), (bids, asks, _) in self.depth_marks.items():
            if stream in followed and (symbol, stream) not in sent_depth and ("@depth@" in stream or
                                                                           stream.endswith("@depth")):  # fmt: skip
                state = self.market.symbols[symbol]  # a diff stream that did not send notes what moved
                bids.watch(state, "bids")
                asks.watch(state, "asks")

    def _due(self, period_ms: int) -> bool:
        """Whether a stream sending every `period_ms` of market time sends at this step."""
        now = self.market.now_ms
        return period_ms == 0 or now // period_ms != (now - self.market.step_ms) // period_ms

    def _stream_events(self, stream: str, sent_depth: set[tuple[str, str]]) -> list[Any]:
        """The events one market stream sends at this step (an all-symbol stream's event is a list)."""
        if stream.startswith("!"):
            kind = stream[1:].removesuffix("@arr").removesuffix("@arr@1s")
            period = _period_ms(stream[1:].replace("@arr", ""))
            if not self._due(period):
                return []
            rows = [e for symbol in self.market.symbols for e in self._symbol_events(symbol, kind, stream, sent_depth)]
            return rows if kind in ("bookTicker", "forceOrder") else [rows] if rows else []
        name, _, kind = stream.partition("@")
        state = self.market.symbols.get(name.upper())
        if state is None or not self._due(_period_ms(kind)):
            return []
        return self._symbol_events(state.spec.symbol, kind, stream, sent_depth)

    def _symbol_events(self, s: str, kind: str, stream: str, sent_depth: set[tuple[str, str]]) -> list[dict[str, Any]]:
        state, now = self.market.symbols[s], self.market.now_ms
        tick, step = _places(state.spec.tick), _places(state.spec.step)
        if kind.startswith("depth"):
            sent_depth.add((s, stream))
            return self._depth_event(state, kind, stream)
        if kind == "bookTicker":
            bt = self._book_ticker(s)
            return [{"e": "bookTicker", "u": state.update_id, "s": s, "b": bt["bidPrice"], "B": bt["bidQty"],
                     "a": bt["askPrice"], "A": bt["askQty"], "T": now, "E": now}]  # fmt: skip
        if kind == "trade":
            return [{"e": "trade", "E": now, "T": t.time_ms, "s": s, "t": t.id, "p": _fixed(t.price, tick),
                     "q": _fixed(t.qty, step), "X": "MARKET", "m": t.buyer_maker} for t in state.trades]  # fmt: skip
        if kind == "aggTrade":
            return [{"e": "aggTrade", "E": now, "s": s, "a": t.id, "p": _fixed(t.price, tick), "q": _fixed(t.qty, step),
                     "f": t.id, "l": t.id, "T": t.time_ms, "m": t.buyer_maker} for t in state.trades]  # fmt: skip
        if kind.startswith("markPrice"):
            p = self._premium(s)
            return [{"e": "markPriceUpdate", "E": now, "s": s, "p": p["markPrice"], "i": p["indexPrice"],
                     "P": p["estimatedSettlePrice"], "r": p["lastFundingRate"], "T": p["nextFundingTime"]}]  # fmt: skip
        if kind in ("miniTicker", "ticker"):
            t = self._ticker(s)
            event = {"e": "24hrMiniTicker" if kind == "miniTicker" else "24hrTicker", "E": now, "s": s,
                     "c": t["lastPrice"], "o": t["openPrice"], "h": t["highPrice"], "l": t["lowPrice"],
                     "v": t["volume"], "q": t["quoteVolume"]}  # fmt: skip
            if kind == "ticker":
                event |= {"p": t["priceChange"], "P": t["priceChangePercent"], "w": t["weightedAvgPrice"],
                          "Q": t["lastQty"], "O": t["openTime"], "C": t["closeTime"], "F": t["firstId"],
                          "L": t["lastId"], "n": t["count"]}  # fmt: skip
            return [event]
        if kind.startswith("kline_"):
            return self._kline_events(state, kind.removeprefix("kline_"))
        if kind == "forceOrder":
            return [{"e": "forceOrder", "E": now, "o": {
                "s": s, "S": "SELL" if liq["side"] == "long" else "BUY", "o": "LIMIT", "f": "IOC", "q": liq["qty"],
                "p": liq["mark"], "ap": liq["mark"], "X": "FILLED", "l": liq["qty"], "z": liq["qty"], "T": liq["time"]}}
                for liq in self.engine.liquidations[self._liquidations_sent:] if liq["symbol"] == s]  # fmt: skip
        return []

    def _depth_event(self, state: SymbolState, kind: str, stream: str) -> list[dict[str, Any]]:
        """Partial depth (depth5/10/20): the top levels each time. Diff depth: every level that changed since
        this stream's last event, chained by pu = the last event's u."""
        s, now = state.spec.symbol, self.market.now_ms
        levels_wanted = kind.split("@")[0].removeprefix("depth")
        bids, asks = book_side(state, "bids"), book_side(state, "asks")
        mark = self.depth_marks.get((s, stream))
        self.depth_marks[(s, stream)] = (bids, asks, state.update_id)
        if mark is None or mark[2] == state.update_id:
            return []  # its first look at the book, or nothing has changed since its last event
        old_bids, old_asks, last_u = mark
        if levels_wanted:
            n = int(levels_wanted)
            changed_bids, changed_asks = levels(state, "bids", n), levels(state, "asks", n)
        else:
            spec = state.spec
            changed_bids = book_changes(spec, "bids", old_bids, bids)
            changed_asks = book_changes(spec, "asks", old_asks, asks)
        tick, step = _places(state.spec.tick), _places(state.spec.step)
        return [{"e": "depthUpdate", "E": now, "T": now, "s": s, "U": last_u + 1, "u": state.update_id, "pu": last_u,
                 "b": [[_fixed(p, tick), _fixed(q, step)] for p, q in changed_bids],
                 "a": [[_fixed(p, tick), _fixed(q, step)] for p, q in changed_asks]}]  # fmt: skip

    def _kline_events(self, state: SymbolState, interval: str) -> list[dict[str, Any]]:
        """The candle in progress; when a new one has begun, the one just closed first (x: true)."""
        s, now = state.spec.symbol, self.market.now_ms
        history = self.market.history[s]
        opened = bucket_start(interval, now)
        closed_one = bucket_start(interval, now - self.market.step_ms) != opened
        rows = history.candles(interval, "trade", None, now, 2)
        rows = rows[-2:] if closed_one else rows[-1:]
        tick, step = _places(state.spec.tick), _places(state.spec.step)
        return [{"e": "kline", "E": now, "s": s, "k": {
            "t": c.open_ms, "T": c.close_ms, "s": s, "i": interval, "f": 0, "L": 0, "o": _units(c.open, tick),
            "c": _units(c.close, tick), "h": _units(c.high, tick), "l": _units(c.low, tick),
            "v": _units(c.volume, step), "n": c.trades, "x": c.open_ms < opened, "q": _units(c.quote_volume, 8),
            "V": "0", "Q": "0", "B": "0"}}
            for c in rows]  # fmt: skip

    # --------------------------------------------------------------------------------- admin

    async def admin_state(self, request: web.Request) -> web.Response:
        accounts = []
        for account in self.engine.accounts.values():
            accounts.append(
                {
                    "api_key": account.api_key[:8] + "…",
                    "wallet": plain(account.wallet),
                    "account": account_json(self.engine, account),
                    "positions": [position_json(self.engine, account, s) for s in self.market.symbols],
                    "margin": {s: vars(c) for s, c in account.configs.items()},
                    "open_orders": [self._order_json(o) for o in account.open_orders()],
                    "open_algo_orders": [algo_json(a, account) for a in account.open_algos()],
                    "algo_orders": [algo_json(a, account) for a in account.algos.values()],
                    "orders": [self._order_json(o) for o in account.orders.values()],
                    "fills": [fill_json(f) for f in account.fills],
                    "income": [income_json(i) for i in account.incomes],
                }
            )
        market = {
            s: {"index": plain(st.index), "mark": plain(st.mark), "mid": plain(st.mid),
                "funding_rate": plain(st.funding_rate),
                "min_notional": plain(st.min_notional), "best_bid": plain(st.bids[0][0]) if st.bids else None,
                "best_ask": plain(st.asks[0][0]) if st.asks else None,
                "tiers": [{"floor": plain(t.floor), "cap": plain(t.cap), "mmr": plain(t.mmr), "cum": plain(t.cum),
                           "max_leverage": t.max_leverage} for t in st.tiers]}
            for s, st in self.market.symbols.items()
        }  # fmt: skip
        return _json(
            {
                "clock": self._clock(),
                "scenario": self.market.scenario.name,
                "market": market,
                "accounts": accounts,
                "rate_limit_answers": {str(k): v for k, v in sorted(self.limiter.answered.items())},
                "funding_events": self.engine.funding_events,
                "liquidations": self.engine.liquidations,
            }
        )

    def _clock(self) -> dict[str, Any]:
        return {"now_ms": self.market.now_ms, "steps": self.market.steps, "elapsed_s": self.market.elapsed_s,
                "next_funding_ms": self.market.next_funding_ms, "speed": self.settings.speed,
                "running": self._clock_task is not None, "late_s": self.clock_late_s,
                "paused_s": self.clock_paused_s}  # fmt: skip

    async def admin_get_faults(self, request: web.Request) -> web.Response:
        return _json(self.faults.model_dump(mode="json"))

    async def admin_put_faults(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except ValueError:
            return _error(-1100, "The fault plan must be a JSON object.")
        try:
            self.faults = parse_plan(data)
        except FaultPlanError as exc:
            return _error(-1100, str(exc))
        return _json(self.faults.model_dump(mode="json"))

    async def admin_get_scenario(self, request: web.Request) -> web.Response:
        return _json({"scenario": self.market.scenario.name, "known": list(SCENARIOS)})

    async def admin_put_scenario(self, request: web.Request) -> web.Response:
        try:
            name = (await request.json())["scenario"]
        except (ValueError, KeyError, TypeError):
            return _error(-1100, 'Send {"scenario": NAME}.')
        if name not in SCENARIOS:
            return _error(-1100, f"Unknown scenario {name!r}; known: {', '.join(SCENARIOS)}.")
        self.market.scenario = SCENARIOS[name]
        return _json({"scenario": name})

    async def admin_get_clock(self, request: web.Request) -> web.Response:
        return _json(self._clock())

    async def admin_advance(self, request: web.Request) -> web.Response:
        try:
            seconds = float((await request.json())["seconds"])
        except (ValueError, KeyError, TypeError):
            return _error(-1100, 'Send {"seconds": N}.')
        if not 0 < seconds <= 30 * 86400:
            return _error(-1100, "seconds must be in (0, 2592000].")
        self.advance_seconds(seconds)
        return _json(self._clock())


@asynccontextmanager
async def running_emulator(
    settings: EmulatorSettings = EmulatorSettings(), faults: FaultPlan | None = None, port: int = 0
) -> AsyncIterator[Emulator]:
    """Start an emulator in this event loop on a free loopback port; stop it on exit."""
    emulator = Emulator(settings, faults)
    await emulator.start("127.0.0.1", port)
    try:
        yield emulator
    finally:
        await emulator.stop()


def _garbled(payload: dict[str, Any]) -> dict[str, Any]:
    """A corrupt_frame fault: the frame keeps its event type and time and loses everything else (symbol,
    prices, quantities), as from a broken gateway. ccxt's handler fails on it inside its callback."""
    return {k: v for k, v in payload.items() if k in ("e", "E")}


# ------------------------------------------------------------------ the engine's state as Binance shows it


def _wire(value: OrderSide | OrderType) -> str:
    """A side or an order type as Binance writes it: BUY, STOP_MARKET, ..."""
    return value.value.upper()


def _from_wire(kind: type[T], value: str, code: int, message: str) -> T:
    """Binance's BUY / LIMIT / ... as the domain's enum; anything else is Binance's refusal."""
    try:
        return kind(value.lower())  # type: ignore[call-arg]
    except ValueError:
        raise Rejection(code, message) from None


def order_json(order: Order, spec: SymbolSpec, as_accepted: bool = False) -> dict[str, Any]:
    """An order as the order endpoints show it, prices and quantities printed to the symbol's precision;
    `as_accepted`: as Binance's ACK answer shows a new order, before any of it has filled (its fills follow
    on the user data stream)."""
    price, qty = _places(spec.tick), _places(spec.step)
    row = {
        "orderId": order.id,
        "symbol": order.symbol,
        "status": order.status,
        "clientOrderId": order.client_id,
        "price": _fixed(order.price, price),
        "avgPrice": _fixed(order.average, price),
        "origQty": _fixed(order.qty, qty),
        "executedQty": _fixed(order.filled, qty),
        "cumQty": _fixed(order.filled, qty),
        "cumQuote": _fixed(order.cum_quote, 8),
        "timeInForce": order.time_in_force,
        "type": _wire(order.type),
        "reduceOnly": order.reduce_only,
        "closePosition": False,
        "side": _wire(order.side),
        "positionSide": "BOTH",
        "stopPrice": "0",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": _wire(order.type),
        "priceMatch": "NONE",
        "selfTradePreventionMode": "NONE",
        "goodTillDate": 0,
        "time": order.time_ms,
        "updateTime": order.update_ms or order.time_ms,
    }
    if as_accepted:
        zero = _fixed(ZERO, qty)
        row |= {"status": "NEW", "avgPrice": _fixed(ZERO, price), "executedQty": zero, "cumQty": zero,
                "cumQuote": _fixed(ZERO, 8), "updateTime": order.time_ms}  # fmt: skip
    return row


def algo_json(algo: AlgoOrder, account: Account | None = None) -> dict[str, Any]:
    """A conditional order as the algo endpoints show it; with its `account`, as the queries show it (with
    the fields of the regular order it placed), else as the create answers."""
    row: dict[str, Any] = {
        "algoId": algo.id,
        "clientAlgoId": algo.client_id,
        "algoType": "CONDITIONAL",
        "orderType": _wire(algo.type),
        "symbol": algo.symbol,
        "side": _wire(algo.side),
        "positionSide": "BOTH",
        "timeInForce": algo.time_in_force,
        "quantity": plain(algo.qty),
        "algoStatus": algo.status,
        "triggerPrice": plain(algo.trigger),
        "price": plain(algo.price),
        "icebergQuantity": None,
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": algo.working_type,
        "priceMatch": "NONE",
        "closePosition": algo.close_position,
        "priceProtect": algo.price_protect,
        "reduceOnly": algo.reduce_only,
        "activatePrice": plain(algo.activate) if algo.type is OrderType.TRAILING_STOP_MARKET else "",
        "callbackRate": plain(algo.callback_rate) if algo.type is OrderType.TRAILING_STOP_MARKET else "",
        "createTime": algo.time_ms,
        "updateTime": algo.update_ms or algo.time_ms,
        "triggerTime": algo.trigger_ms,
        "goodTillDate": 0,
    }
    if account is not None:
        average = _child_average(account, algo)
        row |= {"actualOrderId": str(algo.order_id or ""), "actualPrice": plain(average) if average else "0.00000",
                "tpTriggerPrice": "0.000",
                "tpPrice": "0.000", "slTriggerPrice": "0.000", "slPrice": "0.000", "tpOrderType": ""}  # fmt: skip
        if algo.order_id is not None:
            row["actualType"] = "MARKET" if algo.price == ZERO else "LIMIT"
            row["actualQty"] = plain(_child_filled(account, algo))
    return row


def _child(account: Account, algo: AlgoOrder) -> Order | None:
    return account.orders.get(algo.order_id) if algo.order_id is not None else None


def _child_average(account: Account, algo: AlgoOrder) -> Decimal:
    child = _child(account, algo)
    return child.average if child is not None else ZERO


def _child_filled(account: Account, algo: AlgoOrder) -> Decimal:
    child = _child(account, algo)
    return child.filled if child is not None else ZERO


def fill_json(fill: Fill) -> dict[str, Any]:
    return {
        "symbol": fill.symbol,
        "id": fill.id,
        "orderId": fill.order_id,
        "side": _wire(fill.side),
        "price": plain(fill.price),
        "qty": plain(fill.qty),
        "realizedPnl": plain(fill.realized_pnl),
        "quoteQty": plain(fill.price * fill.qty),
        "commission": plain(fill.commission),
        "commissionAsset": "USDT",
        "time": fill.time_ms,
        "positionSide": "BOTH",
        "buyer": fill.side is OrderSide.BUY,
        "maker": fill.maker,
    }


def income_json(income: Income) -> dict[str, Any]:
    return {
        "symbol": income.symbol,
        "incomeType": income.income_type,
        "income": _fixed(income.amount, 8),
        "asset": "USDT",
        "info": income.income_type,
        "time": income.time_ms,
        "tranId": income.tran_id,
        "tradeId": str(income.trade_id) if income.trade_id is not None else "",
    }


def position_json(engine: Engine, account: Account, symbol: str) -> dict[str, Any]:
    pos = account.position(symbol)
    state = engine.market.symbols[symbol]
    config = account.config(symbol)
    notional = pos.qty * state.mark
    upnl = engine.unrealized(account, symbol)
    isolated = config.margin_type == "ISOLATED" and pos.qty != ZERO
    liq = engine.liquidation_price(account, symbol)
    return {
        "symbol": symbol,
        "positionSide": "BOTH",
        "positionAmt": plain(pos.qty),
        "entryPrice": plain(pos.entry) if pos.qty else "0.0",
        "breakEvenPrice": plain(_break_even(pos.qty, pos.entry, engine.taker_fee, state.spec.tick))
        if pos.qty else "0.0",
        "markPrice": plain(state.mark),
        "unRealizedProfit": plain(upnl),
        "liquidationPrice": plain(liq) if liq is not None else "0",
        "isolatedMargin": plain(pos.isolated_wallet + upnl) if isolated else "0",
        "notional": plain(notional),
        "marginAsset": "USDT",
        "isolatedWallet": plain(pos.isolated_wallet) if isolated else "0",
        "initialMargin": plain(abs(notional) / config.leverage),
        "maintMargin": plain(maintenance_margin(notional, state.tiers)) if pos.qty else "0",
        "positionInitialMargin": plain(abs(notional) / config.leverage),
        "openOrderInitialMargin": plain(engine.open_order_margin(account, symbol)),
        "adl": 1,
        "bidNotional": "0",
        "askNotional": "0",
        "updateTime": pos.update_ms or engine.now_ms,
    }


def _break_even(qty: Decimal, entry: Decimal, fee: Decimal, tick: Decimal) -> Decimal:
    """The price at which closing with a taker fee returns what opening with one cost, on the tick (away
    from the entry): long E·(1 + f)/(1 − f), short E·(1 − f)/(1 + f)."""
    if qty > 0:
        return ceil_to_step(entry * (1 + fee) / (1 - fee), tick)
    return floor_to_step(entry * (1 - fee) / (1 + fee), tick)


def account_json(engine: Engine, account: Account) -> dict[str, Any]:
    rows = [position_json(engine, account, s) for s in engine.market.symbols]
    cross_upnl = sum(
        (engine.unrealized(account, s) for s in engine.market.symbols if account.config(s).margin_type == "CROSSED"),
        ZERO,
    )
    upnl = sum((engine.unrealized(account, s) for s in engine.market.symbols), ZERO)
    wallet = account.wallet_balance
    position_im = sum((D(r["positionInitialMargin"]) for r in rows), ZERO)
    order_im = engine.open_order_margin(account)
    available = engine.available(account)
    maint = sum((D(r["maintMargin"]) for r in rows), ZERO)
    asset = {
        "asset": "USDT",
        "walletBalance": plain(wallet),
        "unrealizedProfit": plain(upnl),
        "marginBalance": plain(wallet + upnl),
        "maintMargin": plain(maint),
        "initialMargin": plain(position_im + order_im),
        "positionInitialMargin": plain(position_im),
        "openOrderInitialMargin": plain(order_im),
        "crossWalletBalance": plain(account.wallet),
        "crossUnPnl": plain(cross_upnl),
        "availableBalance": plain(available),
        "maxWithdrawAmount": plain(max(available, ZERO)),
        "updateTime": engine.now_ms,
    }
    return {
        "totalInitialMargin": asset["initialMargin"],
        "totalMaintMargin": asset["maintMargin"],
        "totalWalletBalance": asset["walletBalance"],
        "totalUnrealizedProfit": asset["unrealizedProfit"],
        "totalMarginBalance": asset["marginBalance"],
        "totalPositionInitialMargin": asset["positionInitialMargin"],
        "totalOpenOrderInitialMargin": asset["openOrderInitialMargin"],
        "totalCrossWalletBalance": asset["crossWalletBalance"],
        "totalCrossUnPnl": asset["crossUnPnl"],
        "availableBalance": asset["availableBalance"],
        "maxWithdrawAmount": asset["maxWithdrawAmount"],
        "assets": [asset],
        "positions": [
            {k: r[k] for k in ("symbol", "positionSide", "positionAmt", "unRealizedProfit", "isolatedMargin",
                               "notional", "isolatedWallet", "initialMargin", "maintMargin", "updateTime")}
            for r in rows if D(r["positionAmt"])
        ],
    }  # fmt: skip
