"""Fixtures: an in-process emulator on 127.0.0.1 and real ccxt clients pointed at it."""

import asyncio
import contextlib

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest

from botkit.sim.server import EmulatorSettings, running_emulator
from botkit.venue.endpoints import point_ccxt_at
from tests.support import background

START_MS = 1_700_000_000_000
BTC = "BTC/USDT:USDT"


def settings(**changes) -> EmulatorSettings:
    """Deterministic by default: the market moves only when a test advances it."""
    base = {"seed": 7, "start_ms": START_MS, "run_clock": False, "funding_interval_s": 60.0}
    return EmulatorSettings(**(base | changes))


@pytest.fixture
async def emulator():
    async with running_emulator(settings()) as emu:
        yield emu


def client(module, emu, **options):
    config = {"apiKey": emu.api_key, "secret": emu.api_secret, "enableRateLimit": False, "timeout": 3000}
    return point_ccxt_at(module.binanceusdm(config | options), emu.url)


@contextlib.asynccontextmanager
async def connected(module, emu, **options):
    """A ccxt client (async or pro) on the emulator with its markets loaded, closed on exit."""
    ex = client(module, emu, **options)
    try:
        await ex.load_markets()
        yield ex
    finally:
        await ex.close()


@pytest.fixture
async def exchange(emulator):
    async with connected(ccxt_async, emulator) as ex:
        yield ex


@pytest.fixture
async def pro(emulator):
    async with connected(ccxt_pro, emulator) as ex:
        yield ex


@contextlib.asynccontextmanager
async def market_running(emu, interval: float = 0.01):
    """Step the emulator's market in the background (WebSocket tests need a moving market)."""

    async def run():
        while True:
            emu.advance_steps(1)
            await asyncio.sleep(interval)

    async with background(run()):
        yield
