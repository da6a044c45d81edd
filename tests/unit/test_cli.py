"""The command line: verdicts, JSON, and one clear line with exit code 2 for every bad input."""

import json

import pytest

from botkit.cli import main
from tests.support import ROOT

TIERS = str(ROOT / "config" / "tiers" / "BTCUSDT.json")
BASE = ["size", "--side", "long", "--entry", "50000", "--stop", "49000", "--equity", "10000", "--leverage", "10"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(__import__("os").environ):
        if name.upper().startswith("BOTKIT_"):
            monkeypatch.delenv(name)


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_size_json_largest_safe_quantity(capsys):
    code, out, _ = run(capsys, *BASE, "--tiers", TIERS, "--json")
    data = json.loads(out)
    assert code == 0
    assert data["qty"] == "0.091" and data["verdict"] == "accept" and data["reasons"] == []
    assert data["notional"] == "4550" and data["initial_margin"] == "455"
    assert data["liquidation_price"] == "45180.8" and data["planning_liquidation_price"] == "45220.9"
    assert data["loss_at_stop"] == "99.099" and data["risk_budget"] == "100"
    assert data["max_leverage_for_stop"] == 10
    for key in ("qty", "notional", "initial_margin", "liquidation_price", "loss_at_stop", "risk_budget"):
        assert isinstance(data[key], str)


def test_size_reports_the_market_noise_checks_against_a_given_volatility(capsys):
    # σ = 2.0 / √(365·24·3600) = 0.000356145 /√s; over 3600 s: ·60 = 2.1369 %, wider than the 2 % stop;
    # 3 σ over 28800 s: ·3·169.7056 = 18.1319 %, beyond the planning liquidation 9.5582 % away
    code, out, _ = run(capsys, *BASE, "--tiers", TIERS, "--json", "--vol-annual", "2.0")
    noise = json.loads(out)["market_noise"]
    assert code == 0  # warnings: the sizing verdict stands
    assert noise["noise"] == "2.1369%" and noise["liquidation_reach"] == "18.1319%"
    assert [w.split()[0] for w in noise["warnings"]] == ["STOP_INSIDE_NOISE", "LIQ_WITHIN_SIGMA"]
    code, out, _ = run(capsys, *BASE, "--tiers", TIERS, "--json", "--vol-annual", "0.6")
    assert json.loads(out)["market_noise"]["warnings"] == []  # 0.64 % of noise, 5.44 % of reach: clear


def test_size_checks_a_given_quantity_and_rejects_with_exit_1(capsys):
    code, out, _ = run(capsys, *BASE, "--mmr", "0.004", "--qty", "0.2", "--json")
    data = json.loads(out)
    assert code == 1
    assert data["verdict"] == "reject" and data["reasons"] == ["RISK_ABOVE_BUDGET"]
    assert data["checked"] == "given"


def test_size_table_is_readable(capsys):
    code, out, _ = run(capsys, *BASE, "--tiers", TIERS)
    assert code == 0
    assert "ACCEPT" in out and "0.091" in out and "45180.8" in out


def test_size_with_policy_from_a_config_file(capsys, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[risk]\nrisk_per_trade = 0.005\n")
    _, out, _ = run(capsys, *BASE, "--tiers", TIERS, "--config", str(config), "--json")
    assert json.loads(out)["risk_budget"] == "50"
    _, out, _ = run(capsys, *BASE, "--tiers", TIERS, "--config", str(config), "--risk", "0.02", "--json")
    assert json.loads(out)["risk_budget"] == "200"  # an explicit flag beats the file


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--side", "long", "--entry", "50000", "--stop", "51000"], "--stop 51000 must be below --entry 50000"),
        (["--side", "short", "--entry", "50000", "--stop", "49000"], "--stop 49000 must be above --entry 50000"),
        (["--side", "long", "--entry", "50000", "--stop", "49000", "--qty", "-1"], "'--qty': -1 must be > 0"),
        (["--side", "long", "--entry", "abc", "--stop", "49000"], "'--entry': 'abc' is not a number"),
        (["--side", "long", "--entry", "NaN", "--stop", "49000"], "not a finite number"),
        (["--side", "up", "--entry", "50000", "--stop", "49000"], "'--side'"),
        (["--side", "long", "--entry", "50000", "--stop", "49000", "--frobnicate"], "No such option"),
        (["--side", "long", "--entry", "50000", "--stop", "49000", "--qty", "0.0001"], "rounds down to 0"),
    ],
)
def test_bad_size_input_is_one_line_and_exit_2(capsys, args, message):
    code, out, err = run(capsys, "size", *args, "--equity", "1000", "--leverage", "5", "--mmr", "0.004")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("botkit: error: ") and message in err


