"""Client order ids: botkit names every order itself, so a lost answer can be looked up instead of resent
blindly, and a restarted bot can recognise its own orders by their prefix.

An id is `<prefix>-<session><sequence>`: the session part is the start time in milliseconds (base 36)
plus three random characters, so two runs never share a session, even when started in the same
millisecond. The separator cannot occur in a prefix, so ownership is exact: a bot with prefix `bk` never
takes a `bk2` bot's orders for its own. Ids are at most 32 characters, which every supported exchange
accepts (Binance 36 of `[.A-Z:/a-z0-9_-]`, Bybit 36 of `[A-Za-z0-9_-]`, OKX 32 alphanumeric). Where the
exchange allows only letters and digits (OKX), there is no separator: give bots on one such account
prefixes that do not start one another.
"""

from __future__ import annotations

import re
import secrets
import time
from itertools import count

PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9]{1,8}$")
MAX_LENGTH = 32
RULES = {
    "binanceusdm": re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$"),
    "bybit": re.compile(r"^[A-Za-z0-9_-]{1,36}$"),
    "okx": re.compile(r"^[A-Za-z0-9]{1,32}$"),
}
DEFAULT_RULE = re.compile(r"^[A-Za-z0-9]{1,32}$")
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
SEPARATOR = "-"  # never in a prefix (letters and digits only)


def base36(n: int) -> str:
    text = ""
    while True:
        n, digit = divmod(n, 36)
        text = DIGITS[digit] + text
        if n == 0:
            return text


class ClientIds:
    def __init__(self, prefix: str = "bk", *, exchange_id: str = "", now_ms: int | None = None) -> None:
        if not PREFIX_PATTERN.match(prefix):
            raise ValueError(f"client id prefix {prefix!r} must be 1 to 8 letters or digits")
        started = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        random_part = "".join(secrets.choice(DIGITS) for _ in range(3))
        self.rule = RULES.get(exchange_id, DEFAULT_RULE)
        self.prefix = prefix + (SEPARATOR if self.rule.match(SEPARATOR) else "")  # what marks this bot's ids
        self.session = self.prefix + base36(started)[-8:] + random_part
        self._sequence = count(1)

    def next(self) -> str:
        client_id = self.session + base36(next(self._sequence))
        if len(client_id) > MAX_LENGTH:
            raise RuntimeError("client id sequence exhausted for this session")  # after ~10^18 orders
        return client_id

    def owns(self, client_id: str | None) -> bool:
        """Whether an order carries this bot's prefix (any session: also orders from before a restart)."""
        return bool(client_id and client_id.startswith(self.prefix))

    def check(self, client_id: str) -> str:
        """A caller's own id, validated against the exchange's length and charset."""
        if not self.rule.match(client_id):
            raise ValueError(f"client id {client_id!r} does not match the exchange's rule {self.rule.pattern}")
        return client_id
