"""Logging: structlog events, JSON lines for machines, readable lines on a terminal, secrets redacted.

Redaction runs as the last processor before rendering, on every event (botkit's own and those from the
standard library loggers of ccxt and aiohttp, which are routed through the same chain), so a secret
cannot reach a log line by any path: values under secret-looking keys are masked, known secret values
are masked wherever they appear inside any string, and `signature=` / `listenKey=` / API-key headers in
URLs and messages are masked by pattern.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import structlog
from pydantic import SecretStr

MASK = "**********"
SECRET_KEY_PATTERN = re.compile(
    r"(api[_-]?key|apikey|secret|signature|listen[_-]?key|password|passphrase|token|private[_-]?key)",
    re.IGNORECASE,
)
SECRET_IN_TEXT = re.compile(
    r"(?P<name>signature|listenKey|X-MBX-APIKEY|apiKey|api_key|secret)(?P<sep>['\"]?\s*[=:]\s*['\"]?)"
    r"(?P<value>[A-Za-z0-9_\-+/.]{6,})",
    re.IGNORECASE,
)
LISTEN_KEY_IN_PATH = re.compile(r"(?P<name>/ws/)(?P<value>[A-Za-z0-9]{32,})")  # Binance user stream: /ws/<key>


class SecretRedactor:
    """structlog processor that masks secrets anywhere in an event dict."""

    def __init__(self, secrets: Iterable[str | SecretStr] = ()) -> None:
        values = (s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets)
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event):
            event[key] = self._clean(key, event[key])
        return event

    def _clean(self, key: Any, value: Any) -> Any:
        if isinstance(key, str) and SECRET_KEY_PATTERN.search(key) and value not in (None, "", False):
            return MASK
        if isinstance(value, SecretStr):
            return MASK
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self._clean(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple | set):
            return [self._clean(None, v) for v in value]
        if isinstance(value, BaseException):
            return self.scrub(repr(value))
        return value

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = SECRET_IN_TEXT.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", text)
        return LISTEN_KEY_IN_PATH.sub(lambda m: f"{m['name']}{MASK}", text)


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    secrets: Iterable[str | SecretStr] = (),
    stream: TextIO | None = None,
) -> None:
    """Set up structlog and route the standard library's loggers through the same processors."""
    stream = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty()) if use_console else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    redact = SecretRedactor(secrets)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def get_logger(name: str = "botkit") -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
