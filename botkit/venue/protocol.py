"""What the runtime needs of a venue, in domain types: the exchange through ccxt (`CcxtVenue`), a simulated
account on the real market (`PaperVenue`), or a test's fake. `open_venue` is the one place that picks
the venue for a config.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from botkit.clock import Clock
from botkit.config import BotConfig, ConfigError
from botkit.domain import Balance, Book, FundingPayment, MarkPrice, Order, Position, Trade
from botkit.guards.gate import Approval
from botkit.margin import MarketRules, Tier
from botkit.venue.ccxt_venue import CcxtVenue, build_exchange
from botkit.venue.errors import Rejected
from botkit.venue.ids import ClientIds
from botkit.venue.paper import PaperVenue


class Venue(Protocol):
    """An exchange account as the runtime sees it. Reads raise VenueError subclasses (VenueDataError for
    an answer or frame that could not be read); `create_order` takes only the gate's Approval."""

    ids: ClientIds  # this bot's client ids: making them and telling its own orders from others'
    unresolved: set[str]  # client ids whose create or cancel outcome is not known yet
    exchange_id: str

    # markets and account set-up
    async def load_markets(self) -> dict[str, MarketRules]: ...
    async def fetch_tiers(self, symbols: Iterable[str]) -> dict[str, tuple[Tier, ...]]: ...
    async def ensure_isolated(self, symbol: str, leverage: int) -> None: ...
    async def fetch_margin_settings(self, symbol: str) -> tuple[int | None, str | None]: ...

    # orders
    async def create_order(self, approval: Approval, *, client_id: str | None = None) -> Order: ...
    async def cancel_order(
        self, symbol: str, *, client_id: str | None = None, order_id: str | None = None
    ) -> Order: ...
    async def fetch_order(self, symbol: str, *, client_id: str | None = None, order_id: str | None = None) -> Order: ...
    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]: ...

    # account
    async def fetch_balance(self, currency: str = "USDT") -> Balance: ...
    async def fetch_positions(self, symbols: Iterable[str] | None = None) -> list[Position]: ...
    async def fetch_funding_payments(self, since_ms: int | None = None) -> list[FundingPayment]: ...
    async def fetch_clock_offset(self) -> float: ...

    # market data: REST, and the streams (each call waits for the next update)
    async def fetch_book(self, symbol: str) -> Book: ...
    async def fetch_mark(self, symbol: str) -> MarkPrice: ...
    async def watch_book(self, symbol: str) -> Book: ...
    async def watch_mark(self, symbol: str) -> MarkPrice: ...
    async def watch_trades(self, symbol: str) -> list[Trade]: ...
    async def watch_orders(self) -> list[Order]: ...
    def restart_streams(self, why: str) -> int: ...

    # what an answer means
    def is_not_found(self, exc: Rejected) -> bool: ...
    def is_liquidation(self, order: Order) -> bool: ...
    def rules_changed(self, exc: Rejected) -> bool: ...

    # request weight
    async def price(self, read: Callable[[], Awaitable[Any]]) -> float: ...
    def read_capacity(self) -> float | None: ...
    def usage(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


def open_venue(
    config: BotConfig,
    *,
    emulator_url: str | None = None,
    streaming: bool = True,
    clock: Clock | None = None,
    on_ban: Callable[[float], Any] | None = None,
    on_error: Callable[[str], Any] | None = None,
) -> Venue:
    """The venue the config's mode asks for: paper (simulated account, real market), else the exchange
    (demo, testnet, live). Raises ConfigError for an exchange or rate budget ccxt or botkit do not know."""
    exchange = build_exchange(config, emulator_url=emulator_url, streaming=streaming)
    try:
        if config.mode == "paper":
            return PaperVenue(exchange, config, clock=clock, on_ban=on_ban, on_error=on_error)
        return CcxtVenue(exchange, config.venue, clock=clock, on_ban=on_ban, on_error=on_error)
    except ValueError as exc:  # a rate budget name the exchange's preset does not have
        raise ConfigError([f"venue.rate_limits: {exc}"]) from None
