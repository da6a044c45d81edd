"""`botkit run` as a separate process against an emulator in this one: killed with SIGKILL mid-run and
restarted, nothing is unaccounted for; stopped with SIGTERM, it cancels its orders and exits 0."""

import asyncio
import signal
import sys
from decimal import Decimal as D

from botkit.runtime.journal import read_events
from botkit.runtime.orders import JournalHistory
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


async def test_sigkill_mid_run_then_restart_leaves_nothing_unaccounted_for(tmp_path):
    async with running_emulator(live_market(scenario="calm")) as emu:
        config_file = write_config(tmp_path, emu)
        account = account_of(emu)
        first = await start_bot(tmp_path, config_file, 120, "first")
        await wait_for(lambda: len(account.orders) >= 6 and account.open_orders(), 60)
        first.kill()  # SIGKILL: no clean-up at all
        assert await first.wait() == -signal.SIGKILL
        left_open = {o.client_id for o in account.open_orders()}
        assert left_open  # the killed bot left working orders behind

        second = await start_bot(tmp_path, config_file, 3, "second")
        assert await asyncio.wait_for(second.wait(), 60) == 0, (tmp_path / "second.out").read_text()[-3000:]

        journal = list(read_events(tmp_path / "journal.sqlite"))
        sessions = [e.session for e in journal if e.kind == "session.started"]
        assert len(sessions) == 2
        [reconcile] = [e.data for e in journal if e.kind == "reconcile" and e.session == sessions[1]]
        assert reconcile["unknown"] == [] and reconcile["action"] == "none"
        still_open = {o.client_id for o in account.open_orders()}
        assert still_open == set()  # the restarted bot adopted the orders, then cancelled them on exit
        on_exchange = [o.client_id for o in account.orders.values()]
        assert len(on_exchange) == len(set(on_exchange))  # no duplicate order
        sent = {e.client_id for e in journal if e.kind == "order.sending"}
        assert set(on_exchange) <= sent  # no order on the exchange unknown to the journal
        position = account.positions.get("BTCUSDT")
        held = position.qty if position is not None else D(0)
        assert JournalHistory(journal).positions().get(BTC, D(0)) == held  # the position is all ours


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
