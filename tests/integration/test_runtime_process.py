"""`botkit run` as a separate process against an emulator in this one: stopped with SIGTERM, it cancels its
orders and exits 0; the offline demo runs. (Killed with SIGKILL and restarted: tests/chaos/test_kill_restart.py,
at a random moment, with the write-ahead switched off too.)"""

import asyncio
import signal
import sys

from botkit.runtime.journal import read_events
from botkit.sim.server import running_emulator
from tests.integration.conftest import BTC
from tests.integration.test_runtime import live_market, wait_for
from tests.support import ROOT

GRID = "levels = 3\nrefresh_seconds = 0.2"


def write_config(tmp_path, emu, strategy: str = "grid_maker", params: str = GRID):
    """A demo config on the emulator with fast retries and refreshes; `params`: the [params] table's lines."""
    path = tmp_path / "bot.toml"
    path.write_text(f"""
mode = "demo"
strategy = "{strategy}"
symbols = ["{BTC}"]

[params]
{params}

[exchange]
api_key = "{emu.api_key}"
api_secret = "{emu.api_secret}"
emulator_url = "{emu.url}"

[venue]
retry_base_s = 0.05
retry_cap_s = 0.5
unknown_settle_s = 0.1
rate_limits = {{ weight_1m = 24000 }}  # reads ten times as often as a real bot's, see FAST_VENUE

[runtime]
poll_seconds = 0.2
account_seconds = 0.5
reconcile_seconds = 1

[journal]
path = "{tmp_path / "journal.sqlite"}"
""")
    return path


async def start_bot(tmp_path, config_file, duration: float, name: str,
                    program: tuple[str, ...] = ("-m", "botkit.cli")) -> asyncio.subprocess.Process:  # fmt: skip
    """`botkit run` as a process (or `program`, taking botkit's arguments), its output in `<name>.out`."""
    out = (tmp_path / f"{name}.out").open("w")
    return await asyncio.create_subprocess_exec(
        sys.executable, *program, "run", "--config", str(config_file), "--duration", str(duration),
        cwd=ROOT, stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


def account_of(emu):
    [account] = emu.engine.accounts.values()
    return account


async def test_sigterm_cancels_open_orders_and_exits_cleanly(tmp_path):
    async with running_emulator(live_market(scenario="calm")) as emu:
        config_file = write_config(tmp_path, emu)
        account = account_of(emu)
        bot = await start_bot(tmp_path, config_file, 120, "bot")
        await wait_for(lambda: len(account.open_orders()) >= 3, 60)
        bot.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(bot.wait(), 60) == 0, (tmp_path / "bot.out").read_text()[-3000:]
        assert account.open_orders() == []
    journal = list(read_events(tmp_path / "journal.sqlite"))
    stopped = [e.data for e in journal if e.kind == "session.stopped"]
    assert stopped[-1]["reason"] == "signal SIGTERM" and stopped[-1]["crashed"] is None


async def test_the_offline_demo_runs_and_ends_with_a_summary(tmp_path):
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "botkit.cli", "run", "--duration", "4", cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(demo.communicate(), 60)
    text = out.decode()
    assert demo.returncode == 0, text
    assert "botkit demo: SmaCross on the in-process emulator" in text and "botkit run: summary" in text
    assert (tmp_path / "botkit-demo.sqlite").exists()
    kinds = {e.kind for e in read_events(tmp_path / "botkit-demo.sqlite")}
    assert {"session.started", "reconcile", "session.stopped"} <= kinds
