"""Config loading: files, environment overrides, secrets, and one clear line per problem."""

from decimal import Decimal
from pathlib import Path

import pytest

from botkit.config import ConfigError, effective_settings, load_config
from tests.support import ROOT

EXAMPLES = sorted((ROOT / "config").glob("*.toml"))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(__import__("os").environ):
        if name.upper().startswith("BOTKIT_"):
            monkeypatch.delenv(name)


def test_there_is_an_example_file_for_every_mode_and_for_compose_and_backtests():
    names = {p.name for p in EXAMPLES}
    assert names == {"demo.toml", "paper.toml", "testnet.toml", "live.example.toml", "compose.toml", "backtest.toml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(path, monkeypatch):
    monkeypatch.setenv("BOTKIT_EXCHANGE__API_KEY", "example-key")
    monkeypatch.setenv("BOTKIT_EXCHANGE__API_SECRET", "example-secret")
    config = load_config(path)
    expected = {"live.example.toml": "live", "compose.toml": "demo", "backtest.toml": "paper"}.get(path.name, path.stem)
    assert config.mode == expected


def test_environment_overrides_the_file_with_nested_names(monkeypatch):
    monkeypatch.setenv("BOTKIT_RISK__RISK_PER_TRADE", "0.002")
    monkeypatch.setenv("BOTKIT_KILLSWITCH__ON_HALT", "cancel_and_flatten")
    config = load_config(ROOT / "config" / "demo.toml")
    assert config.risk.risk_per_trade == Decimal("0.002")
    assert config.killswitch.on_halt == "cancel_and_flatten"
    assert config.risk.max_leverage == 10  # from the file


def test_decimals_from_toml_keep_their_exact_value(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[risk]\nliq_buffer = 0.0033\n")
    assert str(load_config(path).risk.liq_buffer) == "0.0033"


def test_each_problem_is_one_line_naming_field_value_and_what_is_allowed(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        'mode = "livee"\nsymbols = ["BTCUSDT"]\n[risk]\nrisk_per_trade = 0.5\nmax_leverag = 3\n'
        "[killswitch]\non_halt = 'panic'\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = caught.value.problems
    assert len(problems) == 5
    assert f"{path}: mode = 'livee': allowed: 'demo', 'paper', 'testnet' or 'live'" in problems
    assert f"{path}: risk.risk_per_trade = 0.5: must be <= 0.1" in problems
    assert any("risk.max_leverag = 3: unknown setting" in p for p in problems)
    assert any("'BTCUSDT' is not a unified perpetual symbol" in p for p in problems)
    assert any(p.startswith(f"{path}: killswitch.on_halt = 'panic': allowed:") for p in problems)
    assert all("\n" not in p for p in problems)


def test_bad_toml_and_missing_file_are_one_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("mode = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.toml")


def test_live_needs_keys_and_keys_can_come_from_files(tmp_path, monkeypatch):
    path = tmp_path / "live.toml"
    path.write_text('mode = "live"\n')
    with pytest.raises(ConfigError, match=r"needs exchange\.api_key"):
        load_config(path)
    (tmp_path / "key").write_text("file-key-123456\n")
    (tmp_path / "secret").write_text("file-secret-123456\n")
    monkeypatch.setenv("BOTKIT_EXCHANGE__API_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("BOTKIT_EXCHANGE__API_SECRET_FILE", str(tmp_path / "secret"))
    config = load_config(path)
    assert config.exchange.api_secret.get_secret_value() == "file-secret-123456"
    shown = str(effective_settings(config))
    assert "file-secret-123456" not in shown and "file-key-123456" not in shown


def test_a_secret_in_a_bad_value_is_not_echoed(tmp_path, monkeypatch):
    monkeypatch.setenv("BOTKIT_EXCHANGE__API_SECRET", "s3cr3t-value")
    monkeypatch.setenv("BOTKIT_EXCHANGE__API_KEY_FILE", str(tmp_path / "nope"))
    with pytest.raises(ConfigError) as caught:
        load_config(None)
    assert "s3cr3t-value" not in str(caught.value)
    assert "cannot read api_key_file" in str(caught.value)


def test_unreadable_key_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("BOTKIT_EXCHANGE__API_KEY_FILE", str(Path(tmp_path) / "absent"))
    with pytest.raises(ConfigError, match="exchange: cannot read api_key_file"):
        load_config(None)
