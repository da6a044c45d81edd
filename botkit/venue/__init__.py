"""Talking to a venue: the guarded ccxt adapter, the paper venue around the sim engine, and pointing
ccxt at a Binance-compatible base URL."""
