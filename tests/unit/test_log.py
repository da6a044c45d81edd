"""A secret must never reach a log line, whichever way it travels."""

import io
import json
import logging

from pydantic import SecretStr

from botkit.log import MASK, configure_logging, get_logger

KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_secrets_are_masked_in_keys_values_urls_and_foreign_loggers():
    stream = io.StringIO()
    configure_logging("debug", "json", secrets=[KEY, SecretStr(SECRET)], stream=stream)
    log = get_logger("test")
    log.info("order.sent", api_key=KEY, headers={"X-MBX-APIKEY": KEY}, secret=SecretStr(SECRET))
    log.info("http.request", url="https://fapi.example/fapi/v1/order?symbol=BTCUSDT&signature=ab12cd34ef56&x=1")
    log.info("stream.open", path="/ws/Pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1")
    log.warning(f"echoing a config with {SECRET} inside", attempts=[KEY, 1])
    logging.getLogger("ccxt.base.exchange").warning("GET ...?listenKey=Pqia91ma19a5s61cv6a8 key=%s", KEY)
    try:
        raise RuntimeError(f"auth failed for {KEY}")
    except RuntimeError:
        log.exception("venue.error")
    out = stream.getvalue()
    assert KEY not in out and SECRET not in out
    assert "ab12cd34ef56" not in out and "Pqia91ma19a5s61cv6a8" not in out
    lines = _lines(stream)
    assert lines[0]["api_key"] == MASK and lines[0]["headers"]["X-MBX-APIKEY"] == MASK
    assert "signature=**********" in lines[1]["url"] and "symbol=BTCUSDT" in lines[1]["url"]
    assert lines[4]["logger"] == "ccxt.base.exchange"
    assert "RuntimeError" in lines[5]["exception"]


def test_console_format_is_readable_text():
    stream = io.StringIO()
    configure_logging("info", "console", stream=stream)
    get_logger().info("killswitch.tripped", trigger="stale_feed", age_s=7.5)
    text = stream.getvalue()
    assert "killswitch.tripped" in text and "trigger" in text and not text.startswith("{")


def test_level_filters_debug():
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    get_logger().debug("noise")
    assert stream.getvalue() == ""
