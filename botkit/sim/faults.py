"""Fault plans: what the emulator breaks, where, when and how often.

A plan is a list of rules, loaded from TOML or JSON (`[[rules]]` tables) or replaced at run time through
the admin API. Each rule names a kind, a target (a REST path or a stream name, `*` wildcards allowed), an
optional window of simulated seconds since start, a probability (drawn from the plan's own seeded
random generator, so a run is repeatable) and an optional cap on how many times it fires.

REST kinds: `http_error` (status + Binance code, e.g. 503/-1001), `rate_limit` (429 with Retry-After
`seconds`; like a real 429, requests during that cool-down earn a ban), `ban` (418 for `seconds`: every
request meanwhile gets 418 too, as from a real ban),
`latency` (ms added), `stall` (no answer for `seconds`, longer than the client's timeout),
`timeout_after_accept` (the request takes effect, the answer never arrives).
Stream kinds: `ws_disconnect` (the server closes matching connections), `freeze_feed` (market data stops
while REST keeps answering), `corrupt_frame` (frames of a matching stream arrive with only their event type
and time, as from a broken gateway).
Market kinds (applied while the window is open): `mark_divergence` (`value` basis points added to the
mark), `clock_skew` (`value` ms added to the server's clock), `tighten_brackets` (once, at the window's
start), `min_notional` (`value` becomes the symbol's minimum notional, once).
Conditional-order kinds (the target matches the order's client id): `stop_cancelled` (the exchange
cancels an untriggered one on its own), `stop_forgotten` (queries and listings do not show it for
`seconds`, though it still triggers), `trigger_rejected` (it is REJECTED when it triggers).
"""

from __future__ import annotations

import fnmatch
import json
import random
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

FaultKind = Literal[
    "http_error",
    "rate_limit",
    "ban",
    "latency",
    "stall",
    "timeout_after_accept",
    "ws_disconnect",
    "freeze_feed",
    "corrupt_frame",
    "mark_divergence",
    "clock_skew",
    "tighten_brackets",
    "min_notional",
    "stop_cancelled",
    "stop_forgotten",
    "trigger_rejected",
]
REST_KINDS = ("http_error", "rate_limit", "ban", "latency", "stall", "timeout_after_accept")


class FaultRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    target: str = Field("*", description="REST path (e.g. /fapi/v1/order) or stream (btcusdt@depth*); * matches all")
    method: str = Field("*", description="HTTP method for REST rules")
    symbol: str | None = Field(None, description="exchange symbol for market rules (all when unset)")
    probability: float = Field(1.0, ge=0, le=1)
    start: float = Field(0.0, ge=0, description="simulated seconds since start")
    end: float | None = Field(None, description="simulated seconds since start; open-ended when unset")
    count: int | None = Field(None, ge=1, description="fire at most this many times")
    status: int = Field(503, ge=400, le=599)
    code: int = -1001
    msg: str = "Internal error; unable to process your request. Please try again."
    latency_ms: int = Field(0, ge=0)
    seconds: float = Field(30.0, gt=0, description="how long a stall or a ban lasts; a rate_limit's Retry-After")
    value: Decimal | None = None
    fired: int = 0

    def active(self, elapsed_s: float) -> bool:
        return self.start <= elapsed_s and (self.end is None or elapsed_s < self.end)

    def matches(self, target: str, method: str = "*") -> bool:
        return fnmatch.fnmatchcase(target, self.target) and (self.method in ("*", method))


class FaultPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    rules: list[FaultRule] = Field(default_factory=list)

    def model_post_init(self, context: object) -> None:
        self._rng = random.Random(f"faults:{self.seed}")

    def pick(self, kinds: tuple[str, ...], target: str, method: str, elapsed_s: float) -> FaultRule | None:
        """The first rule of these kinds that is active, matches, has shots left and wins its draw."""
        for rule in self.rules:
            if rule.kind not in kinds or not rule.active(elapsed_s) or not rule.matches(target, method):
                continue
            if rule.count is not None and rule.fired >= rule.count:
                continue
            if rule.probability < 1 and self._rng.random() >= rule.probability:
                continue
            rule.fired += 1
            return rule
        return None

    def active(self, kind: str, elapsed_s: float) -> list[FaultRule]:
        return [r for r in self.rules if r.kind == kind and r.active(elapsed_s)]


class FaultPlanError(ValueError):
    """A fault plan that cannot be used; the message names its source and every bad field."""


def parse_plan(data: object, where: str = "fault plan") -> FaultPlan:
    try:
        return FaultPlan.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False))
        raise FaultPlanError(f"{where}: {problems}") from None


def load_plan(path: Path) -> FaultPlan:
    """Read a plan from a .toml or .json file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FaultPlanError(f"{path}: cannot read fault plan: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FaultPlanError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from None
    return parse_plan(data, str(path))
