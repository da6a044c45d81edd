"""Side by side with NautilusTrader: the pre-trade check of an accepted market order, botkit's `Gate.check`
(every check on, as in bench/gate.py) against NautilusTrader's `RiskEngine.execute(SubmitOrder)` for a
BTCUSDT perpetual with a cash account and with a margin account (its check runs as far as handing the
order to a mock execution client). Four alternating rounds; the ratios are taken within each round.

NautilusTrader is installed by this script into a virtual environment of its own (`bench/.nautilus/`,
not this project's), once; where it cannot be installed (no network, no wheel for this platform) the
comparison is skipped with a message. `--smoke` runs botkit's side only and installs nothing.

    python bench/nautilus.py              # 4 rounds of 20,000 calls each side
    python bench/nautilus.py --smoke      # botkit's side, a few hundred calls
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import venv
from pathlib import Path

from _stats import measure
from gate import CASES, CONFIG

from botkit.guards.gate import Gate

ANCHOR = "nautilus_trader==1.221.0"  # the release the published figures were measured with
HOME = Path(__file__).resolve().parent / ".nautilus"

# Runs inside NautilusTrader's environment: its own test kit builds the engines the way its tests do.
CHILD = r'''
import json, statistics, sys, time
from collections import Counter

from nautilus_trader.common.component import MessageBus, TestClock
from nautilus_trader.config import ExecEngineConfig, RiskEngineConfig
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.execution.engine import ExecutionEngine
from nautilus_trader.execution.messages import SubmitOrder
from nautilus_trader.model.currencies import USDT
from nautilus_trader.model.enums import AccountType, OrderSide
from nautilus_trader.model.identifiers import AccountId, ClientId
from nautilus_trader.model.objects import Quantity
from nautilus_trader.portfolio.portfolio import Portfolio
from nautilus_trader.risk.engine import RiskEngine
from nautilus_trader.test_kit.mocks.exec_clients import MockExecutionClient
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.test_kit.stubs.component import TestComponentStubs
from nautilus_trader.test_kit.stubs.data import TestDataStubs
from nautilus_trader.test_kit.stubs.events import TestEventStubs
from nautilus_trader.test_kit.stubs.identifiers import TestIdStubs
from nautilus_trader.trading.strategy import Strategy


def run(account_type, calls):
    clock, trader_id = TestClock(), TestIdStubs.trader_id()
    msgbus, cache = MessageBus(trader_id=trader_id, clock=clock), TestComponentStubs.cache()
    portfolio = Portfolio(msgbus=msgbus, cache=cache, clock=clock)
    executor = ExecutionEngine(msgbus=msgbus, cache=cache, clock=clock, config=ExecEngineConfig())
    # its order-rate throttle high, as botkit's is in bench/gate.py: the check itself is timed
    risk = RiskEngine(portfolio=portfolio, msgbus=msgbus, cache=cache, clock=clock,
                      config=RiskEngineConfig(max_order_submit_rate="100000000/00:00:01"))
    instrument = TestInstrumentProvider.btcusdt_perp_binance()
    venue = instrument.id.venue
    client = MockExecutionClient(client_id=ClientId(venue.value), venue=venue, account_type=account_type,
                                 base_currency=USDT, msgbus=msgbus, cache=cache, clock=clock)
    account_id = AccountId(f"{venue.value}-001")
    cash = account_type == AccountType.CASH
    state = (TestEventStubs.cash_account_state(account_id=account_id, base_currency=USDT) if cash
             else TestEventStubs.margin_account_state(account_id=account_id))
    portfolio.update_account(state)
    executor.register_client(client)
    cache.add_instrument(instrument)
    cache.add_quote_tick(TestDataStubs.quote_tick(instrument=instrument, bid_price=50000.0, ask_price=50000.1))
    strategy = Strategy()
    strategy.register(trader_id=trader_id, portfolio=portfolio, msgbus=msgbus, cache=cache, clock=clock)
    qty = Quantity.from_str("0.050")
    commands = [SubmitOrder(trader_id=trader_id, strategy_id=strategy.id, command_id=UUID4(), ts_init=0,
                            order=strategy.order_factory.market(instrument.id, OrderSide.BUY, qty))
                for _ in range(calls + 200)]
    for command in commands[:200]:
        risk.execute(command)
    samples = []
    for command in commands[200:]:
        start = time.perf_counter_ns()
        risk.execute(command)
        samples.append(time.perf_counter_ns() - start)
    statuses = Counter(o.status_string() for o in cache.orders())
    assert set(statuses) == {"INITIALIZED"}, f"not every order passed its risk engine: {dict(statuses)}"
    samples.sort()
    return {"p50_us": statistics.median(samples) / 1000, "p99_us": samples[int(0.99 * (len(samples) - 1))] / 1000}


calls = int(sys.argv[1])
print(json.dumps({"cash": run(AccountType.CASH, calls), "margin": run(AccountType.MARGIN, calls)}))
'''


def anchor_python(spec: str) -> Path | None:
    """NautilusTrader's interpreter, installing it first if need be; None (and why, printed) if it cannot be."""
    python = HOME / "bin" / "python"
    stamp = HOME / "installed.txt"
    if python.exists() and stamp.exists() and stamp.read_text() == spec:
        return python
    print(f"installing {spec} into {HOME} (once) ...", flush=True)
    try:
        venv.create(HOME, with_pip=True, clear=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", spec], check=True, timeout=900,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        print(f"skipped: {spec} cannot be installed here: {detail.strip().splitlines()[-1] if detail else exc}")
        return None
    stamp.write_text(spec)
    return python


def nautilus_round(python: Path, calls: int) -> dict:
    script = HOME / "check.py"
    script.write_text(CHILD)
    done = subprocess.run([str(python), str(script), str(calls)], check=True, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def botkit_round(calls: int) -> tuple[float, float]:
    intent, snap = CASES["market long, accepted"]
    gate = Gate(CONFIG)
    assert gate.check(intent, snap).accepted
    return measure(lambda: gate.check(intent, snap), calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="botkit's side only; installs nothing")
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--anchor", default=ANCHOR, help="the NautilusTrader release to install")
    args = parser.parse_args()
    if args.smoke:
        p50, p99 = botkit_round(300)
        print(f"smoke: botkit Gate.check p50 {p50:.1f} µs, p99 {p99:.1f} µs; NautilusTrader not run (no --smoke)")
        return
    python = anchor_python(args.anchor)
    rows = []
    for n in range(args.rounds):
        bk = botkit_round(args.calls)
        nt = nautilus_round(python, args.calls) if python is not None else None
        rows.append((bk, nt))
        line = f"round {n + 1}: botkit p50 {bk[0]:.1f} µs p99 {bk[1]:.1f}"
        if nt is not None:
            cash, margin = nt["cash"], nt["margin"]
            line += (f"; NautilusTrader cash p50 {cash['p50_us']:.1f} p99 {cash['p99_us']:.1f}, margin p50 "
                     f"{margin['p50_us']:.1f} p99 {margin['p99_us']:.1f}; botkit/cash {bk[0] / cash['p50_us']:.2f}×, "
                     f"botkit/margin {bk[0] / margin['p50_us']:.2f}×")  # fmt: skip
        print(line, flush=True)
    if python is None:
        return
    for name in ("cash", "margin"):
        p50 = [bk[0] / nt[name]["p50_us"] for bk, nt in rows]
        p99 = [bk[1] / nt[name]["p99_us"] for bk, nt in rows]
        print(f"botkit / NautilusTrader {name} account: p50 ratio min {min(p50):.2f}× median "
              f"{statistics.median(p50):.2f}×; p99 ratio min {min(p99):.2f}× "
              f"median {statistics.median(p99):.2f}×")  # fmt: skip


if __name__ == "__main__":
    main()
