"""Early warning: what one symbol's market says before anything has gone wrong. Funding alone is a weak
signal; funding, basis (mark against index) and realized volatility read together show crowded positioning,
and a stop inside the market's own noise is hit by noise alone. Pure: the runtime feeds each symbol's
marks (with index and funding) and reads the figures; the gate's two checks take them as numbers.

The figures, each from the marks as they arrive (their receive times on the bot's clock, so a backtest's
replayed time works as well as the wall clock):

- **volatility** of the mark: an exponentially weighted mean of squared log returns per second, with a
  half-life in seconds (irregular intervals weigh by their length): σ² ← σ² + α·(r²/Δt − σ²),
  α = 1 − 2^(−Δt/H). σ·√T is the move expected over T seconds; shown per year and per funding interval.
- **funding**: the rate annualised (rate × intervals a year), and its z-score against its own recent
  history, sampled at most once every `funding_sample_seconds`: z = (f − mean) / stdev (population).
- **basis**: (mark − index) / index, and its drift: the basis now less the basis `drift_seconds` ago.
- **rising volatility**: the volatility against a slower one (SLOW half-lives): σ_fast / σ_slow.
- **open interest**, where the venue serves it (read by the reconciler), and its change over the drift
  window: OI_now / OI_then − 1. Shown, not part of the crowding trigger: how much of a rise is a crowd
  piling in differs too much between markets for one threshold.

**Crowding** (`crowded`): all three extreme in the direction of a position: for a long, funding z-score,
basis and volatility ratio each at or above its threshold (longs paying rich funding into a widening
premium while volatility rises); for a short, funding z-score and basis at or below minus theirs. Once
crowded, it stays so until all three are back below half their thresholds (the ratio: half of its excess
over 1): a figure hovering at its threshold does not flip the state, and a cascade that flips the basis
while volatility soars is not the crowd having gone.

Float is enough here: these are estimates that decide whether to warn, not amounts of money.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from decimal import Decimal

from botkit.domain import Reason
from botkit.margin import Violation

SECONDS_A_YEAR = 365 * 24 * 3600
SLOW = 8  # the slow volatility's half-life, in fast half-lives: the ratio of the two says "rising"
# the figures the journal's snapshots, the report and the metrics carry (the rest are their ingredients)
SHOWN = ("vol_annual", "funding_annual", "funding_z", "basis", "basis_drift", "vol_ratio", "open_interest", "oi_change")


@dataclass(frozen=True, slots=True)
class Figures:
    """One symbol's market-risk figures now (None: not enough data yet)."""

    sigma: float | None  # volatility of the mark per √second (a fraction of the price)
    vol_annual: float | None
    vol_interval: float | None  # over one funding interval
    funding_rate: float | None
    funding_annual: float | None
    funding_z: float | None
    basis: float | None
    basis_drift: float | None
    vol_ratio: float | None = None  # the volatility against its slower average: above 1, rising
    open_interest: float | None = None  # contracts open, in base units (where the venue serves it)
    oi_change: float | None = None  # its change over the drift window, a fraction: a crowd piling in or out

    def as_dict(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in self.__slots__}


class MarketRisk:
    """The figures of one symbol, updated mark by mark (see the module's docstring)."""

    def __init__(self, *, half_life_s: float = 900.0, funding_interval_s: float = 8 * 3600.0,
                 funding_window: int = 96, funding_sample_s: float = 300.0,
                 drift_s: float = 3600.0) -> None:  # fmt: skip
        self.half_life_s, self.funding_interval_s = half_life_s, funding_interval_s
        self.funding_sample_s, self.drift_s = funding_sample_s, drift_s
        self.variance: float | None = None  # per second
        self.slow_variance: float | None = None  # the same with SLOW × the half-life: what "usual" is
        self.observed_s = 0.0  # how much time the variance has seen
        self._last: tuple[float, float] | None = None  # (time, mark)
        self.funding: deque[float] = deque(maxlen=funding_window)  # sampled history
        self._funding_at: float | None = None
        self.rate: float | None = None
        self.basis: float | None = None
        self._bases: deque[tuple[float, float]] = deque()  # (time, basis) over the drift window
        self._interest: deque[tuple[float, float]] = deque()  # (time, open interest) over the drift window

    def update(self, t: float, mark: Decimal, index: Decimal | None = None,
               funding_rate: Decimal | None = None) -> None:  # fmt: skip
        """A mark received at `t` (seconds), with the index and the current funding rate when known."""
        price = float(mark)
        if price <= 0 or not math.isfinite(price):
            return
        if self._last is not None:
            dt = t - self._last[0]
            if dt > 0:
                r = math.log(price / self._last[1])
                sample = r * r / dt  # variance per second over this interval
                alpha = 1.0 - 2.0 ** (-dt / self.half_life_s)
                self.variance = sample if self.variance is None else self.variance + alpha * (sample - self.variance)
                slow = 1.0 - 2.0 ** (-dt / (SLOW * self.half_life_s))
                self.slow_variance = (sample if self.slow_variance is None
                                      else self.slow_variance + slow * (sample - self.slow_variance))  # fmt: skip
                self.observed_s += dt
        if self._last is None or t > self._last[0]:
            self._last = (t, price)
        if funding_rate is not None:
            self.rate = float(funding_rate)
            if self._funding_at is None or t - self._funding_at >= self.funding_sample_s:
                self.funding.append(self.rate)
                self._funding_at = t
        if index is not None and index > 0:
            self.basis = (price - float(index)) / float(index)
            self._bases.append((t, self.basis))
            while len(self._bases) > 1 and self._bases[1][0] <= t - self.drift_s:
                self._bases.popleft()

    def open_interest(self, t: float, amount: Decimal) -> None:
        """The open interest read at `t` (seconds), in base units."""
        self._interest.append((t, float(amount)))
        while len(self._interest) > 1 and self._interest[1][0] <= t - self.drift_s:
            self._interest.popleft()

    @property
    def sigma(self) -> float | None:
        """Per √second, once the estimate has seen at least one half-life of marks."""
        if self.variance is None or self.observed_s < self.half_life_s:
            return None
        return math.sqrt(self.variance)

    def figures(self) -> Figures:
        sigma = self.sigma
        drift = None
        if self.basis is not None and self._bases and self._bases[-1][0] - self._bases[0][0] >= self.drift_s:
            drift = self.basis - self._bases[0][1]
        interest, oi_change = (self._interest[-1][1] if self._interest else None), None
        if interest is not None and self._interest[-1][0] - self._interest[0][0] >= self.drift_s:
            first = self._interest[0][1]
            oi_change = interest / first - 1 if first > 0 else None  # (OI now − OI a drift window ago) / the latter
        return Figures(
            sigma=sigma,
            vol_annual=sigma * math.sqrt(SECONDS_A_YEAR) if sigma is not None else None,
            vol_interval=sigma * math.sqrt(self.funding_interval_s) if sigma is not None else None,
            funding_rate=self.rate,
            funding_annual=self.rate * SECONDS_A_YEAR / self.funding_interval_s if self.rate is not None else None,
            funding_z=z_score(self.rate, list(self.funding)[:-1] if self.funding else []),
            basis=self.basis,
            basis_drift=drift,
            vol_ratio=(math.sqrt(self.variance / self.slow_variance)
                       if sigma is not None and self.variance is not None and self.slow_variance else None),
            open_interest=interest,
            oi_change=oi_change,
        )


