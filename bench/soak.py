"""Soak: a market maker (strategies/grid_maker.py) runs for a day of simulated trading on the emulator,
whose clock runs `--speed` times faster than the wall clock (several funding settlements, thousands of
orders). The emulator runs in its own process, so what is measured here is the bot's alone:

- RSS after warm-up (the first fifth of the run) and at the end, and the growth between them;
- event-loop lag (how late a 20 ms timer fires) p50 / p99 / max;
- the journal's size, rows and growth per hour;
- the chaos suite's invariants over the whole run (tests/chaos/harness.py): no duplicate order, no order
  on the exchange unknown to the journal, sizing recomputed independently, no new risk unless ACTIVE,
  every trip journalled with its trigger, no ban, no liquidation, no crash; and the journal's fills add up
  to the exchange's position.

    python bench/soak.py               # 48 simulated hours at 400x: about 7.5 minutes
    python bench/soak.py --smoke       # 20 simulated minutes: keeps it working in CI
Exit code 1 if an invariant broke, or (full run) RSS grew more than 10 % after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import secrets
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from _stats import p50_p99

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the invariants live with the chaos suite

from botkit.config import BotConfig  # noqa: E402
from botkit.log import configure_logging  # noqa: E402
from botkit.runtime.bot import Bot  # noqa: E402
from botkit.runtime.journal import read_events  # noqa: E402
from botkit.runtime.strategy import make_strategy  # noqa: E402
from strategies.grid_maker import GridMaker  # noqa: E402
from tests.chaos.harness import (  # noqa: E402
    Run,
    Scenario,
    admin_state,
    journal_adds_up_to_the_position,
    sample_of,
    violations,
)

SYMBOL = "BTC/USDT:USDT"
FUNDING_HOURS = 8


def rss_mb() -> float:
    """Resident memory now (Linux /proc), else the peak so far."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def start_emulator(key: str, secret: str, *options: str) -> tuple[asyncio.subprocess.Process, str]:
    """`botkit emulate` in its own process (scenario calm, a free port, `options` added); (process, URL)."""
    emulator = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "botkit.cli", "emulate", "--port", "0", "--scenario", "calm", "--api-key", key,
        "--api-secret", secret, *options, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert emulator.stdout is not None
    first = (await asyncio.wait_for(emulator.stdout.readline(), 60)).decode()
    url = first.split(" on ", 1)[1].split()[0]  # "botkit emulator on http://127.0.0.1:PORT (scenario ...)"
    return emulator, url


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
    await process.wait()


async def sample_forever(rss: list[tuple[float, float]], lag: list[float], started: float) -> None:
    tick = 0.02
    next_rss = 0.0
    while True:
        before = time.perf_counter()
        await asyncio.sleep(tick)
        lag.append(time.perf_counter() - before - tick)
        now = time.perf_counter() - started
        if now >= next_rss:
            rss.append((now, rss_mb()))
            next_rss = now + 1.0


