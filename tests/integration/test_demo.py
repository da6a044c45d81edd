"""The demo and every built-in scenario show what they exist to show, within the run's --duration: each is a
real `botkit run` process on its in-process emulator, and each summary names the guardrail that acted, with
its figures."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from botkit.runtime.journal import read_events
from tests.support import ROOT

DURATION, SPEED = "14", "25"  # 350 s of market time: the first crossing of sma_cross comes after about 110 s
# The scenarios' runs: stale data trips after 1.5 s and trading resumes after 1 s of health, rules re-read
# every 2 s and funding payments every 4 s, so a 14 s run holds each scenario's whole story (the default demo
# keeps its own settings).
FAST = {"killswitch": {"stale_feed_seconds": "1.5", "resume_after_seconds": "1"},
        "runtime": {"rules_seconds": "2", "reconcile_seconds": "4"}}


def _toml(data: dict) -> str:
    lines = []
    for key, value in data.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_value(value)}")
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {_value(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[str, Path]]:
    """scenario -> (the run's output, its journal)."""
    base = tmp_path_factory.mktemp("scenarios")
    (base / "config").mkdir()
    demo = tomllib.loads((ROOT / "config" / "demo.toml").read_text())
    (base / "config" / "demo.toml").write_text((ROOT / "config" / "demo.toml").read_text())
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    done = {}
    for scenario in ("demo", "flash-crash", "feed-stall", "funding-squeeze", "limits-tighten"):
        if scenario == "demo":  # the default demo, as `botkit run` runs it, only shorter
            args = ["--duration", DURATION, "--speed", SPEED]
            journal = base / "botkit-demo.sqlite"
        else:
            config = {k: (v | FAST.get(k, {}) if isinstance(v, dict) else v) for k, v in demo.items()}
            journal = base / f"{scenario}.sqlite"
            config["journal"] = {"path": str(journal)}
            (base / f"{scenario}.toml").write_text(_toml(config))
            args = ["--config", f"{scenario}.toml", "--scenario", scenario, "--duration", DURATION, "--speed", SPEED]
        # one at a time: the scenarios' events are in market time, and an emulator starved of CPU falls behind
        # the wall clock, so a stall or a funding would come after the run's end
        process = subprocess.run([sys.executable, "-m", "botkit.cli", "run", *args], cwd=base, env=env, timeout=120,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        assert process.returncode == 0, process.stdout
        done[scenario] = (process.stdout, journal)
    return done


def acted(out: str) -> list[str]:
    """The summary's "guardrails acted" lines."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("guardrails acted: "))
    found = [lines[start].removeprefix("guardrails acted: ")]
    found += [line.strip() for line in lines[start + 1:] if line.startswith("    ")]
    return found


def test_the_default_demo_names_a_guardrail_action_with_its_figures_and_the_report(runs):
    out, journal = runs["demo"]
    assert "scenario demo, seed 1" in out
    lines = acted(out)
    assert any(("exchange stop triggered" in line and "trigger" in line) or "TRIP" in line for line in lines), out
    assert f"botkit report {journal.name}" in out
    assert all(len(line) < 400 for line in out.splitlines())  # whole lines, not a table cut to a width


def test_flash_crash_comes_after_positions_exist_and_a_guardrail_acts(runs):
    out, journal = runs["flash-crash"]
    fills = [e for e in read_events(journal, ["fill"])]
    assert fills, "no position before the crash"
    assert any("exchange stop triggered" in line or "TRIP drawdown" in line or "LIQUIDATION GUARD" in line
               for line in acted(out)), out  # fmt: skip


def test_feed_stall_trips_the_stale_feed_guard_and_recovers_within_the_run(runs):
    """The stall is met by the stale-feed trip and its recovery, or, when the restarted streams fall back to
    REST polling before the data's age reaches the limit, by that fallback: either way a guardrail acts,
    is named, and trading is ACTIVE again within the run."""
    out, _ = runs["feed-stall"]
    lines = acted(out)
    trips = [i for i, line in enumerate(lines) if "TRIP stale_feed -> HALTED: stream=" in line]
    if trips:
        assert any("cleared stale_feed: healthy for" in line for line in lines[trips[0]:]), out
    else:
        assert any(line.split("] ", 1)[-1].startswith(("feeds silent", "feed ")) for line in lines), out
    assert "trading state: ACTIVE" in out


def test_funding_squeeze_settles_funding_within_the_run(runs):
    _, journal = runs["funding-squeeze"]
    payments = list(read_events(journal, ["funding"]))
    assert payments and all(p.data["amount"] != "0" for p in payments)


def test_limits_tighten_lowers_the_leverage_under_a_live_position(runs):
    out, journal = runs["limits-tighten"]
    lowered = [e for e in read_events(journal, ["rules"]) if e.data.get("leverage") is not None]
    assert lowered and any("leverage lowered to" in line for line in acted(out)), out
    fills = list(read_events(journal, ["fill"]))
    held = [row for row in lowered if any(f.symbol == row.symbol and f.id < row.id for f in fills)]
    assert held, "the brackets were cut with no position held"
