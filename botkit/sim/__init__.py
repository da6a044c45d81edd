"""The simulated exchange: one engine and synthetic market (`engine`, `market`), served over Binance
USDⓈ-M's API by `server` (the emulator), with fault plans (`faults`)."""
