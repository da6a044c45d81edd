"""Pointing a ccxt binanceusdm client at any Binance USDⓈ-M compatible base URL (botkit's emulator, or
another one): every REST section the client uses goes there, every other section to a dead local
address, so nothing can reach the internet by mistake.
"""

from __future__ import annotations

from typing import Any

FAPI_SECTIONS = {
    "fapiPublic": "/fapi/v1",
    "fapiPublicV2": "/fapi/v2",
    "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1",
    "fapiPrivateV2": "/fapi/v2",
    "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "sapi": "/sapi/v1",  # only the API key's permissions are served there
}
DEAD_URL = "http://127.0.0.1:9/unreachable"  # every other ccxt section: refused locally, never the internet


def point_ccxt_at(exchange: Any, url: str) -> Any:
    """Point a ccxt binanceusdm instance (async or pro) at an emulator: every REST section and the
    WebSocket base, no currency fetch, and Binance USDⓈ-M's error codes mapped as on the real venue."""
    base = url.rstrip("/")
    api = exchange.urls["api"]
    for key in list(api):
        if isinstance(api[key], str):
            api[key] = DEAD_URL
    for key, path in FAPI_SECTIONS.items():
        api[key] = base + path
    if isinstance(api.get("ws"), dict):
        api["ws"] = _dead_urls(api["ws"])
        api["ws"]["linear"] = "ws" + base.removeprefix("http") + "/ws"
    exchange.options["fetchCurrencies"] = False
    exchange.exceptions["exact"].update(exchange.exceptions["linear"]["exact"])
    return exchange


def _dead_urls(tree: dict[str, Any]) -> dict[str, Any]:
    dead = DEAD_URL.replace("http", "ws")
    return {k: _dead_urls(v) if isinstance(v, dict) else dead if isinstance(v, str) else v for k, v in tree.items()}
