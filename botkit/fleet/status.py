"""What `botkit fleet status` shows, read from Redis: every live bot's heartbeat, the halts in force and
what each account's bots commit together."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from redis.exceptions import RedisError

from botkit.config import FleetConfig
from botkit.fleet.coordinator import BOTS_KEY, HALT_KEY, PREFIX, connect, redis_now_ms, where, why
from botkit.fleet.risk import account_totals


async def read_fleet(config: FleetConfig) -> dict[str, Any]:
    """Every bot with a heartbeat in the last lease period, the halts in force and what each account's bots
    commit together (`botkit fleet status`).
    OSError with one line if Redis cannot be read."""
    client = connect(config)
    try:
        now = await redis_now_ms(client)
        names = await client.zrangebyscore(BOTS_KEY, now - float(config.lease_seconds) * 1000, "+inf")
        bots = []
        for name in map(str, names):  # (the client decodes: these are str)
            fields = await client.hgetall(f"{PREFIX}bot:{name}")
            bot: dict[str, Any] = {"name": name}
            for key, value in fields.items():
                with contextlib.suppress(ValueError):
                    value = json.loads(value)
                bot[str(key)] = value
            heartbeat = bot.get("heartbeat_ms")
            bot["age_s"] = (now - float(heartbeat)) / 1000 if heartbeat is not None else None
            bots.append(bot)
        halts = {scope: json.loads(flag) for scope, flag in (await client.hgetall(HALT_KEY)).items()}
        accounts = {}
        for account in sorted({str(b.get("account")) for b in bots} | {config.account}):
            accounts[account] = await account_totals(client, account, now)
    except (RedisError, OSError) as exc:
        raise OSError(f"fleet: Redis at {where(config)} is unreachable ({why(exc)})") from None
    finally:
        await client.aclose()
    return {"bots": bots, "halts": halts, "accounts": accounts}
