"""The strategy API: a Strategy subclass reacts to events through async hooks and acts only through its
Context. It never holds an exchange client; every order it asks for goes through the risk gate.

    class MyStrategy(Strategy):
        timeframe = 60                       # seconds per bar (on the exchange's clock)

        class Params(BaseModel):              # validated from the config's [params] table
            fast: int = 10

        async def on_bar(self, ctx, bar):
            result = await ctx.buy(bar.symbol, stop=bar.close * Decimal("0.98"))   # qty=None: largest safe
            if isinstance(result, Verdict):   # the gate or the venue said no: reason codes, never an exception
                ctx.log.info("denied", reasons=result.reasons)

Every position is protected by a stop the exchange holds, placed when the entry fills at the entry's
`stop=` (and a take-profit with `take_profit=`); `ctx.move_stop` moves it (a trailing stop), and it stays
on the exchange when the bot stops.

Hooks: on_start, on_quote (book top / mark changed), on_bar (a finished candle), on_fill, on_order (any
order state change), on_rejected (a gate verdict against one of its intents), on_state (the trading state
changed), on_stop_triggered (a stop or take-profit the exchange held fired), on_stop. A hook that raises
is logged and journalled; the runtime then skips the event or halts, per `runtime.on_strategy_error`. The
guardrails run in their own tasks either way.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from botkit.clock import Clock
from botkit.config import ConfigError, format_errors
from botkit.domain import (  # noqa: F401 (Side and OrderType are re-exported for strategies)
    Book,
    MarkPrice,
    Order,
    OrderIntent,
    OrderSide,
    OrderType,
    Position,
    Side,
    TradingState,
)
from botkit.guards.gate import Verdict
from botkit.guards.killswitch import SwitchEvent


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class Quote:
    symbol: str
    bid: Decimal | None
    ask: Decimal | None
    mark: Decimal | None
    index: Decimal | None


@dataclass(frozen=True, slots=True)
class Bar:
    symbol: str
    start_ms: int  # exchange time
    seconds: float
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int


@dataclass(frozen=True, slots=True)
class Fill:
    symbol: str
    side: str
    qty: Decimal  # this increment
    price: Decimal | None  # this increment's average price (None if the venue reported no average)
    order: Order  # the order after the fill


@dataclass(frozen=True, slots=True)
class Funding:
    symbol: str
    rate: Decimal | None  # the current period's rate: > 0 longs pay shorts
    next_ms: int | None


class Strategy:
    """Base class: override the hooks you need. `symbols` empty means the config's symbols."""

    symbols: ClassVar[Sequence[str]] = ()
    timeframe: ClassVar[float] = 60.0
    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: BaseModel) -> None:
        self.params = params

    async def on_start(self, ctx: Context) -> None: ...
    async def on_quote(self, ctx: Context, quote: Quote) -> None: ...
    async def on_bar(self, ctx: Context, bar: Bar) -> None: ...
    async def on_fill(self, ctx: Context, fill: Fill) -> None: ...
    async def on_order(self, ctx: Context, order: Order) -> None: ...
    async def on_rejected(self, ctx: Context, verdict: Verdict) -> None: ...
    async def on_state(self, ctx: Context, state: TradingState, event: SwitchEvent) -> None: ...
    async def on_stop_triggered(self, ctx: Context, stop: Order) -> None: ...
    async def on_stop(self, ctx: Context) -> None: ...


def load_strategy(spec: str) -> type[Strategy]:
    """A strategy class by name (`sma_cross`: strategies/sma_cross.py, botkit's or the current folder's), as
    `module:Class` (a module importable from the current folder too) or as `path/to/file.py[:Class]`."""
    module_name, _, class_name = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if module_name.endswith(".py"):
        module = _load_file(spec, Path(module_name))
    else:
        if not class_name and (local := Path.cwd() / "strategies" / f"{spec}.py").is_file() and \
                not _packaged(spec):  # fmt: skip
            module = _load_file(spec, local)
        else:
            module = _import(spec, module_name if class_name else f"strategies.{spec}")
    if class_name:
        found = getattr(module, class_name, None)
        if not (inspect.isclass(found) and issubclass(found, Strategy)):
            raise ConfigError([f"strategy = {spec!r}: {module.__name__} has no Strategy subclass {class_name!r}"])
        return found
    own = [
        c
        for c in vars(module).values()
        if inspect.isclass(c) and issubclass(c, Strategy) and c is not Strategy and c.__module__ == module.__name__
    ]
    if len(own) != 1:
        raise ConfigError(
            [f"strategy = {spec!r}: {module.__name__} defines {len(own)} Strategy classes; name one as module:Class"]
        )
    return own[0]