def z_score(value: float | None, history: list[float]) -> float | None:
    """(value − mean) / stdev of the history (population); None with fewer than 3 values or no spread."""
    if value is None or len(history) < 3:
        return None
    mean = sum(history) / len(history)
    stdev = math.sqrt(sum((x - mean) ** 2 for x in history) / len(history))
    return (value - mean) / stdev if stdev > 0 else None


# ------------------------------------------------------------------------------------ the gate's checks


def reach(sigma: float, seconds: float, multiple: float) -> float:
    """How far (a fraction of the price) `multiple` standard deviations of the mark move in `seconds`: m·σ·√t."""
    return multiple * sigma * math.sqrt(seconds)


def stop_inside_noise(entry: Decimal, stop: Decimal, sigma: float, horizon_s: float, k: float) -> Violation | None:
    """STOP_INSIDE_NOISE: the stop closer than k·σ·√T, the move noise alone makes over the holding horizon T:
    |E − S| / E < k·σ·√T."""
    return _within(Reason.STOP_INSIDE_NOISE, ("stop_distance", "noise", "k"), entry, stop, sigma, horizon_s, k)


def liq_within_sigma(entry: Decimal, liquidation: Decimal, sigma: float, interval_s: float,
                     n: float) -> Violation | None:  # fmt: skip
    """LIQ_WITHIN_SIGMA: the planning liquidation price within n standard deviations of the entry over one
    funding interval: |E − L| / E < n·σ·√I."""
    return _within(Reason.LIQ_WITHIN_SIGMA, ("liq_distance", "reach", "n"), entry, liquidation, sigma, interval_s, n)


def _within(code: Reason, names: tuple[str, str, str], entry: Decimal, price: Decimal, sigma: float,
            seconds: float, multiple: float) -> Violation | None:  # fmt: skip
    """The finding `code` when `price` is nearer the entry than `multiple` σ over `seconds`, else None."""
    distance, bound = float(abs(entry - price) / entry), reach(sigma, seconds, multiple)
    if distance >= bound:
        return None
    what, limit, letter = names
    return Violation(code, f"{what}={distance:.4%} {limit}={bound:.4%} "
                     f"({letter}={multiple:g} x sigma {reach(sigma, seconds, 1):.4%} over {seconds:g}s)")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Crowding:
    """The thresholds of `crowded` (signed toward a long; a short's are mirrored)."""

    funding_z: float = 2.5
    basis: float = 0.002  # 20 bps
    vol_ratio: float = 1.5


def crowded(figures: Figures, long: bool, limits: Crowding, already: bool) -> str | None:
    """Which figures crossed which thresholds, when the market is crowded in the position's direction (see
    the module's docstring), else None. `already`: crowded at the last look (the hysteresis)."""
    if figures.funding_z is None or figures.basis is None or figures.vol_ratio is None:
        return None
    sign = 1.0 if long else -1.0
    z, basis, ratio = sign * figures.funding_z, sign * figures.basis, figures.vol_ratio
    if already:  # crowded until all three are back below half their thresholds: the crowd has unwound
        bars = (limits.funding_z / 2, limits.basis / 2, 1 + (limits.vol_ratio - 1) / 2)
        if z < bars[0] and basis < bars[1] and ratio < bars[2]:
            return None
    else:
        bars = (limits.funding_z, limits.basis, limits.vol_ratio)
        if z < bars[0] or basis < bars[1] or ratio < bars[2]:
            return None
    side, beyond = ("long", ">=") if long else ("short", "<=")
    return (f"{side}: funding_z={figures.funding_z:+.2f} ({beyond} {sign * bars[0]:+.2f}) "
            f"basis={figures.basis:+.4%} ({beyond} {sign * bars[1]:+.4%}) vol_ratio={ratio:.2f} (>= {bars[2]:.2f})")
