"""SIGKILL at a random moment, then a restart: `botkit run` as a real process trades on the emulator, is
killed with no chance to clean up, and is started again on the same journal. The invariants of the chaos
suite must hold over both sessions, the restart must end cleanly with no order left open, and the journal's
fills must add up to the exchange's position. With the journal's write-ahead taken out (rows written every
30 s, nobody waiting for them), the same run must be caught losing track of orders.
"""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

import aiohttp
import pytest

from botkit.config import load_config
from botkit.runtime.journal import read_events
from botkit.sim.server import EmulatorSettings, running_emulator
from tests.chaos.harness import (
    SEEDS,
    Run,
    Sample,
    Scenario,
    admin_state,
    journal_adds_up_to_the_position,
    monitor,
    violations,
)
from tests.chaos.traders import Churn
from tests.integration.test_runtime_process import start_bot, write_config
from tests.support import background

SCENARIO = Scenario("sigkill-restart", "journal write-ahead, restart reconciliation", lambda: Churn(Churn.Params()))


def program(patch: str | None) -> tuple[str, ...]:
    return ("-m", "tests.chaos.patched_botkit", patch) if patch else ("-m", "botkit.cli")


async def kill_and_restart(tmp_path: Path, seed: int, patch: str | None = None) -> tuple[Run, list[str]]:
    """Both sessions; returns the run and the restart-specific problems found."""
    rng = random.Random(seed)
    problems: list[str] = []
    samples: list[Sample] = []
    async with running_emulator(EmulatorSettings(seed=seed, speed=20.0, scenario="calm")) as emu:
        config = write_config(tmp_path, emu, strategy="tests.chaos.traders:Churn", params="")
        async with background(monitor(emu.url, samples)):
            first = await start_bot(tmp_path, config, 120, "first", program(patch))
            while not (emu.engine.accounts and len(next(iter(emu.engine.accounts.values())).orders) >= 4):
                assert first.returncode is None, (tmp_path / "first.out").read_text()[-2000:]
                await asyncio.sleep(0.02)
            moment = rng.uniform(0.0, 2.0)
            await asyncio.sleep(moment)
            first.kill()  # SIGKILL: no clean-up at all
            assert await first.wait() == -signal.SIGKILL
            second = await start_bot(tmp_path, config, 3, "second", program(patch))
            code = await asyncio.wait_for(second.wait(), 60)
        async with aiohttp.ClientSession() as http:
            exchange = await admin_state(emu.url, http)
    if code != 0:
        problems.append(f"the restarted bot exited with {code}")
    for name in ("first", "second"):
        if "Traceback" in (tmp_path / f"{name}.out").read_text():
            problems.append(f"a traceback in the {name} session's output")
    [account] = exchange["accounts"]
    if account["open_orders"]:
        problems.append(f"{len(account['open_orders'])} orders left open after the restarted bot stopped")
    events = list(read_events(tmp_path / "journal.sqlite"))
    restarted = [e.data for e in events if e.kind == "reconcile" and e.data.get("at") == "start"][1:]
    if any(r["unknown"] for r in restarted):  # it must adopt its own orders and explain the position
        problems.append(f"the restarted bot found exposure it could not explain: {restarted[0]['unknown']}")
    print(f"seed {seed}: killed {moment:.2f} s after the fourth order")
    run = Run(SCENARIO, load_config(config), [], events, exchange, samples, samples[-1].wall_ms)
    return run, problems + journal_adds_up_to_the_position(run)


@pytest.mark.parametrize("seed", SEEDS)
async def test_sigkill_at_a_random_moment_then_restart(tmp_path, seed):
    run, problems = await kill_and_restart(tmp_path, seed)
    assert violations(run) + problems == []
    assert len({e.session for e in run.kinds("session.started")}) == 2


async def test_without_the_write_ahead_a_kill_loses_track_of_orders(tmp_path):
    run, problems = await kill_and_restart(tmp_path, SEEDS[0], patch="buffered-journal")
    found = violations(run) + problems
    print("sigkill-restart with a buffered journal:", *found, sep="\n  ")
    assert found
