"""The simulated exchange: one engine and synthetic market, served over Binance USDⓈ-M's API."""

from botkit.sim.server import Emulator, EmulatorSettings, point_ccxt_at, running_emulator

__all__ = ["Emulator", "EmulatorSettings", "point_ccxt_at", "running_emulator"]
