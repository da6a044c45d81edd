"""`botkit emulate` as a user runs it: a real process that serves until it is told to stop."""

import json
import signal
import subprocess
import sys
import urllib.request

from tests.support import ROOT


def test_emulate_serves_and_stops_cleanly_on_sigterm(tmp_path):
    plan = tmp_path / "faults.toml"
    plan.write_text('[[rules]]\nkind = "latency"\ntarget = "/fapi/v1/time"\nlatency_ms = 1\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "botkit.cli", "emulate", "--port", "0", "--seed", "3", "--faults", str(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("botkit emulator on http://127.0.0.1:"), first
        url = first.split()[3]
        key = process.stdout.readline().split()[-1]
        assert len(key) == 64
        with urllib.request.urlopen(f"{url}/fapi/v1/time", timeout=5) as response:
            assert "serverTime" in json.load(response)
        with urllib.request.urlopen(f"{url}/_emu/faults", timeout=5) as response:
            assert json.load(response)["rules"][0]["kind"] == "latency"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
        assert process.returncode == 0, err
        assert "stopped" in out and "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()


def test_emulate_rejects_a_bad_fault_plan_in_one_line(tmp_path):
    plan = tmp_path / "faults.toml"
    plan.write_text('[[rules]]\nkind = "meteor"\n')
    result = subprocess.run(
        [sys.executable, "-m", "botkit.cli", "emulate", "--faults", str(plan)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "rules.0.kind" in result.stderr
