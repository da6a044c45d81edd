"""How a strategy author finds, loads and configures strategies: by name (botkit's strategies/ or the current
folder's), as module:Class or file.py[:Class] without PYTHONPATH, `botkit strategies`, `--param`; and the
example in docs/strategies.md is a correct strategy."""

import asyncio
import re
from decimal import Decimal as D

import pytest

from botkit.cli import main
from botkit.config import ConfigError
from botkit.runtime.strategy import Bar, Strategy, load_strategy, make_strategy
from tests.support import ROOT

MINE = '''
from pydantic import BaseModel
from botkit.runtime.strategy import Strategy


class Mine(Strategy):
    """My own strategy."""

    class Params(BaseModel):
        size: int = 3
'''


def test_a_file_a_module_and_a_local_name_load_from_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text(MINE)
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "local_one.py").write_text(MINE)
    assert load_strategy("mine.py").__name__ == "Mine"
    assert load_strategy(f"{tmp_path / 'mine.py'}:Mine").__name__ == "Mine"
    assert load_strategy("mine:Mine").__name__ == "Mine"  # importable from here, no PYTHONPATH
    assert load_strategy("local_one").__doc__ == "My own strategy."
    assert load_strategy("sma_cross").__name__ == "SmaCross"  # botkit's own still found


@pytest.mark.parametrize(("spec", "problem"), [
    ("missing.py", "no such file 'missing.py'"),
    ("nosuchmodule:X", "no module 'nosuchmodule'"),
    ("broken.py", "running broken.py failed: ZeroDivisionError: division by zero (at "),
    ("mine.py:Other", "has no Strategy subclass 'Other'"),
])  # fmt: skip
def test_a_strategy_that_cannot_load_is_one_line_naming_why(tmp_path, monkeypatch, spec, problem):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text(MINE)
    (tmp_path / "broken.py").write_text("x = 1 / 0\n")
    with pytest.raises(ConfigError) as raised:
        load_strategy(spec)
    assert problem in str(raised.value) and "\n" not in str(raised.value)


def test_strategies_lists_names_parameters_and_defaults(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "local_one.py").write_text(MINE)
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    assert "sma_cross (SmaCross, bars of 5 s): Trend following" in out
    assert "--param fast=...  (int, default 5)" in out
    assert "--param spacing_bps=...  (Decimal, default 8): between levels, and from the mid" in out
    assert "local_one (Mine, bars of 60 s): My own strategy." in out and "--param size=...  (int, default 3)" in out


def test_param_sets_a_parameter_and_a_bad_one_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--param", "fast=50", "--duration", "1"]) == 2  # fast must stay below slow
    err = capsys.readouterr().err
    assert "fast must be shorter than slow" in err and "Traceback" not in err
    assert main(["run", "--param", "fast", "--duration", "1"]) == 2
    assert "--param 'fast': expected name=value" in capsys.readouterr().err


class Ctx:
    """Just enough of a Context for the docs' example: records the orders it asks for."""

    def __init__(self):
        self.bought, self.held = [], False
        self.log = type("Log", (), {"info": lambda *a, **k: None})()

    def position(self, symbol):
        return self.held or None

    def open_orders(self, symbol):
        return []

    async def buy(self, symbol, **kwargs):
        self.bought.append(kwargs)
        self.held = True
        return object()


def test_the_example_in_the_docs_is_a_correct_strategy(tmp_path):
    text = (ROOT / "docs" / "strategies.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    (tmp_path / "breakout.py").write_text(code)
    cls = load_strategy(str(tmp_path / "breakout.py"))
    strategy: Strategy = make_strategy(cls, {"lookback": 3})
    ctx = Ctx()

    def bar(n, high, low, close):
        return Bar("BTC/USDT:USDT", n * 60_000, 60.0, close, D(high), D(low), D(close), D(1), 1)

    async def feed(*bars):
        for b in bars:
            await strategy.on_bar(ctx, b)

    asyncio.run(feed(bar(0, 101, 99, 100), bar(1, 102, 98, 101), bar(2, 103, 97, 102)))
    assert ctx.bought == []  # the lookback is not full before the third bar has passed
    asyncio.run(feed(bar(3, 103, 100, 102)))
    assert ctx.bought == []  # no close above the range
    asyncio.run(feed(bar(4, 105, 101, 104)))
    assert ctx.bought == [{"stop": D(97)}]  # above the 3-bar high (103), stop under the 3-bar low (97)
    asyncio.run(feed(bar(5, 110, 104, 109)))
    assert len(ctx.bought) == 1  # holding: it does not add
