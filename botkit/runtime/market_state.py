"""Market state: per symbol, the exchange's rules and brackets, the leverage set, and the latest book top
and mark (with index and funding), each stamped with the monotonic time it arrived, from any source: a
WebSocket frame, a REST poll, or the mark the exchange reports with each position on an account read.
The gate and the liquidation guard read the freshest mark, so a frozen stream with healthy REST does not
blind them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from botkit.clock import Clock
from botkit.domain import Book, MarkPrice
from botkit.guards.exposure import Exposure
from botkit.guards.gate import MarketView
from botkit.guards.market_risk import SHOWN, MarketRisk
from botkit.margin import MarketRules, Tier
from botkit.runtime.strategy import Quote

ONE = Decimal(1)  # a risk budget not scaled


class MarketState:
    """What the bot knows of each market, with ages."""

    def __init__(self, clock: Clock, exposure: Exposure | None = None,
                 monitor: Callable[[], MarketRisk] | None = None) -> None:  # fmt: skip
        self.clock = clock
        self.exposure = exposure  # told each symbol's freshest mark (it values positions at it)
        self.monitor = monitor or MarketRisk  # makes each symbol's market-risk figures (early warning)
        self.risk: dict[str, MarketRisk] = {}
        self.rules: dict[str, MarketRules] = {}
        self.tiers: dict[str, tuple[Tier, ...]] = {}
        self.leverage: dict[str, int] = {}
        self.books: dict[str, Book] = {}
        self.book_at: dict[str, float] = {}
        self.marks: dict[str, MarkPrice] = {}  # from the mark stream or its REST poll (index and funding too)
        self.mark_at: dict[str, float] = {}
        self.account_marks: dict[str, tuple[Decimal, float]] = {}  # (mark, at) from an account read
        self.budget_scale: dict[str, Decimal] = {}  # symbol -> its risk budget's fraction (a crowded market)
        self.views = _Views(self)  # what the gate reads, one symbol's view built when it is asked for

    def set_book(self, symbol: str, book: Book) -> None:
        self.books[symbol], self.book_at[symbol] = book, self.clock.monotonic()

    def set_mark(self, symbol: str, mark: MarkPrice) -> None:
        now = self.clock.monotonic()
        self.marks[symbol], self.mark_at[symbol] = mark, now
        self._risk(symbol).update(now, mark.mark, mark.index, mark.funding_rate)
        if self.exposure is not None:
            self.exposure.mark(symbol, self.mark(symbol)[0])

    def set_open_interest(self, symbol: str, amount: Decimal) -> None:
        self._risk(symbol).open_interest(self.clock.monotonic(), amount)

    def _risk(self, symbol: str) -> MarketRisk:
        risk = self.risk.get(symbol)
        if risk is None:
            risk = self.risk[symbol] = self.monitor()
        return risk

    def set_account_mark(self, symbol: str, mark: Decimal) -> None:
        self.account_marks[symbol] = (mark, self.clock.monotonic())
        if self.exposure is not None:
            self.exposure.mark(symbol, self.mark(symbol)[0])

    def mark(self, symbol: str) -> tuple[Decimal | None, float | None]:
        """The freshest mark of the symbol from any source, and when it arrived."""
        streamed, at = self.marks.get(symbol), self.mark_at.get(symbol)
        best = (streamed.mark, at) if streamed is not None and at is not None else (None, None)
        read = self.account_marks.get(symbol)
        if read is not None and (best[1] is None or read[1] > best[1]):
            return read
        return best

    def ready(self, symbols: list[str]) -> bool:
        return all(s in self.books and s in self.marks for s in symbols)

    def view(self, symbol: str) -> MarketView:
        """What the gate reads of one symbol."""
        book = self.books.get(symbol)
        mark, at = self.mark(symbol)
        risk = self.risk.get(symbol)
        return MarketView(self.rules[symbol], self.tiers[symbol], self.leverage[symbol], mark, at,
                          book.bids if book else (), book.asks if book else (), self.book_at.get(symbol),
                          risk.sigma if risk is not None else None, self.budget_scale.get(symbol, ONE))  # fmt: skip

    def quote(self, symbol: str) -> Quote:
        book, mark = self.books.get(symbol), self.marks.get(symbol)
        return Quote(symbol, book.bids[0][0] if book and book.bids else None,
                     book.asks[0][0] if book and book.asks else None,
                     mark.mark if mark else None, mark.index if mark else None)  # fmt: skip

    def top(self, symbol: str) -> dict[str, Any]:
        """Book top, mark, index and funding of one symbol (for the journal's snapshots)."""
        quote, mark, risk = self.quote(symbol), self.marks.get(symbol), self.risk.get(symbol)
        top: dict[str, Any] = {"bid": quote.bid, "ask": quote.ask, "mark": quote.mark, "index": quote.index,
                               "funding_rate": mark.funding_rate if mark else None}  # fmt: skip
        if risk is not None:  # the early-warning figures (None until each has enough marks)
            figures = risk.figures()
            top |= {name: getattr(figures, name) for name in SHOWN}
        return top

    def ages(self, symbols: list[str]) -> dict[str, float | None]:
        now = self.clock.monotonic()
        ages: dict[str, float | None] = {}
        for symbol in symbols:
            for name, stamps in (("book", self.book_at), ("mark", self.mark_at)):
                at = stamps.get(symbol)
                ages[f"{name}:{symbol}"] = None if at is None else now - at
        return ages


class _Views(Mapping[str, MarketView]):
    """Every traded symbol's MarketView, each built when read: a check reads one, however many are traded."""

    def __init__(self, state: MarketState) -> None:
        self._state = state

    def __getitem__(self, symbol: str) -> MarketView:
        if symbol not in self._state.rules:
            raise KeyError(symbol)
        return self._state.view(symbol)

    def __iter__(self) -> Iterator[str]:
        return iter(self._state.rules)

    def __len__(self) -> int:
        return len(self._state.rules)
