"""Talking to a venue: the guarded ccxt adapter (and, later, the paper venue)."""
