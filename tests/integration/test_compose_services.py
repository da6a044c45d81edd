"""The compose services as plain processes (no Docker engine here): the emulator with the shared key
from the environment, a Redis server, the bot on config/compose.toml pointed at them (its [fleet] from the
compose file's environment), and the image's health check
(`botkit health`) saying healthy while the bot runs and unhealthy once it has stopped."""

import os
import signal
import subprocess
import sys
import time

import yaml

from tests.support import ROOT, redis_server

COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())


def botkit(*args, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "botkit.cli", *args], cwd=ROOT, text=True,
                            env=os.environ | (env or {}), **kwargs)  # fmt: skip


def test_the_compose_services_trade_and_the_health_check_follows_the_bot(tmp_path):
    with redis_server(tmp_path) as redis:  # the compose file's redis service
        _services(tmp_path, redis.url)


def _services(tmp_path, redis_url):
    keys = COMPOSE["services"]["emulator"]["environment"]
    keys = {k: v.split(":-", 1)[1].rstrip("}") for k, v in keys.items()}  # the compose file's defaults
    command = COMPOSE["services"]["emulator"]["command"]
    command = [*command[: command.index("--host")], "--host", "127.0.0.1", "--port", "0",
               *command[command.index("--port") + 2 :]]  # fmt: skip
    emulator = botkit(*command, env=keys, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = tmp_path / "botkit-journal.sqlite"
    try:
        url = emulator.stdout.readline().split()[3]
        assert emulator.stdout.readline().split()[-1] == keys["BOTKIT_EMULATE_API_KEY"]
        env = {k: v.split(":-", 1)[1].rstrip("}") if v.startswith("${") else v
               for k, v in COMPOSE["services"]["bot"]["environment"].items()}  # fmt: skip
        env["BOTKIT_FLEET__REDIS_URL"] = redis_url
        env |= {"BOTKIT_EXCHANGE__EMULATOR_URL": url, "BOTKIT_JOURNAL__PATH": str(journal),
                "BOTKIT_RUNTIME__METRICS_PORT": "0", "BOTKIT_RUNTIME__STATUS_PORT": "0"}  # free ports on this host
        command = [str(ROOT / a.removeprefix("/app/")) if a.startswith("/app/") else a  # the image's WORKDIR
                   for a in COMPOSE["services"]["bot"]["command"]]  # fmt: skip
        bot = botkit(*command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline and bot.poll() is None:
            time.sleep(0.5)
            if journal.exists():
                health = subprocess.run([sys.executable, "-m", "botkit.cli", "health", str(journal)], cwd=ROOT,
                                        capture_output=True, text=True, timeout=30)  # fmt: skip
                if health.returncode == 0:
                    break
        if bot.poll() is not None:
            raise AssertionError(f"the bot exited {bot.returncode}: {bot.communicate()[1][-2000:]}")
        assert health is not None and health.returncode == 0, health and health.stdout + health.stderr
        assert health.stdout.startswith("healthy")
        bot.send_signal(signal.SIGTERM)
        _, err = bot.communicate(timeout=30)
        assert bot.returncode == 0, err[-2000:]
        after = subprocess.run([sys.executable, "-m", "botkit.cli", "health", str(journal)], cwd=ROOT,
                               capture_output=True, text=True, timeout=30)  # fmt: skip
        assert after.returncode == 1 and "stopped" in after.stdout
    finally:
        emulator.send_signal(signal.SIGTERM)
        emulator.communicate(timeout=10)
