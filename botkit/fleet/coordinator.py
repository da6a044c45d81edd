"""One bot's place in a fleet: its name's lease, its heartbeat, and the fleet's kill switch, over Redis.

- **The name's lease**: a bot name runs once across every machine. Start-up claims `botkit:lease:<name>`
  (SET NX with an expiry); every heartbeat renews it only if it still holds it. A bot that cannot reach
  Redis at start does not start: it could not know whether its name already runs.
- **The heartbeat** (every `heartbeat_seconds`) writes the bot's status to `botkit:bot:<name>` (state,
  equity, positions, budget use) for `botkit fleet status`, expiring with the lease, so a dead bot's entry
  goes with it.
- **The fleet's kill switch**: `botkit halt --fleet [--account A]` sets a persistent flag in `botkit:halt`
  (`*` for every bot, `account:<A>` for one account's) and publishes on `botkit:control`; every bot reads
  the flags on that message and on every heartbeat (a lost message costs at most one period), and a bot
  starting later reads them at start. A trip this bot's config marks fleet-wide (`fleet.propagate`) sets
  its account's flag.
- **Fail closed**: Redis unreachable for `grace_seconds`, or the name's lease held by another process,
  and the bot goes REDUCING (its kill switch's `fleet_unreachable`) until both are right again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from botkit.clock import Clock, SystemClock
from botkit.config import FleetConfig
from botkit.log import get_logger

log = get_logger("botkit.fleet")
PREFIX = "botkit:"
HALT_KEY = PREFIX + "halt"
BOTS_KEY = PREFIX + "bots"
CHANNEL = PREFIX + "control"
EVERY_BOT = "*"
IO_TIMEOUT_S = 1.0  # one Redis call's limit: an unreachable Redis shows within the grace, not after it

# Extend the lease while this process holds it; take it again if it is free (it expired while Redis was
# out of reach, or a restarted Redis lost it); never take it from another process.
RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
if not holder then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Published(Protocol):
    """What a heartbeat publishes besides the status (botkit.fleet.risk's SharedRisk)."""

    async def publish(self) -> None: ...

    async def run(self) -> None: ...


class FleetError(Exception):
    """The fleet cannot be joined (Redis unreachable at start, the name already running): one clear line."""


def connect(config: FleetConfig) -> aioredis.Redis:
    """A client of the fleet's Redis: `redis_url`'s server, or with `sentinels`, whichever server they name
    the primary, asked again on each new connection (so a failover is followed once the old connections
    fail: until then, the bot fails closed as for any outage)."""
    url = config.redis_url.get_secret_value()
    # no retries inside the client: the heartbeat is the retry, and each failure must reach the fail-closed
    # clock at once (redis-py's default Retry names ten, with backoff; a refused or frozen call came back
    # after one attempt when measured, but an outage hidden inside one call would never count toward the grace)
    options: dict[str, Any] = {"socket_timeout": IO_TIMEOUT_S, "socket_connect_timeout": IO_TIMEOUT_S,
                               "retry": Retry(NoBackoff(), 0)}  # fmt: skip
    if not config.sentinels:
        return aioredis.Redis.from_url(url, decode_responses=True, **options)
    if url.startswith("rediss://"):
        options["ssl"] = True
    sentinel = Sentinel([(h, int(p)) for h, _, p in (a.rpartition(":") for a in config.sentinels)],
                        sentinel_kwargs=dict(options), **options)  # fmt: skip
    parsed = parse_url(url)  # the user, password, db and TLS of the primary; its host and port are the Sentinels'
    options |= {k: parsed[k] for k in ("username", "password", "db") if parsed.get(k) is not None}
    return sentinel.master_for(config.sentinel_master, decode_responses=True, **options)


def where(config: FleetConfig) -> str:
    """The Redis URL without its password (or the Sentinels and the primary's name), for messages."""
    if config.sentinels:
        return f"the primary {config.sentinel_master!r} of Sentinels {','.join(config.sentinels)}"
    url = config.redis_url.get_secret_value()
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def halt_fields(account: str | None) -> str:
    return EVERY_BOT if account is None else f"account:{account}"


async def set_halt(client: aioredis.Redis, reason: str, by: str, account: str | None = None) -> int | None:
    """Halt every bot (or one account's): a persistent flag, then a message so running bots act at once.
    Returns how many replicas hold the flag (a failover to one of them keeps it), None with no replica."""
    flag = json.dumps({"reason": reason, "by": by, "at_ms": int(await redis_now_ms(client))})
    await client.hset(HALT_KEY, halt_fields(account), flag)
    await client.publish(CHANNEL, "halt")
    return await replicated(client)


async def replicated(client: aioredis.Redis) -> int | None:
    """Wait (up to 2 s, in calls of half a second: within one call's time limit) until every replica has
    this connection's writes: how many have, None with no replica online. (A replica's first
    acknowledgement after it connected can take a second.)"""
    info = await client.info("replication")
    replicas = sum(
        1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
    )
    if replicas == 0:  # (one still taking its first copy cannot acknowledge yet)
        return None
    acknowledged = 0
    for _ in range(4):
        acknowledged = int(await client.wait(replicas, 500))
        if acknowledged >= replicas:
            break
    return acknowledged


async def clear_halt(client: aioredis.Redis, account: str | None = None) -> int:
    """Lift the fleet's halt: one account's flag, or (no account) every flag. The number lifted."""
    if account is not None:
        lifted = int(await client.hdel(HALT_KEY, halt_fields(account)))
    else:
        lifted = int(await client.delete(HALT_KEY))
    await client.publish(CHANNEL, "resume")
    return lifted


async def redis_now_ms(client: aioredis.Redis) -> float:
    seconds, micros = await client.time()
    return seconds * 1000 + micros / 1000


class Fleet:
    """This bot's lease, heartbeat and view of the fleet's halt flags (see the module's docstring)."""

    def __init__(self, config: FleetConfig, *, clock: Clock | None = None,
                 on_halt: Callable[[str | None], Any], on_reachable: Callable[[bool, str], Any],
                 status: Callable[[], dict[str, Any]]) -> None:  # fmt: skip
        """`on_halt(reason)`: the fleet's halt for this bot now (None: none); `on_reachable(ok, why)`: Redis
        and the lease are right (True) or have not been for the grace period (False); `status()`: what the
        heartbeat publishes."""
        self.config, self.clock = config, clock or SystemClock()
        self.on_halt, self.on_reachable, self.status = on_halt, on_reachable, status
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.client = connect(config)
        self.lease_key = f"{PREFIX}lease:{config.name}"
        self.status_key = f"{PREFIX}bot:{config.name}"
        self.halted: str | None = None  # the halt in force for this bot, as last read
        self.reachable = True
        self._last_ok = self.clock.monotonic()
        self._problem = ""
        self._renew = self.client.register_script(RENEW)
        self.risk: Published | None = None  # this bot's share of its account's limits, published each beat
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------------------ start, end

    async def start(self) -> None:
        """Claim the name and read the halt flags before anything trades; FleetError if either fails."""
        lease_ms = int(self.config.lease_seconds * 1000)
        try:
            claimed = await self.client.set(self.lease_key, self.instance, nx=True, px=lease_ms)
            if not claimed:
                holder = await self._holder()
                raise FleetError(f"fleet: the bot name {self.config.name!r} already runs ({holder}); one process "
                                 f"per name (its lease frees {self.config.lease_seconds} s after it stops)")
        except (RedisError, OSError) as exc:
            raise FleetError(f"fleet: Redis at {where(self.config)} is unreachable ({why(exc)}): cannot claim "
                             f"the bot name {self.config.name!r}") from None  # fmt: skip
        self._last_ok = self.clock.monotonic()
        await self.beat()  # the halt flags read, and the bot listed in `botkit fleet status`, from the start

    async def close(self) -> None:
        """Give the name back and take the status down (best effort: the lease expires anyway)."""
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(2 * IO_TIMEOUT_S):
                await self.client.eval(RELEASE, 1, self.lease_key, self.instance)
                await self.client.delete(self.status_key)
                await self.client.zrem(BOTS_KEY, self.config.name)
        with contextlib.suppress(Exception):
            await self.client.aclose()

    # ------------------------------------------------------------------------------------ run

    async def run(self) -> None:
        """The heartbeat and the control channel's listener, until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._listen(), name="fleet-listen")
            group.create_task(self._watch(), name="fleet-watch")
            if self.risk is not None:
                group.create_task(self.risk.run(), name="fleet-risk")
            while True:
                await self.beat()
                still_cancelled()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(float(self.config.heartbeat_seconds)):
                        await self._wake.wait()
                self._wake.clear()

    async def beat(self) -> None:
        """One heartbeat: renew the lease, publish the status, read the halt flags; note what failed."""
        lease_ms = int(self.config.lease_seconds * 1000)
        try:
            held = await self._renew(keys=[self.lease_key], args=[self.instance, lease_ms])
            if not held:
                self._problem = (f"the lease of the bot name {self.config.name!r} is held by another process "
                                 f"({await self._holder()})")  # fmt: skip
                self._failed()
                return
            await self._read_flags()  # first: the status published says whether the fleet's halt holds it
            status: dict[str | bytes, str] = {k: json.dumps(v, default=str) for k, v in self.status().items()}
            status |= {"instance": self.instance, "account": self.config.account, "ip_group": self.config.ip_group,
                       "heartbeat_ms": str(int(await redis_now_ms(self.client)))}  # fmt: skip
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(self.status_key, mapping=status)  # type: ignore[arg-type]
                pipe.pexpire(self.status_key, lease_ms)
                pipe.zadd(BOTS_KEY, {self.config.name: int(status["heartbeat_ms"])})
                await pipe.execute()
            if self.risk is not None:
                await self.risk.publish()
        except Exception as exc:  # whatever the client raises (a failover raises more than RedisError): fail closed
            self._problem = f"Redis at {where(self.config)} unreachable: {why(exc)}"
            self._failed()
            return
        self._last_ok, self._problem = self.clock.monotonic(), ""
        if not self.reachable:
            self.reachable = True
            log.info("fleet.back", redis=where(self.config))
            self.on_reachable(True, "Redis and the lease are right again")

    async def _watch(self) -> None:
        """Fail closed on time, not only when a call fails: a heartbeat still waiting on a call (a client
        reconnecting through a failover, say) has not confirmed anything either."""
        while True:
            await self.clock.sleep(float(self.config.heartbeat_seconds))
            if self.reachable and self.clock.monotonic() - self._last_ok >= float(self.config.grace_seconds):
                self._problem = self._problem or f"Redis at {where(self.config)} has not answered a heartbeat"
                self._failed()

    def _failed(self) -> None:
        """Fail closed once the trouble has lasted the grace period (one blip is not an outage)."""
        down_s = self.clock.monotonic() - self._last_ok
        if self.reachable and down_s >= float(self.config.grace_seconds):
            self.reachable = False
            log.error("fleet.unreachable", problem=self._problem, for_s=round(down_s, 3))
            self.on_reachable(False, f"{self._problem} for {down_s:.1f}s")

    async def _holder(self) -> str:
        holder = await self.client.get(self.lease_key)
        return holder.decode() if isinstance(holder, bytes) else str(holder)

    async def _read_flags(self) -> None:
        every, mine = await self.client.hmget(HALT_KEY, [EVERY_BOT, halt_fields(self.config.account)])
        flag = every or mine
        reason = None
        if flag is not None:
            data = json.loads(flag)
            scope = "every bot" if every else f"account {self.config.account}"
            reason = f"{data.get('reason')} (by {data.get('by')}, {scope})"
        if reason is not None or self.halted is not None:  # again each time: a local resume must not lift it
            self.halted = reason
            self.on_halt(reason)

    async def _listen(self) -> None:
        """Wake the heartbeat at once on a control message; reconnect when the connection drops."""
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    while True:
                        if await pubsub.get_message(ignore_subscribe_messages=True, timeout=IO_TIMEOUT_S):
                            self._wake.set()
                        still_cancelled()
            except Exception:  # as in beat: whatever the client raised, reconnect after a heartbeat
                still_cancelled()
                await self.clock.sleep(float(self.config.heartbeat_seconds))

    async def halt_account(self, reason: str) -> None:
        """A fleet-wide trip of this bot: halt every bot of its account."""
        try:
            await set_halt(self.client, reason, self.config.name, self.config.account)
        except (RedisError, OSError, TimeoutError) as exc:
            log.error("fleet.halt_failed", reason=reason, error=why(exc))


def still_cancelled() -> None:
    """Re-raise a cancellation the Redis client turned into one of its errors (it does, when a read is cut
    off) or swallowed whole (it does, while reconnecting: the call answers as if nothing happened): lost,
    it would keep a cancelled task looping, or waiting, for ever. Called after every Redis call."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
