"""The guarded ccxt adapter: everything botkit sends to an exchange goes through `CcxtVenue`.

- Every request (including those ccxt makes inside its unified methods) passes botkit's rate limiter:
  the venue wraps the exchange's `fetch2`, weighs the request by ccxt's own cost table (corrected by the
  exchange's preset), and reads each answer's status and usage headers through `on_rest_response`, which
  ccxt calls once per answer with that answer's headers (`last_response_headers` is the same data, but
  shared by concurrent tasks). ccxt's own throttler is switched off, so nothing is throttled twice.
- Every call maps ccxt's exceptions to botkit's outcomes (`botkit.venue.errors`) and retries only what
  can succeed later, with tenacity: exponential backoff with full jitter, capped, under a per-call
  deadline, never sooner than a Retry-After.
- Every order carries a botkit client id. A create or cancel whose answer was lost is resolved by
  looking the id up before anything is re-sent, so a retry never doubles an order.
- Everything returned is validated into botkit's Decimal value types; an answer that does not validate
  raises `VenueDataError` instead of being acted on.
"""

from __future__ import annotations

import math
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
import ccxt
from ccxt.base.decimal_to_precision import TICK_SIZE
from tenacity import AsyncRetrying, RetryCallState, wait_random_exponential

from botkit.clock import Clock, SystemClock
from botkit.config import BotConfig, ConfigError, VenueConfig
from botkit.domain import (
    Balance,
    Book,
    FundingPayment,
    MarkPrice,
    Order,
    OrderSide,
    OrderType,
    Position,
    StopRequest,
    Trade,
)
from botkit.guards.gate import Approval
from botkit.guards.rate import Banned, Lane, RateLimiter, preset_for
from botkit.log import get_logger
from botkit.margin import MarketRules, Tier, TierError, tiers_from_ccxt, to_decimal
from botkit.venue import parse
from botkit.venue.endpoints import point_ccxt_at
from botkit.venue.errors import (
    ClockSkew,
    OrderUnresolved,
    Outcome,
    Rejected,
    Transient,
    VenueBanned,
    VenueDataError,
    VenueUnavailable,
    classify,
    exchange_details,
)
from botkit.venue.ids import ClientIds

log = get_logger("botkit.venue")
T = TypeVar("T")
_PRICING: ContextVar[list[float] | None] = ContextVar("botkit_pricing", default=None)


class _Priced(Exception):
    """Raised in place of sending a request that is only being priced (an Exception, so that ccxt's own
    clean-up runs as for any failed request; `price` finds it under whatever wraps it)."""

# How `mode = "testnet"` reaches each exchange's test venue through ccxt:
#   binanceusdm: demo trading (demo-fapi.binance.com) with `enable_demo_trading(True)`; ccxt refuses
#                Binance's old futures sandbox (testnet.binancefuture.com) for private calls.
#   bybit:       the testnet (api-testnet.bybit.com) with `set_sandbox_mode(True)`; keys from testnet.bybit.com.
#   okx:         demo trading with `set_sandbox_mode(True)` (adds `x-simulated-trading: 1`); demo-trading keys.
# Any other exchange: `set_sandbox_mode(True)` if ccxt has test URLs for it, else a config error.
TESTNET_SWITCH = {"binanceusdm": "demo", "bybit": "sandbox", "okx": "sandbox"}

# Exchange codes with a meaning for idempotency, beyond ccxt's exception classes.
DUPLICATE_ID_CODES: dict[str, set[int | str]] = {"binanceusdm": {-4116}}
SPENT_KEPT = 4096  # an approval is used at once: remembering the last few thousand catches any reuse
BOOK_DEPTH = 5  # levels a side that the feeds keep and the gate's depth check reads
NOT_FOUND_CODES: dict[str, set[int | str]] = {"binanceusdm": {-2011, -2013}}
IMMEDIATE_TRIGGER_CODES: dict[str, set[int | str]] = {"binanceusdm": {-2021}}
ALREADY_SET_CODES: dict[str, set[int | str]] = {"binanceusdm": {-4046}}
# Refusals that mean the market's rules or brackets are not what the bot last read: minimum notional,
# position cap at this leverage, leverage not valid, precision.
# Client ids the exchange gives the orders of its liquidation engine (liquidation and auto-deleveraging).
LIQUIDATION_ID_PREFIXES: dict[str, tuple[str, ...]] = {"binanceusdm": ("autoclose-", "adl_autoclose")}
RULES_CHANGED_CODES: dict[str, set[int | str]] = {"binanceusdm": {-4164, -2027, -4028, -1111}}

READS = frozenset({Outcome.RETRYABLE, Outcome.RATE_LIMITED})
MUTATIONS = frozenset({Outcome.RETRYABLE, Outcome.RATE_LIMITED, Outcome.UNKNOWN})


