"""ccxt's unified structures, validated into botkit's domain types: one parser per shape, shared by REST
answers, WebSocket frames and the paper venue's view of the market. Quantities come out in base units
(`size` is the market's contract size). Anything missing, malformed or impossible raises VenueDataError
naming it: botkit never acts on data it could not read.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from itertools import pairwise
from typing import Any

from botkit.domain import (
    Book,
    FundingPayment,
    MarkPrice,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    Position,
    Side,
    Trade,
)
from botkit.margin import to_decimal
from botkit.venue.errors import VenueDataError

ONE = Decimal(1)
SIDES = frozenset(OrderSide)
TYPES = frozenset(OrderType)
STATUSES = {
    "open": OrderStatus.OPEN,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}


def book(raw: Any, symbol: str, depth: int, size: Decimal = ONE) -> Book:
    """The top `depth` levels of a ccxt order book: positive, ordered, not crossed."""
    if not isinstance(raw, Mapping):
        raise VenueDataError(f"order book {symbol}: the answer is not an object")
    try:
        bids = tuple((to_decimal(p, "bid price"), to_decimal(q, "bid qty") * size) for p, q, *_ in raw["bids"][:depth])
        asks = tuple((to_decimal(p, "ask price"), to_decimal(q, "ask qty") * size) for p, q, *_ in raw["asks"][:depth])
    except (KeyError, TypeError, ValueError) as exc:
        raise VenueDataError(f"order book {symbol}: malformed levels ({exc})") from None
    if any(p <= 0 or q <= 0 for p, q in bids + asks):
        raise VenueDataError(f"order book {symbol}: a level with a price or quantity <= 0")
    ordered = all(a[0] > b[0] for a, b in pairwise(bids)) and all(a[0] < b[0] for a, b in pairwise(asks))
    if not ordered or (bids and asks and bids[0][0] >= asks[0][0]):
        raise VenueDataError(f"order book {symbol}: levels out of order or crossed")
    return Book(symbol, bids, asks, int_or_none(raw.get("timestamp")))


def mark(raw: Any, symbol: str) -> MarkPrice:
    """A ccxt funding-rate answer (REST) or mark-price update (WebSocket). ccxt leaves the stream's funding
    fields in `info` (Binance: `r` rate, `T` next funding time)."""
    if not isinstance(raw, Mapping):
        raise VenueDataError(f"mark price {symbol}: the answer is not an object")
    extra = info(raw)
    try:
        price = to_decimal(raw.get("markPrice"), "markPrice")
        index = optional(raw.get("indexPrice"), "indexPrice")
        rate = optional(raw.get("fundingRate", extra.get("r")), "fundingRate")
    except ValueError as exc:
        raise VenueDataError(f"mark price {symbol}: {exc}") from None
    if price <= 0 or (index is not None and index <= 0):
        raise VenueDataError(f"mark price {symbol}: mark {price} / index {index} must be positive")
    next_funding = int_or_none(raw.get("fundingTimestamp", extra.get("T")))
    return MarkPrice(symbol, price, index, rate, next_funding, int_or_none(raw.get("timestamp")))


def open_interest(raw: Any, symbol: str) -> Decimal:
    """A ccxt open-interest answer: the amount open, in base units (Binance: `openInterest`)."""
    if not isinstance(raw, Mapping):
        raise VenueDataError(f"open interest {symbol}: the answer is not an object")
    try:
        amount = to_decimal(raw.get("openInterestAmount", info(raw).get("openInterest")), "openInterestAmount")
    except ValueError as exc:
        raise VenueDataError(f"open interest {symbol}: {exc}") from None
    if amount < 0:
        raise VenueDataError(f"open interest {symbol}: {amount} is negative")
    return amount


def trades(raw: Any, symbol: str, size: Decimal = ONE) -> list[Trade]:
    """ccxt trades (public prints): positive price and amount, a timestamp."""
    if not isinstance(raw, list):
        raise VenueDataError(f"trades {symbol}: expected a list")
    out = []
    for row in raw:
        try:
            price, qty = to_decimal(row["price"], "price"), to_decimal(row["amount"], "amount") * size
            stamp = int(row["timestamp"])
        except (KeyError, TypeError, ValueError) as exc:
            raise VenueDataError(f"trade {symbol}: {exc!r}") from None
        if price <= 0 or qty <= 0:
            raise VenueDataError(f"trade {symbol}: price {price} / amount {qty} must be positive")
        out.append(Trade(symbol, price, qty, stamp))
    return out


def order(raw: Any, client_id: str | None, size: Mapping[str, Decimal]) -> Order:
    """A ccxt order (`size`: contract size by symbol)."""
    if not isinstance(raw, Mapping):
        raise VenueDataError(f"order answer is not an object: {raw!r:.200}")
    cid = raw.get("clientOrderId") or client_id
    status = STATUSES.get(str(raw.get("status")))
    side, kind = raw.get("side"), raw.get("type")
    known = isinstance(side, str) and side in SIDES and isinstance(kind, str) and kind in TYPES
    if status is None or not cid or not raw.get("symbol") or not known:
        problem = "missing or unknown status/clientOrderId/symbol/side/type"
        raise VenueDataError(f"order {cid or raw.get('id')}: {problem} in {dict(raw)!r:.300}")
    where = f"order {cid}"
    symbol = str(raw["symbol"])
    try:
        qty = to_decimal(raw.get("amount"), "amount") * size.get(symbol, ONE)
        filled = to_decimal(raw.get("filled") or 0, "filled") * size.get(symbol, ONE)
        price = optional(raw.get("price"), "price")
        average = optional(raw.get("average"), "average")
    except ValueError as exc:
        raise VenueDataError(f"{where}: {exc}") from None
    if qty <= 0 or filled < 0 or filled > qty:
        raise VenueDataError(f"{where}: impossible amounts (amount {qty}, filled {filled})")
    return Order(
        symbol=symbol,
        side=OrderSide(str(side)),
        type=OrderType(str(kind)),
        qty=qty,
        price=price if price else None,
        client_id=str(cid),
        id=str(raw["id"]) if raw.get("id") is not None else None,
        status=status,
        filled=filled,
        average=average if average else None,
        reduce_only=bool(raw.get("reduceOnly")),
        timestamp_ms=int_or_none(raw.get("timestamp")),
    )


# A conditional order's status as Binance's algo service writes it (`algoStatus` over REST, `X` in ALGO_UPDATE).
# ccxt's unified shape cannot be used: it reports TRIGGERED and FINISHED as "closed" with filled = amount,
# though the conditional order itself never fills (the regular order it places does).
ALGO_STATUSES = {
    "NEW": OrderStatus.OPEN,
    "TRIGGERING": OrderStatus.OPEN,
    "TRIGGERED": OrderStatus.TRIGGERED,
    "FINISHED": OrderStatus.TRIGGERED,
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}


def is_conditional(raw: Any) -> bool:
    """Whether a ccxt order is a conditional order of Binance's algo service (REST or stream)."""
    info = raw.get("info") if isinstance(raw, Mapping) else None
    return isinstance(info, Mapping) and ("algoId" in info or "aid" in info)