def _packaged(name: str) -> bool:
    return importlib.util.find_spec(f"strategies.{name}") is not None if _has_strategies() else False


def _has_strategies() -> bool:
    try:
        return importlib.util.find_spec("strategies") is not None
    except ValueError:
        return False


def _import(spec: str, module_name: str) -> ModuleType:
    """Import a module, the current folder first on the path (as `python -m` would)."""
    here = str(Path.cwd())
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise ConfigError([f"strategy = {spec!r}: no module {module_name!r} (a name in strategies/, "
                               "module:Class, or file.py:Class)"]) from None  # fmt: skip
        raise _refused(spec, f"{module_name} imports {exc.name!r}, which is not installed") from None
    except SyntaxError as exc:
        raise _refused(spec, f"syntax error in {exc.filename} line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:  # the module raised while it was imported
        raise _refused(spec, f"importing {module_name} failed: {_located(exc)}") from None


def _load_file(spec: str, path: Path) -> ModuleType:
    if not path.is_file():
        raise ConfigError([f"strategy = {spec!r}: no such file {str(path)!r}"])
    name = f"botkit_strategy_{path.stem}"
    loader = importlib.util.spec_from_file_location(name, path)
    if loader is None or loader.loader is None:
        raise ConfigError([f"strategy = {spec!r}: {path} is not a Python file"])
    module = importlib.util.module_from_spec(loader)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        loader.loader.exec_module(module)
    except SyntaxError as exc:
        raise _refused(spec, f"syntax error in {exc.filename} line {exc.lineno}: {exc.msg}") from None
    except ModuleNotFoundError as exc:
        raise _refused(spec, f"{path} imports {exc.name!r}, which is not installed") from None
    except Exception as exc:
        raise _refused(spec, f"running {path} failed: {_located(exc)}") from None
    return module


def _refused(spec: str, problem: str) -> ConfigError:
    return ConfigError([f"strategy = {spec!r}: {problem}"])


def located(exc: BaseException) -> str:
    """`file:line` of the innermost frame an exception was raised in (where to look first)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"


def _located(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc} (at {located(exc)})"


def available() -> list[tuple[str, type[Strategy] | None, str]]:
    """Every strategy `--strategy NAME` finds: botkit's strategies/ and the current folder's strategies/, as
    (name, class, problem) with the class None when it does not load (the problem says why)."""
    names: set[str] = set()
    spec = importlib.util.find_spec("strategies") if _has_strategies() else None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:  # the folder, not imported
        names |= {p.stem for p in Path(folder).glob("*.py") if not p.stem.startswith("_")}
    local = Path.cwd() / "strategies"
    if local.is_dir():
        names |= {p.stem for p in local.glob("*.py") if not p.stem.startswith("_")}
    found: list[tuple[str, type[Strategy] | None, str]] = []
    for name in sorted(names):
        try:
            found.append((name, load_strategy(name), ""))
        except ConfigError as exc:
            found.append((name, None, str(exc)))
    return found


def make_strategy(cls: type[Strategy], params: dict[str, Any]) -> Strategy:
    """The strategy with its parameters validated; bad parameters are a ConfigError, one line each."""
    try:
        return cls(cls.Params(**params))
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, f"params ({cls.__name__})")) from None


def _decimal(value: Any) -> Any:
    """Numbers from a strategy as Decimal (floats by their shortest repr); anything else is passed on for
    the gate to reject as INTENT_INVALID."""
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return value
    return value


class Orders(Protocol):
    """The order road as a strategy sees it: every intent goes through the risk gate."""

    async def submit(self, intent: OrderIntent) -> Order | Verdict: ...
    async def cancel(self, order: Order) -> bool: ...
    def open_orders(self, symbol: str | None = None) -> list[Order]: ...
    async def move_stop(self, symbol: str, price: Decimal, wider: bool) -> Order | Verdict: ...
    def stop(self, symbol: str) -> Order | None: ...


class Prices(Protocol):
    """The latest market data per symbol (None until it first arrives)."""

    def mark(self, symbol: str) -> MarkPrice | None: ...
    def book(self, symbol: str) -> Book | None: ...


class Account(Protocol):
    """The account as last known: positions, equity and the trading state."""

    def position(self, symbol: str) -> Position | None: ...
    def equity(self) -> Decimal | None: ...
    def state(self) -> TradingState: ...


class Context:
    """Everything a strategy may do or see, through small protocols (never the bot itself). Order calls
    return the Order as the venue reported it, or a rejecting Verdict (the gate's, or the venue's
    refusal); they never raise for a broken rule."""

    def __init__(self, orders: Orders, prices: Prices, account: Account, clock: Clock, log: Any) -> None:
        self._orders, self._prices, self._account, self._clock = orders, prices, account, clock
        self.log = log

    async def buy(self, symbol: str, qty: Any = None, *, stop: Any, leverage: Any = None,
                  type: OrderType | str = OrderType.MARKET, price: Any = None, reduce_only: bool = False,
                  tag: str | None = None, take_profit: Any = None) -> Order | Verdict:  # fmt: skip
        """Open or add to a long; once it fills, the exchange holds a stop at `stop` (and a take-profit)."""
        return await self._order(OrderSide.BUY, symbol, qty, stop, leverage, type, price, reduce_only, tag,
                                 take_profit)  # fmt: skip

    async def sell(self, symbol: str, qty: Any = None, *, stop: Any, leverage: Any = None,
                   type: OrderType | str = OrderType.MARKET, price: Any = None, reduce_only: bool = False,
                   tag: str | None = None, take_profit: Any = None) -> Order | Verdict:  # fmt: skip
        """Open or add to a short; once it fills, the exchange holds a stop at `stop` (and a take-profit)."""
        return await self._order(OrderSide.SELL, symbol, qty, stop, leverage, type, price, reduce_only, tag,
                                 take_profit)  # fmt: skip

    async def _order(self, side: OrderSide, symbol: Any, qty: Any, stop: Any, leverage: Any, type: Any, price: Any,
                     reduce_only: Any, tag: Any, take_profit: Any) -> Order | Verdict:  # fmt: skip
        intent = OrderIntent(symbol, side, _decimal(qty), type, _decimal(price), _decimal(stop), leverage,
                             reduce_only, tag, _decimal(take_profit))  # fmt: skip
        return await self._orders.submit(intent)

    async def move_stop(self, symbol: str, price: Any, *, wider: bool = False) -> Order | Verdict:
        """Move the position's exchange-held stop to `price` (a trailing stop): toward less risk only,
        unless `wider=True`, and never past the liquidation buffer or the mark. Returns the new stop, or a
        rejecting Verdict; the new stop is on the exchange before the old one is cancelled."""
        return await self._orders.move_stop(symbol, _decimal(price), bool(wider))

    def stop(self, symbol: str) -> Order | None:
        """The stop the exchange holds for the position (None when there is none)."""
        return self._orders.stop(symbol)

    async def close(self, symbol: str, tag: str | None = None) -> Order | Verdict | None:
        """Close the whole position with a reduce-only market order; None when flat."""
        position = self.position(symbol)
        if position is None:
            return None
        intent = OrderIntent(symbol, OrderSide.closing(position.side), position.qty, reduce_only=True,
                             tag=tag or "close")
        return await self._orders.submit(intent)

    async def cancel(self, order: Order) -> bool:
        """Cancel an open order (never blocked by the gate); True once the venue confirms it is gone."""
        return await self._orders.cancel(order)

    def position(self, symbol: str) -> Position | None:
        return self._account.position(symbol)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return self._orders.open_orders(symbol)

    @property
    def equity(self) -> Decimal | None:
        return self._account.equity()

    @property
    def state(self) -> TradingState:
        return self._account.state()

    def mark(self, symbol: str) -> Decimal | None:
        entry = self._prices.mark(symbol)
        return entry.mark if entry is not None else None

    def book(self, symbol: str) -> Book | None:
        return self._prices.book(symbol)

    def funding(self, symbol: str) -> Funding | None:
        entry = self._prices.mark(symbol)
        return Funding(symbol, entry.funding_rate, entry.next_funding_ms) if entry is not None else None

    @property
    def now(self) -> datetime:
        """The time on the bot's clock (the wall clock live, the replayed time in a replay)."""
        return datetime.fromtimestamp(self._clock.time(), UTC)