NEVER_SENT = (aiohttp.ClientConnectorError, socket.gaierror)  # no connection: the request never left


def request_lane(method: str, params: Mapping[str, Any], orders: int) -> Lane:
    """The rate limiter's lane of one request: cancels and reduce-only orders cut risk and go first."""
    if method == "DELETE" or str(params.get("reduceOnly", "")).lower() == "true" or params.get("closePosition"):
        return Lane.CUT
    return Lane.ORDER if orders else Lane.READ


def build_exchange(config: BotConfig, *, emulator_url: str | None = None, streaming: bool = False) -> Any:
    """A ccxt async (or ccxt.pro when `streaming`) exchange for the configured mode, throttler off."""
    import ccxt.async_support as ccxt_async
    import ccxt.pro as ccxt_pro

    settings = config.exchange
    exchange_class = getattr(ccxt_pro if streaming else ccxt_async, settings.id, None)
    if not isinstance(exchange_class, type):
        raise ConfigError([f"exchange.id = {settings.id!r}: not an exchange ccxt knows"])
    params: dict[str, Any] = {
        "enableRateLimit": False,  # botkit's rate limiter does this job
        "timeout": settings.timeout_ms,
        "options": {"defaultType": "swap"},
    }
    if settings.api_key is not None and settings.api_secret is not None:
        params |= {"apiKey": settings.api_key.get_secret_value(), "secret": settings.api_secret.get_secret_value()}
    exchange = exchange_class(params)
    if streaming:
        share_sockets(exchange, len(config.symbols))
    url = emulator_url or (str(settings.emulator_url) if settings.emulator_url is not None else None)
    if url is not None:
        if settings.id != "binanceusdm":
            raise ConfigError([f"exchange.id = {settings.id!r}: the emulator speaks binanceusdm only"])
        return point_ccxt_at(exchange, url)
    if config.mode == "testnet":
        switch = TESTNET_SWITCH.get(settings.id, "sandbox")
        if switch == "demo":
            exchange.enable_demo_trading(True)
        elif "test" in exchange.urls:
            exchange.set_sandbox_mode(True)
        else:
            raise ConfigError([f"exchange.id = {settings.id!r}: ccxt has no testnet URLs for it; use mode 'paper'"])
    elif config.mode == "demo":
        raise ConfigError(["mode 'demo' trades on botkit's emulator: set exchange.emulator_url"])
    return exchange


SUBSCRIPTIONS_PER_SOCKET = 30  # market streams multiplexed on one WebSocket (Binance allows up to 1024)


def share_sockets(exchange: Any, symbols: int) -> None:
    """Multiplex the market streams on few WebSockets. ccxt.pro opens up to 50 per market type, one per
    subscription until then, and each holds a connection of the HTTP session's pool (100) for as long as it
    is open: at 50 symbols (book, mark and trades each) the pool ran dry and REST calls timed out."""
    sockets = max(1, math.ceil(3 * symbols / SUBSCRIPTIONS_PER_SOCKET))
    limits = exchange.options.get("streamLimits")
    if isinstance(limits, dict):
        exchange.options["streamLimits"] = {kind: min(int(limit), sockets) for kind, limit in limits.items()}


def spend_approval(spent: OrderedDict[int, None], ids: ClientIds, approval: Approval, client_id: str | None
                   ) -> tuple[str, OrderSide, OrderType, Decimal, Decimal | None, bool, str]:  # fmt: skip
    """(symbol, side, type, qty, price, reduce_only, client id) of a create: only from an approval of the
    risk gate, each spent once (`spent` remembers the serials used). Anything else is a programming error,
    raised before anything is sent."""
    if not isinstance(approval, Approval):
        raise TypeError(f"create_order takes the risk gate's Approval, not {type(approval).__name__}")
    if approval.serial in spent:
        raise ValueError(f"approval {approval.serial} was already used to send an order")
    spent[approval.serial] = None
    while len(spent) > SPENT_KEPT:
        spent.popitem(last=False)
    a = approval
    client_id = ids.check(client_id) if client_id is not None else ids.next()
    return a.symbol, a.side, a.type, a.qty, a.price, a.reduce_only, client_id