def conditional(raw: Any, size: Mapping[str, Decimal]) -> Order:
    """A conditional order from its exchange fields (REST: algoId, algoStatus, ...; stream: aid, X, ...)."""
    info = raw.get("info") if isinstance(raw, Mapping) else None
    if not isinstance(info, Mapping):
        raise VenueDataError(f"conditional order without its exchange fields: {raw!r:.200}")

    def field(rest: str, stream: str) -> Any:
        return info.get(rest, info.get(stream))

    cid, status = field("clientAlgoId", "caid"), ALGO_STATUSES.get(str(field("algoStatus", "X")))
    side, kind, symbol = str(field("side", "S")).lower(), str(field("orderType", "o")).lower(), raw.get("symbol")
    if status is None or not cid or not symbol or side not in SIDES or kind not in TYPES:
        problem = "missing or unknown status/clientAlgoId/symbol/side/type"
        raise VenueDataError(f"conditional order {cid}: {problem} in {dict(info)!r:.300}")
    try:
        qty = to_decimal(field("quantity", "q") or 0, "quantity") * size.get(str(symbol), ONE)
        trigger = to_decimal(field("triggerPrice", "tp") or 0, "triggerPrice")
        price = optional(field("price", "p"), "price")
    except ValueError as exc:
        raise VenueDataError(f"conditional order {cid}: {exc}") from None
    if qty < 0 or trigger < 0:
        raise VenueDataError(f"conditional order {cid}: impossible figures (quantity {qty}, trigger {trigger})")
    algo_id = field("algoId", "aid")
    return Order(
        symbol=str(symbol), side=OrderSide(side), type=OrderType(kind), qty=qty, price=price if price else None,
        client_id=str(cid), id=str(algo_id) if algo_id is not None else None, status=status,
        reduce_only=str(field("reduceOnly", "R")).lower() == "true", timestamp_ms=int_or_none(raw.get("timestamp")),
        trigger=trigger,
    )  # fmt: skip


def position(raw: Any, size: Mapping[str, Decimal]) -> Position | None:
    """A ccxt position row; None when it holds nothing."""
    if not isinstance(raw, Mapping) or not raw.get("symbol"):
        raise VenueDataError(f"position row without a symbol: {raw!r:.200}")
    symbol = str(raw["symbol"])
    try:
        contracts = to_decimal(raw.get("contracts") or 0, "contracts")
        if contracts == 0:
            return None
        wallet = info(raw).get("isolatedWallet")
        return Position(
            symbol=symbol,
            side=Side.parse(str(raw.get("side"))),
            qty=abs(contracts) * size.get(symbol, ONE),
            entry=to_decimal(raw.get("entryPrice"), "entryPrice"),
            mark=optional(raw.get("markPrice"), "markPrice"),
            liquidation=optional(raw.get("liquidationPrice"), "liquidationPrice") or None,
            margin_mode=raw.get("marginMode"),
            isolated_wallet=optional(wallet, "isolatedWallet") if wallet is not None else None,
            leverage=optional(raw.get("leverage"), "leverage"),
            unrealized_pnl=to_decimal(raw.get("unrealizedPnl") or 0, "unrealizedPnl"),
        )
    except ValueError as exc:
        raise VenueDataError(f"position {symbol}: {exc}") from None


def funding_payment(row: Any) -> FundingPayment:
    """A ccxt funding-history row: paid (< 0) or received (> 0)."""
    if not isinstance(row, Mapping) or not row.get("symbol") or row.get("id") is None:
        raise VenueDataError(f"funding payment without a symbol or id: {row!r:.200}")
    try:
        amount = to_decimal(row.get("amount"), "amount")
    except ValueError as exc:
        raise VenueDataError(f"funding payment {row.get('id')}: {exc}") from None
    return FundingPayment(str(row["symbol"]), amount, str(row["id"]), int_or_none(row.get("timestamp")))


def rows(raw: Any, call: str) -> list[Any]:
    if not isinstance(raw, list):
        raise VenueDataError(f"{call}: expected a list, got {type(raw).__name__}")
    return raw


def info(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """The exchange's raw row that ccxt keeps under `info` (empty when it is missing or not an object)."""
    extra = raw.get("info")
    return extra if isinstance(extra, Mapping) else {}


def optional(value: Any, name: str) -> Decimal | None:
    return None if value is None or value == "" else to_decimal(value, name)


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
