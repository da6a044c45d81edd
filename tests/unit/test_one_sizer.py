"""One sizer: `botkit size` and the risk gate give the same quantity and the same reasons for the same
inputs. Before, the gate fell back to max(min_qty, step) when nothing was safe while `botkit size` checked
the smallest legal order, so the two disagreed (0.001 with a spurious NOTIONAL_BELOW_MIN against 0.002)."""

import json
from decimal import Decimal as D

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from botkit.cli import cli
from botkit.config import BotConfig
from botkit.domain import OrderIntent, TradingState
from botkit.guards.gate import Gate, MarketView, Snapshot
from botkit.margin import MarketRules, tiers_from_ccxt
from tests.support import ROOT

SYMBOL = "BTC/USDT:USDT"
TIERS_FILE = ROOT / "config/tiers/BTCUSDT.json"
TIERS = tiers_from_ccxt(json.loads(TIERS_FILE.read_text()))
NOW = 1000.0
UNLIMITED = {"max_order_notional": 10**12, "max_position_notional": 10**12, "max_total_notional": 10**12,
             "orders_per_10s": 10**9, "orders_per_minute": 10**9}  # fmt: skip


def both(side: str, entry: D, stop: D, equity: D, leverage: int, risk: D, min_notional: D) -> tuple[dict, object]:
    args = ["size", "--json", "--side", side, "--entry", str(entry), "--stop", str(stop), "--equity", str(equity),
            "--leverage", str(leverage), "--max-leverage", "125", "--risk", str(risk), "--tiers", str(TIERS_FILE),
            "--min-notional", str(min_notional)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 1), result.output
    cli_report = json.loads(result.output)
    rules = MarketRules(step=D("0.001"), tick=D("0.1"), min_qty=D("0.001"), min_notional=min_notional)
    level = ((entry, D(10**6)),)
    market = MarketView(rules, TIERS, leverage, entry, NOW, level, level, NOW)
    config = BotConfig(risk={"risk_per_trade": risk, "max_leverage": 125}, limits=UNLIMITED,
                       killswitch={"min_book_depth_notional": 0})  # fmt: skip
    snap = Snapshot(NOW, TradingState.ACTIVE, {SYMBOL: market}, equity=equity, available=equity)
    intent = OrderIntent(SYMBOL, "buy" if side == "long" else "sell", None, stop=stop, leverage=leverage)
    return cli_report, Gate(config).check(intent, snap)


def test_the_case_that_used_to_disagree():
    cli_report, verdict = both("long", D(50000), D(49000), D(100), 10, D("0.01"), D(100))
    assert cli_report["verdict"] == "reject" and cli_report["qty"] == "0.002"
    assert [str(r) for r in verdict.reasons] == cli_report["reasons"] == ["RISK_ABOVE_BUDGET"]


@settings(max_examples=60, deadline=None)
@given(
    side=st.sampled_from(["long", "short"]),
    entry=st.decimals(D(100), D(100_000), places=1),
    distance=st.decimals(D("0.001"), D("0.3"), places=4),
    equity=st.decimals(D(50), D(1_000_000), places=2),
    leverage=st.integers(1, 125),
    risk=st.decimals(D("0.001"), D("0.1"), places=3),
    min_notional=st.sampled_from([D(0), D(5), D(100)]),
)
def test_botkit_size_and_the_gate_agree(side, entry, distance, equity, leverage, risk, min_notional):
    leverage = min(leverage, TIERS[0].max_leverage)
    stop = (entry * (1 - distance) if side == "long" else entry * (1 + distance)).quantize(D("0.1"))
    if stop <= 0 or stop == entry:
        return
    cli_report, verdict = both(side, entry, stop, equity, leverage, risk, min_notional)
    if cli_report["verdict"] == "accept":
        assert verdict.accepted and verdict.qty == D(cli_report["qty"]), str(verdict)
    else:
        assert not verdict.accepted
        assert [str(r) for r in verdict.reasons] == cli_report["reasons"], str(verdict)
