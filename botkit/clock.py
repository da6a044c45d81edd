"""Time as a dependency: the one source of time. Everything that reads the time or sleeps (guards, venue,
runtime, journal timestamps, `ctx.now`) does so through one of these, so tests can run minutes of
rate-limit windows and backoff in milliseconds without sleeping for real, and a replay can run on
history's time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for ages, windows and deadlines)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the Unix epoch (for timestamps a person or an exchange reads)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Real time running `speed` times faster: a 60-second window passes in 60/speed real seconds.

    Used where a real network is involved (an emulator whose rate-limit windows run at the same speed),
    so the whole stack sees consistent, accelerated time.
    """

    def __init__(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._origin = time.monotonic()
        self._wall_origin = time.time()

    def monotonic(self) -> float:
        return self._origin + (time.monotonic() - self._origin) * self.speed

    def time(self) -> float:
        return self._wall_origin + (time.monotonic() - self._origin) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)


class ReplayClock:
    """History's time, moved by a backtest's or a replay's driver (`set`): monotonic time is the replayed
    time, wall time that plus `wall_offset`, and a sleeper wakes when the replay passes its deadline."""

    def __init__(self, start: float, wall_offset: float = 0.0) -> None:
        self._now = start
        self._wall_offset = wall_offset
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    def set(self, now: float) -> None:
        """Move to `now` (never back); sleepers due by then are woken (they run at the next turn)."""
        self._now = max(self._now, now)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            future = heapq.heappop(self._sleepers)[2]
            if not future.done():
                future.set_result(None)


class ManualClock(ReplayClock):
    """A clock that moves only when a test calls `advance`; sleepers wake in time order, each running before
    the next is woken."""

    def __init__(self, start: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        super().__init__(start, wall_offset=wall - start)  # wall time moves with the manual clock

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its own moment and letting it run before the next."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, when)
            if not future.done():
                future.set_result(None)
            await settle()
        self._now = target
        await settle()


async def sleep_until_set(clock: Clock, seconds: float, event: asyncio.Event) -> None:
    """Sleep on the clock for `seconds`, or less: wake as soon as `event` is set."""
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waker = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        waker.cancel()


async def settle(rounds: int = 20) -> None:
    """Let every ready task run until it blocks again (a few event-loop turns)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
