"""The error taxonomy: every ccxt exception maps to exactly one botkit outcome, and callers of the venue
only ever see botkit's exceptions, never ccxt's.

| ccxt exception (first match wins)                                | on a read      | on a create/cancel |
| ---------------------------------------------------------------- | -------------- | ------------------ |
| DDoSProtection / RateLimitExceeded while a ban is on (HTTP 418)  | banned         | banned             |
| DDoSProtection / RateLimitExceeded (HTTP 429, -1003, -1015)      | rate_limited   | rate_limited       |
| InvalidNonce (-1021: timestamp outside recvWindow)               | clock          | clock              |
| NetworkError: RequestTimeout, ExchangeNotAvailable (5xx, refused | retryable      | unknown_outcome    |
|   connection, maintenance), ...                                  |                |                    |
| OperationFailed outside NetworkError (-1000, -1001, -1006,       | retryable      | unknown_outcome    |
|   BadResponse, NullResponse, CancelPending)                      |                |                    |
| ExchangeError: InvalidOrder, InsufficientFunds, BadRequest,      | rejected       | rejected           |
|   AuthenticationError, NotSupported, ...                         |                |                    |
| anything else (an answer ccxt could not parse, a bug)            | VenueDataError | unknown_outcome    |

What each outcome does:
- banned: nothing is sent until the ban ends; VenueBanned is raised (the kill switch halts on it).
- rate_limited: every task waits out Retry-After, the budgets are cut, the call is retried.
- clock: the time difference is resynced from the server and the call retried once; then ClockSkew.
- retryable: backoff and retry until the attempts or the deadline run out; then VenueUnavailable.
- unknown_outcome: the order is looked up by its client id before anything is sent again; then
  OrderUnresolved if its fate is still unknown at the deadline.
- rejected: never retried; Rejected carries the exchange's code and message.

Two rejections have a special meaning for orders: a duplicate client id on create means an earlier
attempt landed (fetch and adopt it), and a cancel refused because the order is gone is a success once
the order's final state has been fetched.
"""

from __future__ import annotations

import json
from enum import StrEnum

import ccxt


class Outcome(StrEnum):
    RETRYABLE = "retryable"
    RATE_LIMITED = "rate_limited"
    BANNED = "banned"
    CLOCK = "clock"
    UNKNOWN = "unknown_outcome"
    REJECTED = "rejected"


def classify(exc: BaseException, *, mutating: bool, banned: bool = False) -> Outcome:
    """The one botkit outcome of a ccxt exception (see the table above).

    `mutating`: the call creates or cancels an order, so a lost answer leaves its fate unknown.
    `banned`: the rate limiter saw a ban (HTTP 418) on this answer; ccxt reports 418 and 429 alike.
    """
    if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        return Outcome.BANNED if banned else Outcome.RATE_LIMITED
    if isinstance(exc, ccxt.InvalidNonce):
        return Outcome.CLOCK
    if isinstance(exc, ccxt.OperationFailed):  # NetworkError and the "may succeed later" family
        return Outcome.UNKNOWN if mutating else Outcome.RETRYABLE
    if isinstance(exc, ccxt.ExchangeError):
        return Outcome.REJECTED
    return Outcome.UNKNOWN


def exchange_details(exc: BaseException) -> tuple[int | str | None, str]:
    """The exchange's own error code and message from a ccxt exception's text, where it carries a body.

    ccxt formats these as `<exchange id> <json body>` (Binance `code`/`msg`, Bybit `retCode`/`retMsg`,
    OKX `code`/`msg` or `sCode`/`sMsg`); anything else gives (None, the text).
    """
    text = str(exc)
    start = text.find("{")
    if start >= 0:
        try:
            body = json.loads(text[start:])
        except ValueError:
            body = None
        if isinstance(body, dict):
            data = body.get("data")
            first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
            code = first.get("sCode") or body.get("code", body.get("retCode"))
            message = first.get("sMsg") or body.get("msg", body.get("retMsg"))
            if code is not None or message is not None:
                return _code(code), str(message or "")
    return None, text


def _code(value: object) -> int | str | None:
    if isinstance(value, int) or value is None:
        return value
    try:
        return int(str(value))
    except ValueError:
        return str(value)


class VenueError(Exception):
    """Base of everything the venue raises."""

    outcome: Outcome = Outcome.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Rejected(VenueError):
    """The exchange understood the request and refused it. Never retried."""

    outcome = Outcome.REJECTED

    def __init__(self, call: str, code: int | str | None, reason: str, *, kind: str = "") -> None:
        super().__init__(f"{call} rejected by the exchange: code={code} {reason}".rstrip())
        self.call, self.code, self.reason, self.kind = call, code, reason, kind


class VenueBanned(VenueError):
    """The venue banned this client (HTTP 418); nothing may be sent before `until` (monotonic seconds)."""

    outcome = Outcome.BANNED

    def __init__(self, until: float, seconds_left: float) -> None:
        super().__init__(f"the venue banned this client; nothing is sent for {seconds_left:.0f} s")
        self.until, self.seconds_left = until, seconds_left


class ClockSkew(VenueError):
    """Signed requests keep failing on their timestamp even after resyncing the time difference."""

    outcome = Outcome.CLOCK


class VenueUnavailable(VenueError):
    """A call kept failing in a retryable way until its attempts or its deadline ran out."""

    outcome = Outcome.RETRYABLE


class OrderUnresolved(VenueError):
    """A create or cancel whose fate could not be established before the deadline."""

    outcome = Outcome.UNKNOWN

    def __init__(self, call: str, client_id: str, last_error: str) -> None:
        super().__init__(f"{call} of order {client_id}: outcome still unknown at the deadline ({last_error})")
        self.call, self.client_id = call, client_id


class VenueDataError(VenueError):
    """An answer from the exchange that could not be validated; nothing is acted on from it."""


class Transient(VenueError):
    """One failed attempt that the retry policy may repeat (internal to the venue)."""

    def __init__(self, outcome: Outcome, call: str, error: BaseException) -> None:
        super().__init__(f"{call}: {type(error).__name__}: {error}")
        self.outcome, self.call, self.error = outcome, call, error