def test_tiers_file_problems_are_named(capsys, tmp_path):
    bad = tmp_path / "tiers.json"
    bad.write_text('[{"minNotional": 10, "maxNotional": 5, "maintenanceMarginRate": 0.01, "maxLeverage": 20}]')
    code, _, err = run(capsys, *BASE, "--tiers", str(bad))
    assert code == 2 and f"--tiers {bad}: the first bracket must start at notional 0" in err
    code, _, err = run(capsys, *BASE, "--tiers", str(tmp_path / "none.json"))
    assert code == 2 and "cannot read" in err
    code, _, err = run(capsys, *BASE)
    assert code == 2 and "give either --tiers FILE or --mmr" in err


def test_check_config_prints_masked_settings(capsys, monkeypatch):
    monkeypatch.setenv("BOTKIT_EXCHANGE__API_KEY", "key-that-must-not-show")
    monkeypatch.setenv("BOTKIT_EXCHANGE__API_SECRET", "secret-that-must-not-show")
    code, out, _ = run(capsys, "check-config", str(ROOT / "config" / "testnet.toml"), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["mode"] == "testnet" and data["exchange"]["api_secret"] == "**********"
    assert "must-not-show" not in out


def test_check_config_reports_each_problem(capsys, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[risk]\nmax_leverage = 500\n[limits]\nmax_positions = 0\n")
    code, out, err = run(capsys, "check-config", str(path))
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"botkit: config error: {path}: risk.max_leverage = 500: must be <= 125",
        f"botkit: config error: {path}: limits.max_positions = 0: must be >= 1",
    ]


class _InterruptedImport:
    """A Ctrl-C that lands while botkit.cli imports."""

    def find_spec(self, name, path=None, target=None):
        if name == "botkit.cli":
            raise KeyboardInterrupt
        return None


def test_ctrl_c_while_the_cli_imports_ends_with_one_line(monkeypatch, capsys):
    import sys

    from botkit.launch import run

    monkeypatch.delitem(sys.modules, "botkit.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptedImport(), *sys.meta_path])
    with pytest.raises(SystemExit) as ended:
        run()
    assert ended.value.code == 130
    assert capsys.readouterr().err == "botkit: interrupted\n"


def test_version_answers_without_importing_the_cli():
    import subprocess
    import sys

    code = ("import sys; sys.argv = ['botkit', '--version']; from botkit.launch import run\n"
            "try:\n    run()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('ccxt', 'botkit.cli'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.stdout.splitlines() == ["botkit, version 0.1.0", "[]"], done.stderr


def test_the_demo_keeps_the_last_few_journals_it_set_aside_with_their_files(tmp_path):
    from rich.console import Console

    from botkit.cli import SET_ASIDE_KEPT, _set_aside

    journal = tmp_path / "botkit-demo.sqlite"
    for n in range(SET_ASIDE_KEPT + 3):
        for suffix in ("", "-wal", "-shm", ".log"):
            journal.with_name(journal.name + suffix).write_text(str(n))
        _set_aside(journal, Console(file=open(tmp_path / "out.txt", "w")))  # noqa: SIM115
    kept = sorted(tmp_path.glob("botkit-demo-*.sqlite"))
    assert len(kept) == SET_ASIDE_KEPT and not journal.exists()
    assert [p.read_text() for p in kept] == [str(n) for n in range(3, SET_ASIDE_KEPT + 3)]  # the newest stay
    leftovers = {p.name for p in tmp_path.iterdir()} - {"out.txt"}
    assert leftovers == {k.name + s for k in kept for s in ("", "-wal", "-shm", ".log")}
