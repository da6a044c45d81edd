"""Bad input gets one line naming what is wrong and exit code 2, never a traceback; a strategy's odd
arguments become a rejection with a reason, never an exception or a GATE_ERROR."""

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botkit.cli import main
from botkit.domain import OrderIntent, Reason
from botkit.guards.gate import Gate
from botkit.runtime.strategy import _decimal
from tests.unit.test_gate import BTC, config, snapshot


def run_cli(args, capsys, monkeypatch, env=None):
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    code = main(args)
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"BOTKIT_SYMBOLS": "[oops"}, "BOTKIT_SYMBOLS: not valid JSON"),
        ({"BOTKIT_EXCHANGE": "{bad"}, "BOTKIT_EXCHANGE: not valid JSON"),
        ({"BOTKIT_PARAMS": "nope"}, "BOTKIT_PARAMS: not valid JSON"),
        ({"BOTKIT_RSIK__MAX_LEVERAGE": "5"}, "BOTKIT_RSIK__MAX_LEVERAGE: no section 'rsik'"),
        ({"BOTKIT_RISK__MAX_LEVRAGE": "5"}, "no setting 'max_levrage' in [risk]"),
    ],
)
def test_bad_environment_is_one_line(env, says, capsys, monkeypatch):
    code, output = run_cli(["check-config", "config/demo.toml"], capsys, monkeypatch, env)
    assert code == 2 and says in output and "Traceback" not in output


@pytest.mark.parametrize("entry", ["1e30", "1e400", "1e-30"])
def test_absurd_numbers_for_size_are_one_line(entry, capsys, monkeypatch):
    args = ["size", "--side", "long", "--entry", entry, "--stop", "1e-13", "--equity", "100", "--leverage", "2",
            "--mmr", "0.01"]  # fmt: skip
    code, output = run_cli(args, capsys, monkeypatch)
    assert code == 2 and "beyond any market" in output and "Traceback" not in output


def test_a_journal_in_a_missing_folder_is_one_line(tmp_path, capsys, monkeypatch):
    config = tmp_path / "bot.toml"
    config.write_text(f'[journal]\npath = "{tmp_path}/missing/bot.sqlite"\n')
    for args in (["run", "--config", str(config)], ["halt", "--config", str(config)]):
        code, output = run_cli(args, capsys, monkeypatch)
        assert code == 2 and "does not exist" in output and "Traceback" not in output, output


@pytest.mark.parametrize(
    ("source", "says"),
    [("def broken(:\n", "syntax error"), ("import not_a_module_anywhere\n", "not installed"),
     ("raise RuntimeError('boom')\n", "RuntimeError: boom")],
)  # fmt: skip
def test_a_broken_strategy_module_is_one_line(source, says, tmp_path, capsys, monkeypatch):
    (tmp_path / "my_broken_strategy.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, output = run_cli(["run", "--strategy", "my_broken_strategy:Mine", "--duration", "1"], capsys, monkeypatch)
    assert code == 2 and says in output and "Traceback" not in output, output


ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
    st.binary(max_size=3), st.lists(st.integers(), max_size=2), st.builds(object),
    st.decimals(allow_nan=True, allow_infinity=True), st.sampled_from([D("1e30"), D("1e-30"), D("0.003")]),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(symbol=st.one_of(st.just(BTC), ANYTHING), side=st.one_of(st.sampled_from(["buy", "sell"]), ANYTHING),
       qty=ANYTHING, price=ANYTHING, stop=ANYTHING, leverage=ANYTHING, type=st.one_of(st.just("market"), ANYTHING),
       reduce_only=ANYTHING)  # fmt: skip
def test_whatever_a_strategy_passes_the_gate_answers_with_a_reason(
    symbol, side, qty, price, stop, leverage, type, reduce_only
):
    intent = OrderIntent(symbol, side, _decimal(qty), type, _decimal(price), _decimal(stop), leverage, reduce_only)
    verdict = Gate(config()).check(intent, snapshot())
    assert Reason.GATE_ERROR not in verdict.reasons, str(verdict)
    if verdict.accepted:
        assert isinstance(verdict.qty, D) and D(0) < verdict.qty < D(100)


def test_check_config_refuses_the_params_run_would_refuse(tmp_path, capsys, monkeypatch):
    config = tmp_path / "bot.toml"
    config.write_text('strategy = "sma_cross"\n[params]\nfast = -3\n')
    code, output = run_cli(["check-config", str(config)], capsys, monkeypatch)
    assert code == 2 and "params (SmaCross): fast = -3" in output and "Traceback" not in output


def test_a_journal_holding_a_lone_surrogate_still_reports(tmp_path, capsys, monkeypatch):
    from botkit.runtime.journal import Journal

    path = tmp_path / "odd.sqlite"
    journal = Journal(path, "s")
    journal.record("strategy.error", hook="on_quote", error="bad \ud800 text", action="skip", traceback="")
    journal.close()
    code, output = run_cli(["report", str(path), "--html", str(tmp_path / "odd.html")], capsys, monkeypatch)
    assert code == 0 and "Traceback" not in output and (tmp_path / "odd.html").stat().st_size > 0