class CcxtVenue:
    """One exchange through ccxt, guarded: rate limits with lanes, backoff, idempotent client ids, answers
    validated into domain types, and orders only from the gate's approvals (see the module's docstring)."""

    def __init__(
        self,
        exchange: Any,
        settings: VenueConfig | None = None,
        *,
        clock: Clock | None = None,
        on_ban: Callable[[float], Any] | None = None,
        on_error: Callable[[str], Any] | None = None,
    ) -> None:
        self.exchange = exchange
        self.on_error = on_error  # told of every failed attempt, retried or not (the kill switch's error burst)
        self.settings = settings or VenueConfig()
        self.clock = clock or SystemClock()
        s = self.settings
        self.preset = preset_for(exchange.id, float(exchange.rateLimit or 0), s.rate_limits)
        self.limiter = RateLimiter(
            self.preset.budgets,
            self.clock,
            headroom=s.rate_headroom,
            cut_factor=s.rate_cut_factor,
            recover_s=s.rate_recover_s,
            ban_default_s=self.preset.ban_default_s,
            on_ban=on_ban,
        )
        self.exchange_id = str(exchange.id)
        self.ids = ClientIds(s.client_id_prefix, exchange_id=exchange.id)
        self.unresolved: set[str] = set()  # client ids whose create or cancel outcome is still unknown
        self._spent: OrderedDict[int, None] = OrderedDict()  # serials of the approvals already used
        self.markets: dict[str, MarketRules] = {}
        self._contract_size: dict[str, Decimal] = {}
        self._jitter = wait_random_exponential(multiplier=s.retry_base_s, max=s.retry_cap_s)
        self._guard_requests()

    async def close(self) -> None:
        await self.exchange.close()

    # ------------------------------------------------------------------------- request guard

    def _guard_requests(self) -> None:
        exchange = self.exchange
        exchange.enableRateLimit = False  # no double throttling: botkit's limiter replaces ccxt's
        # All open orders in one request is a weighed choice here (the limiter charges its cost), not a mistake.
        exchange.options.setdefault("fetchOpenOrders", {})["warnWithoutSymbol"] = False
        send, on_response = exchange.fetch2, exchange.on_rest_response

        async def fetch2(path: str, api: Any = "public", method: str = "GET", params: Any = None, config: Any = None):
            params, config = params if params is not None else {}, config if config is not None else {}
            weight, orders = self.request_cost(api, method, path, params, config)
            if (priced := _PRICING.get()) is not None:
                priced.append(weight)
                raise _Priced
            try:
                await self.limiter.acquire(weight, orders, request_lane(method, params, orders))
            except Banned as ban:
                raise VenueBanned(ban.until, ban.seconds_left) from None
            try:
                return await send(path, api, method, params, config)
            except (ccxt.ExchangeNotAvailable, ccxt.ExchangeError) as exc:
                if isinstance(exc.__cause__, NEVER_SENT):  # refused before it left: the exchange counted nothing
                    self.limiter.refund(weight, orders)
                raise

        def on_rest_response(code, reason, url, method, headers, body, request_headers, request_body):
            self.limiter.observe(code, headers)
            return on_response(code, reason, url, method, headers, body, request_headers, request_body)

        exchange.fetch2 = fetch2
        exchange.on_rest_response = on_rest_response

    def request_cost(self, api: Any, method: str, path: str, params: Any, config: Any) -> tuple[float, int]:
        """(weight, orders) of one request: the preset's weight, else ccxt's cost table."""
        section = api if isinstance(api, str) else "/".join(str(a) for a in api)
        weight = self.preset.weights.get((section, method, path))
        if weight is None:
            weight = self.exchange.calculate_rate_limiter_cost(api, method, path, params, config)
        orders = 1 if (method, path) in self.preset.order_paths else 0
        return float(weight), orders

    async def price(self, read: Callable[[], Awaitable[Any]]) -> float:
        """The request weight one call of `read` spends, priced by the same table the limiter charges and
        routed as ccxt routes it, without sending anything (0 when `read` does not reach the exchange).
        Its first request only: price after markets and brackets are loaded, as they are in steady state."""
        priced: list[float] = []
        token = _PRICING.set(priced)
        try:
            await read()
        except Exception as exc:
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, _Priced):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
        finally:
            _PRICING.reset(token)
        return priced[0] if priced else 0.0

    # ---------------------------------------------------------------------------- attempts

    async def _attempt(self, call: str, send: Callable[[], Awaitable[T]], mutating: bool = False) -> T:
        """One call, ccxt's exceptions turned into botkit's. A timestamp refusal resyncs and retries once."""
        for resynced in (False, True):
            try:
                return await send()
            except VenueBanned:
                raise
            except Exception as exc:
                if not isinstance(exc, ccxt.BaseError) and not mutating:
                    raise VenueDataError(f"{call}: the exchange's answer could not be read: {exc!r}") from exc
                outcome = classify(exc, mutating=mutating, banned=self.limiter.banned())
                if outcome is Outcome.BANNED:
                    left = max(0.0, self.limiter.banned_until - self.clock.monotonic())
                    raise VenueBanned(self.limiter.banned_until, left) from exc
                if outcome is Outcome.CLOCK:
                    if resynced:
                        raise ClockSkew(f"{call}: timestamp still refused after resyncing the clock: {exc}") from exc
                    await self._resync_clock(call)
                    continue
                if outcome is Outcome.REJECTED:
                    code, reason = exchange_details(exc)
                    raise Rejected(call, code, reason, kind=type(exc).__name__) from exc
                raise Transient(outcome, call, exc) from exc
        raise AssertionError("unreachable")

    async def _resync_clock(self, call: str) -> None:
        try:
            offset = await self.exchange.load_time_difference()
        except Exception as exc:
            raise ClockSkew(f"{call}: timestamp refused and the server time could not be read: {exc}") from exc
        log.warning("venue.clock_resynced", call=call, offset_ms=offset)

    def _retrying(self, call: str, retry_on: frozenset[Outcome]) -> AsyncRetrying:
        s = self.settings
        started = self.clock.monotonic()

        def stop(state: RetryCallState) -> bool:
            return state.attempt_number >= s.max_attempts or self.clock.monotonic() - started >= s.call_deadline_s

        def wait(state: RetryCallState) -> float:
            return max(self._jitter(state), self.limiter.cooldown_left())  # full jitter, never before Retry-After

        def retry(state: RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome is not None else None
            return isinstance(error, Transient) and error.outcome in retry_on

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            wait_s = state.next_action.sleep if state.next_action is not None else 0.0
            if self.on_error is not None:
                self.on_error(str(error))
            log.warning(
                "venue.retry", call=call, attempt=state.attempt_number, wait_s=round(wait_s, 3), error=str(error)
            )

        return AsyncRetrying(
            stop=stop, wait=wait, retry=retry, before_sleep=before_sleep, sleep=self.clock.sleep, reraise=True
        )

    async def _run(self, call: str, retry_on: frozenset[Outcome], attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()` once; while it fails with a Transient outcome in `retry_on`, again under the backoff
        policy. The first try runs without the retry machinery: the common case costs nothing extra."""
        try:
            return await attempt()
        except Transient as exc:
            if exc.outcome not in retry_on:
                raise
            first: Transient | None = exc
        async for retry in self._retrying(call, retry_on):
            with retry:
                if first is not None:  # let the policy count, log and wait for the first failure
                    error, first = first, None
                    raise error
                return await attempt()
        raise AssertionError("unreachable")

    async def _retried(self, call: str, send: Callable[[], Awaitable[T]]) -> T:
        """A read (or an idempotent write): retried while it can succeed later."""
        try:
            return await self._run(call, READS, lambda: self._attempt(call, send))
        except Transient as exc:
            raise VenueUnavailable(f"{call} failed until its deadline: {exc.message}") from exc

    # ------------------------------------------------------------------------------ orders

    async def create_order(self, approval: Approval, *, client_id: str | None = None) -> Order:
        """Place the order the gate approved, exactly once. Raises Rejected (never retried), VenueBanned,
        OrderUnresolved (its fate is unknown at the deadline; the id stays in `unresolved`) or
        VenueUnavailable; a missing or spent approval is a programming error (TypeError, ValueError)."""
        symbol, side, type, qty, price, reduce_only, client_id = self.spend(approval, client_id)
        size = self._contract_size.get(symbol, Decimal(1))
        params: dict[str, Any] = {"clientOrderId": client_id}
        if reduce_only:
            params["reduceOnly"] = True
        amount = float(qty if size == 1 else qty / size)
        limit_price = float(price) if price is not None else None
        return await self._create(
            "create_order", client_id,
            lambda: self.exchange.create_order(symbol, type, side, amount, limit_price, params),
            lambda call: self._lookup(call, symbol, client_id),
            lambda raw: parse.order(raw, client_id, self._contract_size),
        )  # fmt: skip

    async def _create(self, action: str, client_id: str, send: Callable[[], Awaitable[Any]],
                      lookup: Callable[[str], Awaitable[Order | None]], read: Callable[[Any], Order]) -> Order:
        """Send a create exactly once: a retry after an answer that was lost looks the client id up first,
        and a duplicate-id refusal means an earlier attempt landed."""
        call = f"{action} {client_id}"
        unknown = False  # an earlier attempt may have landed

        async def attempt() -> Order:
            nonlocal unknown
            if unknown:  # look before sending again
                found = await lookup(call)
                if found is not None:
                    log.info("order.adopted", client_id=client_id, status=found.status.value)
                    return self._track(found)
                unknown = False
            try:
                raw = await self._attempt(call, send, True)
            except Transient as exc:
                unknown = exc.outcome is Outcome.UNKNOWN
                raise
            except Rejected as exc:
                if not self._is(exc, "DuplicateOrderId", DUPLICATE_ID_CODES):
                    log.info("order.rejected", client_id=client_id, code=exc.code, reason=exc.reason)
                    raise
                found = await lookup(call)  # an earlier attempt landed after all
                if found is None:
                    raise
                log.info("order.adopted", client_id=client_id, status=found.status.value)
                return self._track(found)
            try:
                return self._track(read(raw))
            except VenueDataError as exc:  # accepted, but the answer is unreadable: look it up, never resend blind
                unknown = True
                raise Transient(Outcome.UNKNOWN, call, exc) from exc

        try:
            return await self._run(call, MUTATIONS, attempt)
        except (Transient, VenueDataError) as exc:
            if unknown or isinstance(exc, VenueDataError):  # it may have landed: the kill switch holds until settled
                self.unresolved.add(client_id)
                log.error("order.unresolved", client_id=client_id, error=str(exc))
                raise OrderUnresolved(action, client_id, str(exc)) from exc
            raise VenueUnavailable(f"{call} failed until its deadline: {exc}") from exc

    def spend(self, approval: Approval, client_id: str | None) -> tuple[str, OrderSide, OrderType, Decimal,
                                                                         Decimal | None, bool, str]:  # fmt: skip
        return spend_approval(self._spent, self.ids, approval, client_id)

    async def cancel_order(self, symbol: str, *, client_id: str | None = None, order_id: str | None = None) -> Order:
        """Cancel one order; an order already gone is a success once its final state is fetched."""
        if client_id is None and order_id is None:
            raise ValueError("cancel_order needs a client_id or an order_id")
        params = {"clientOrderId": client_id} if client_id is not None else {}
        call = f"cancel_order {client_id or order_id}"
        unknown = False

        async def attempt() -> Order:
            nonlocal unknown
            if unknown:
                current = await self._lookup(call, symbol, client_id, order_id)
                if current is not None and current.status.final:
                    return self._track(current)
                unknown = False
            try:
                raw = await self._attempt(call, lambda: self.exchange.cancel_order(order_id, symbol, params), True)
            except Transient as exc:
                unknown = exc.outcome is Outcome.UNKNOWN
                raise
            except Rejected:
                current = await self._lookup(call, symbol, client_id, order_id)  # already gone?
                if current is not None and current.status.final:
                    return self._track(current)
                raise
            return self._track(parse.order(raw, client_id, self._contract_size))

        try:
            return await self._run(call, MUTATIONS, attempt)
        except Transient as exc:
            if unknown and client_id is not None:
                self.unresolved.add(client_id)
                raise OrderUnresolved("cancel_order", client_id, exc.message) from exc
            raise VenueUnavailable(f"{call} failed until its deadline: {exc.message}") from exc

    async def cancel_all(self, symbol: str) -> None:
        """Cancel every open order of a symbol (idempotent, so retried like a read)."""
        await self._retried(f"cancel_all {symbol}", lambda: self.exchange.cancel_all_orders(symbol))

    async def fetch_order(self, symbol: str, *, client_id: str | None = None, order_id: str | None = None) -> Order:
        params = {"clientOrderId": client_id} if client_id is not None else {}
        raw = await self._retried(
            f"fetch_order {client_id or order_id}", lambda: self.exchange.fetch_order(order_id, symbol, params)
        )
        return self._track(parse.order(raw, client_id, self._contract_size))

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        rows = await self._retried("fetch_open_orders", lambda: self.exchange.fetch_open_orders(symbol))
        rows = parse.rows(rows, "fetch_open_orders")
        return [self._track(parse.order(row, None, self._contract_size)) for row in rows]

    async def _lookup(self, call: str, symbol: str, client_id: str | None, order_id: str | None = None,
                      conditional: bool = False) -> Order | None:  # fmt: skip
        """One look at an order after its create or cancel went unanswered: None if the exchange does
        not know it. Waits `unknown_settle_s` first so a request still in flight can land."""
        await self.clock.sleep(self.settings.unknown_settle_s)
        params: dict[str, Any] = {"clientOrderId": client_id} if client_id is not None else {}
        if conditional:
            params["trigger"] = True
        try:
            raw = await self._attempt(f"{call} lookup", lambda: self.exchange.fetch_order(order_id, symbol, params))
        except Rejected as exc:
            if self.is_not_found(exc):
                return None
            raise
        return self._read(raw, client_id)

    def _read(self, raw: Any, client_id: str | None = None) -> Order:
        """A ccxt order as a domain Order: a conditional one from its exchange fields, any other as ccxt has it."""
        if parse.is_conditional(raw):
            return parse.conditional(raw, self._contract_size)
        return parse.order(raw, client_id, self._contract_size)

    # -------------------------------------------------------------------- conditional orders

    async def place_stop(self, stop: StopRequest) -> Order:
        """Place a reduce-only conditional order for the exchange to hold, exactly once (as `create_order`).
        Raises Rejected (a trigger that would fire at once: see `would_trigger`), VenueBanned,
        OrderUnresolved or VenueUnavailable."""
        client_id = self.ids.check(stop.client_id)
        size = self._contract_size.get(stop.symbol, Decimal(1))
        price_key = "stopPrice" if stop.kind is OrderType.STOP_MARKET else "takeProfitPrice"
        if stop.kind not in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET):
            raise ValueError(f"place_stop places stop-market and take-profit-market orders, not {stop.kind}")
        params: dict[str, Any] = {
            price_key: float(stop.trigger), "reduceOnly": True, "clientOrderId": client_id,
            "workingType": "MARK_PRICE" if stop.on_mark else "CONTRACT_PRICE", "priceProtect": stop.price_protect,
        }  # fmt: skip
        amount = float(stop.qty if size == 1 else stop.qty / size)
        return await self._create(
            "place_stop", client_id,
            lambda: self.exchange.create_order(stop.symbol, "market", stop.side, amount, None, params),
            lambda call: self._lookup(call, stop.symbol, client_id, conditional=True),
            lambda raw: parse.conditional(raw, self._contract_size),
        )  # fmt: skip

    async def cancel_stop(self, symbol: str, *, client_id: str) -> Order:
        """Cancel a conditional order; one already gone is a success once its final state is read."""
        call = f"cancel_stop {client_id}"
        params = {"clientOrderId": client_id, "trigger": True}

        async def attempt() -> Order:
            try:
                await self._attempt(call, lambda: self.exchange.cancel_order(None, symbol, params), True)
            except Rejected:
                current = await self._lookup(call, symbol, client_id, conditional=True)  # already gone?
                if current is not None and current.status.final:
                    return current
                raise
            return await self.fetch_stop(symbol, client_id=client_id)  # the cancel's answer holds no status

        try:
            return await self._run(call, MUTATIONS, attempt)
        except Transient as exc:  # a cancel is safe to repeat: the next sweep looks again
            raise VenueUnavailable(f"{call} failed until its deadline: {exc.message}") from exc

    async def fetch_stop(self, symbol: str, *, client_id: str) -> Order:
        params = {"clientOrderId": client_id, "trigger": True}
        raw = await self._retried(f"fetch_stop {client_id}", lambda: self.exchange.fetch_order(None, symbol, params))
        return parse.conditional(raw, self._contract_size)

    async def fetch_open_stops(self, symbol: str) -> list[Order]:
        raw = await self._retried(
            f"fetch_open_stops {symbol}", lambda: self.exchange.fetch_open_orders(symbol, None, None, {"trigger": True})
        )
        return [parse.conditional(row, self._contract_size) for row in parse.rows(raw, "fetch_open_stops")]

    def would_trigger(self, exc: Rejected) -> bool:
        """Whether a refusal says the conditional order's trigger is already passed (it would fire at once)."""
        return self._is(exc, "OrderImmediatelyFillable", IMMEDIATE_TRIGGER_CODES)

    def is_not_found(self, exc: Rejected) -> bool:
        """Whether a refusal means the exchange does not know the order."""
        return self._is(exc, "OrderNotFound", NOT_FOUND_CODES)

    def is_liquidation(self, order: Order) -> bool:
        """Whether an order is the exchange's liquidation engine closing a position."""
        return order.type is OrderType.LIQUIDATION or order.client_id.startswith(
            LIQUIDATION_ID_PREFIXES.get(self.exchange.id, ())
        )

    def rules_changed(self, exc: Rejected) -> bool:
        """Whether a refusal says the market's rules or brackets changed since they were read."""
        return self._is(exc, "", RULES_CHANGED_CODES)

    def _is(self, exc: Rejected, kind: str, codes: Mapping[str, set[int | str]]) -> bool:
        return exc.kind == kind or exc.code in codes.get(self.exchange.id, set())

    def _track(self, order: Order) -> Order:
        """An order whose state the exchange reported is no longer of unknown outcome."""
        self.unresolved.discard(order.client_id)
        return order

    # ----------------------------------------------------------------------- account set-up

    async def load_markets(self) -> dict[str, MarketRules]:
        """Markets as botkit's MarketRules (quantities in base units), keyed by unified symbol."""
        markets = await self._retried("load_markets", lambda: self.exchange.load_markets(True))
        if not isinstance(markets, Mapping):
            raise VenueDataError("load_markets: the answer is not a mapping of markets")
        rules: dict[str, MarketRules] = {}
        for symbol, market in markets.items():
            if isinstance(market, Mapping) and market.get("contract") and market.get("active") is not False:
                size, rule = self._market_rules(symbol, market)
                self._contract_size[symbol], rules[symbol] = size, rule
        self.markets = rules
        return rules

    def _market_rules(self, symbol: str, market: Mapping[str, Any]) -> tuple[Decimal, MarketRules]:
        try:
            size = to_decimal(market.get("contractSize") or 1, "contractSize")
            precision, limits = market.get("precision") or {}, market.get("limits") or {}
            amount_precision = to_decimal(precision.get("amount"), "precision.amount")
            price_precision = to_decimal(precision.get("price"), "precision.price")
            if self.exchange.precisionMode != TICK_SIZE:  # decimal places: 3 -> a step of 0.001
                amount_precision = Decimal(1).scaleb(-int(amount_precision))
                price_precision = Decimal(1).scaleb(-int(price_precision))
            amount = limits.get("amount") or {}
            cost = limits.get("cost") or {}
            max_qty = parse.optional(amount.get("max"), "limits.amount.max")
            return size, MarketRules(
                step=amount_precision * size,
                tick=price_precision,
                min_qty=(parse.optional(amount.get("min"), "limits.amount.min") or Decimal(0)) * size,
                max_qty=max_qty * size if max_qty else None,
                min_notional=parse.optional(cost.get("min"), "limits.cost.min") or Decimal(0),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise VenueDataError(f"market {symbol}: {exc}") from None

    async def fetch_tiers(self, symbols: Iterable[str]) -> dict[str, tuple[Tier, ...]]:
        wanted = list(symbols)
        table = await self._retried("fetch_leverage_tiers", lambda: self.exchange.fetch_leverage_tiers(wanted))
        tiers = {}
        for symbol in wanted:
            rows = table.get(symbol) if isinstance(table, Mapping) else None
            if not rows:
                raise VenueDataError(f"leverage tiers for {symbol}: missing from the exchange's answer")
            try:
                tiers[symbol] = tiers_from_ccxt(rows)
            except TierError as exc:
                raise VenueDataError(f"leverage tiers for {symbol}: {exc}") from None
        return tiers

    async def ensure_isolated(self, symbol: str, leverage: int) -> None:
        """Isolated margin and this leverage on the symbol; "already set" counts as success."""
        for call, send in (
            (f"set_margin_mode {symbol}", lambda: self.exchange.set_margin_mode("isolated", symbol)),
            (f"set_leverage {symbol}", lambda: self.exchange.set_leverage(leverage, symbol)),
        ):
            try:
                await self._retried(call, send)
            except Rejected as exc:
                if not (exc.kind in ("MarginModeAlreadySet", "NoChange") or self._is(exc, "", ALREADY_SET_CODES)):
                    raise

    # -------------------------------------------------------------------------- market data

    # Streams (ccxt.pro), validated into domain types as REST answers are: a frame that cannot be read
    # raises VenueDataError, which the feeds count as a bad frame (the stream itself is fine).
    async def watch_book(self, symbol: str) -> Book:
        raw = await self.exchange.watch_order_book(symbol, BOOK_DEPTH)
        return parse.book(raw, symbol, BOOK_DEPTH, self._contract_size.get(symbol, Decimal(1)))

    async def watch_mark(self, symbol: str) -> MarkPrice:
        return parse.mark(await self.exchange.watch_mark_price(symbol), symbol)

    async def watch_trades(self, symbol: str) -> list[Trade]:
        raw = await self.exchange.watch_trades(symbol)
        return parse.trades(raw, symbol, self._contract_size.get(symbol, Decimal(1)))

    async def watch_orders(self) -> list[Order]:
        try:
            raw = await self.exchange.watch_orders()
        except Exception:
            self._renew_listen_key()
            raise
        return [self._read(row) for row in parse.rows(raw, "order updates")]

    def _renew_listen_key(self) -> None:
        """The user stream failed: its next connection asks for a listen key again. ccxt keeps one for 20
        minutes, and an exchange back from a restart has forgotten it (Binance hands back the same key
        while it is still valid, so asking again costs one request of weight 1)."""
        for options in self.exchange.options.values():
            if isinstance(options, dict) and "lastAuthenticatedTime" in options:
                options["lastAuthenticatedTime"] = 0

    def restart_streams(self, why: str) -> int:
        """Drop every WebSocket connection as a failed one, so each stream reconnects and subscribes again
        on its next watch (a stream can sit connected and silent for good after ccxt failed on a frame).
        Every pending watch fails with a NetworkError. Returns the connections dropped."""
        clients = list((getattr(self.exchange, "clients", None) or {}).values())
        for client in clients:
            client.on_error(ccxt.NetworkError(f"restarted by botkit: {why}"))
        return len(clients)

    async def fetch_book(self, symbol: str, depth: int = BOOK_DEPTH) -> Book:
        raw = await self._retried(f"fetch_order_book {symbol}", lambda: self.exchange.fetch_order_book(symbol, depth))
        return parse.book(raw, symbol, depth, self._contract_size.get(symbol, Decimal(1)))

    async def fetch_mark(self, symbol: str) -> MarkPrice:
        """Mark and index price, the current funding rate and the next funding time."""
        raw = await self._retried(f"fetch_funding_rate {symbol}", lambda: self.exchange.fetch_funding_rate(symbol))
        return parse.mark(raw, symbol)

    async def fetch_open_interest(self, symbol: str) -> Decimal | None:
        """The contracts open on the symbol, in base units (Binance: GET /fapi/v1/openInterest, weight 1); None
        from an exchange ccxt cannot ask."""
        if not self.exchange.has.get("fetchOpenInterest"):
            return None
        raw = await self._retried(f"fetch_open_interest {symbol}", lambda: self.exchange.fetch_open_interest(symbol))
        return parse.open_interest(raw, symbol)

    async def fetch_margin_settings(self, symbol: str) -> tuple[int | None, str | None]:
        """(leverage, margin mode) as the exchange reports them now, to catch changes made outside the bot."""
        raw = await self._retried(f"fetch_leverages {symbol}", lambda: self.exchange.fetch_leverages([symbol]))
        entry = raw.get(symbol) if isinstance(raw, Mapping) else None
        if not isinstance(entry, Mapping):
            raise VenueDataError(f"margin settings for {symbol}: missing from the exchange's answer")
        leverage = entry.get("longLeverage") or entry.get("shortLeverage")
        mode = entry.get("marginMode")
        try:
            return (int(leverage) if leverage is not None else None), (str(mode) if mode is not None else None)
        except (TypeError, ValueError):
            raise VenueDataError(f"margin settings for {symbol}: leverage {leverage!r} is not a number") from None

    # ------------------------------------------------------------------------------ account

    async def fetch_balance(self, currency: str = "USDT") -> Balance:
        raw = await self._retried("fetch_balance", lambda: self.exchange.fetch_balance())
        entry = raw.get(currency) if isinstance(raw, Mapping) else None
        if not isinstance(entry, Mapping):
            raise VenueDataError(f"fetch_balance: no {currency} balance in the answer")
        try:
            return Balance(
                currency=currency,
                free=to_decimal(entry.get("free"), f"{currency}.free"),
                used=to_decimal(entry.get("used"), f"{currency}.used"),
                total=to_decimal(entry.get("total"), f"{currency}.total"),
            )
        except ValueError as exc:
            raise VenueDataError(f"fetch_balance: {exc}") from None

    async def fetch_positions(self, symbols: Iterable[str] | None = None) -> list[Position]:
        wanted = list(symbols) if symbols is not None else None
        rows = await self._retried("fetch_positions", lambda: self.exchange.fetch_positions(wanted))
        positions = []
        for row in parse.rows(rows, "fetch_positions"):
            position = parse.position(row, self._contract_size)
            if position is not None and (wanted is None or position.symbol in wanted):
                positions.append(position)
        return positions

    async def fetch_funding_payments(self, since_ms: int | None = None) -> list[FundingPayment]:
        """Funding paid (< 0) or received (> 0) since a time, oldest first."""
        rows = await self._retried("fetch_funding_history", lambda: self.exchange.fetch_funding_history(None, since_ms))
        payments = [parse.funding_payment(row) for row in parse.rows(rows, "fetch_funding_history")]
        return sorted(payments, key=lambda p: p.timestamp_ms or 0)

    async def fetch_key_permissions(self) -> Mapping[str, Any] | None:
        """The API key's permissions where the exchange reports them through ccxt (Binance:
        GET /sapi/v1/account/apiRestrictions, with enableWithdrawals, enableFutures, ipRestrict), else None."""
        read = getattr(self.exchange, "sapi_get_account_apirestrictions", None)
        if read is None:
            return None
        raw = await self._retried("fetch_key_permissions", read)
        if not isinstance(raw, Mapping):
            raise VenueDataError(f"fetch_key_permissions: not an object: {raw!r:.100}")
        return raw

    async def fetch_clock_offset(self) -> float:
        """Local wall clock minus the exchange's, in ms, taking the round trip's midpoint."""
        before = time.time() * 1000
        server = await self._retried("fetch_time", lambda: self.exchange.fetch_time())
        after = time.time() * 1000
        if not isinstance(server, int | float) or isinstance(server, bool) or server <= 0:
            raise VenueDataError(f"fetch_time: not a timestamp: {server!r:.100}")
        return (before + after) / 2 - float(server)

    def read_capacity(self) -> float | None:
        """Weight a minute that routine reads may spend: the tightest weight budget less its headroom and
        the share kept for cuts, per minute (None: no weight budget)."""
        limiter = self.limiter
        per_minute = [
            w.budget.limit * (1 - limiter.headroom) * (1 - limiter.cut_reserve) * 60 / w.budget.window_s
            for w in limiter.windows
            if w.budget.counts == "weight"
        ]
        return min(per_minute) if per_minute else None

    def usage(self) -> dict[str, Any]:
        """Rate-limit state, for the journal and `botkit check`."""
        return self.limiter.usage() | {"unresolved_orders": len(self.unresolved)}