async def soak(hours: float, speed: float, smoke: bool) -> int:
    configure_logging("error")
    key, secret = secrets.token_hex(16), secrets.token_hex(32)
    emulator, url = await start_emulator(key, secret, "--speed", str(speed), "--step-ms", "1000",
                                         "--funding-interval", str(FUNDING_HOURS * 3600))  # fmt: skip
    seconds = hours * 3600 / speed
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.push_async_callback(stop, emulator)  # however the run ends
        tmp = cleanup.enter_context(tempfile.TemporaryDirectory())
        journal = Path(tmp) / "soak.sqlite"
        config = BotConfig(
            mode="demo", symbols=[SYMBOL], exchange={"api_key": key, "api_secret": secret, "emulator_url": url},
            journal={"path": journal},
            limits={"orders_per_10s": 150, "orders_per_minute": 1100, "max_open_orders": 50},
            killswitch={"max_cancels_per_minute": 5000, "max_cancel_to_fill": 10_000, "auto_resume": True,
                        "resume_after_seconds": 5},
            params={"levels": 3, "refresh_seconds": 0.2, "spacing_bps": 5},
        )  # fmt: skip
        strategy = make_strategy(GridMaker, config.params)
        bot = Bot(config, strategy)
        rss: list[tuple[float, float]] = []
        lag: list[float] = []
        started = time.perf_counter()
        sampler = asyncio.create_task(sample_forever(rss, lag, started))
        try:
            summary = await bot.run(duration=seconds)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        wall = time.perf_counter() - started
        cached = len(bot.venue.exchange.orders or [])
        async with aiohttp.ClientSession() as http:
            exchange = await admin_state(url, http)

        events = list(read_events(journal))
        market = exchange["market"]
        sample = sample_of(exchange)
        crashes = [f"crash: {summary.crashed}"] if summary.crashed else []
        run = Run(Scenario("soak", "all", lambda: strategy), config, crashes, events, exchange, [sample],
                  sample.wall_ms)  # fmt: skip
        broken = violations(run) + journal_adds_up_to_the_position(run)
        journal_bytes = sum(p.stat().st_size for p in Path(tmp).glob("soak.sqlite*"))

    warm = next((mb for at, mb in rss if at >= wall / 5), rss[0][1])
    end = rss[-1][1]
    growth = (end - warm) / warm * 100
    lag_p50, lag_p99 = p50_p99(lag)
    fundings = [e for e in events if e.kind == "funding"]
    trips = [f"{e.data['trigger']} ({e.data['figures']})" for e in events
             if e.kind == "killswitch" and e.data["event"] == "tripped"]  # fmt: skip
    simulated_h = exchange["clock"]["elapsed_s"] / 3600
    s = summary.stats
    print(f"soak: {simulated_h:.1f} simulated hours ({hours:g} asked at {speed:g}x) in {wall:.0f} s wall, "
          f"GridMaker on {SYMBOL}")  # fmt: skip
    print(f"  market: {len(exchange['funding_events'])} funding settlements on the exchange "
          f"({len(fundings)} payments journalled), mark {market['BTCUSDT']['mark']}")  # fmt: skip
    print(f"  orders: {s.sent} sent, {s.cancels} cancelled, {s.fills} fills, {s.venue_rejected} refused by the venue, "
          f"{sum(s.rejected.values())} intents refused by the gate")  # fmt: skip
    print(f"  trips: {'; '.join(trips[:5]) or 'none'}{f' and {len(trips) - 5} more' if len(trips) > 5 else ''}")
    weight = next(b for b in bot.venue.preset.budgets if b.counts == "weight")
    print(f"  request weight: {bot.venue.limiter.granted['weight'] / wall * weight.window_s:.0f} per "
          f"{weight.window_s:g} s on average (the exchange allows {weight.limit}); "
          f"429 answers {bot.venue.limiter.rate_limited}")  # fmt: skip
    print(f"  equity: {summary.equity_start} -> {summary.equity_end}")
    print(f"  RSS: {rss[0][1]:.1f} MB at start, {warm:.1f} MB after warm-up, {end:.1f} MB at the end "
          f"({growth:+.1f} % after warm-up; target <= 10 %)")  # fmt: skip
    fifths = [next((mb for at, mb in rss if at >= wall * k / 5), end) for k in range(1, 5)] + [end]
    print(
        "  RSS at each fifth of the run: " + ", ".join(f"{mb:.1f}" for mb in fifths) + " MB; ccxt's order "
        f"cache holds {cached} orders (it keeps at most {bot.venue.exchange.options.get('ordersLimit')})"
    )
    print(f"  event-loop lag: p50 {lag_p50 * 1000:.2f} ms, p99 {lag_p99 * 1000:.2f} ms, max {max(lag) * 1000:.1f} ms "
          f"over {len(lag)} timer ticks")  # fmt: skip
    mb = journal_bytes / 1e6
    print(f"  journal: {mb:.1f} MB, {len(events)} rows; growth {mb / simulated_h:.2f} MB per simulated hour, "
          f"{mb / (wall / 3600):.0f} MB per wall hour (the market runs {speed:g}x, the bot's timers in real "
          "time; the file is rotated past journal.rotate_mb)")  # fmt: skip
    print("  invariants: " + ("all held" if not broken else f"{len(broken)} broken"))
    for problem in broken[:20]:
        print(f"    {problem}")
    failed = bool(broken) or (not smoke and growth > 10)
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=48.0, help="simulated hours to trade")
    parser.add_argument("--speed", type=float, default=400.0, help="simulated seconds per wall second")
    parser.add_argument("--smoke", action="store_true", help="20 simulated minutes (CI)")
    args = parser.parse_args()
    hours = 1 / 3 if args.smoke else args.hours
    sys.exit(asyncio.run(soak(hours, args.speed, args.smoke)))


if __name__ == "__main__":
    main()
