"""The `botkit` command's first step. Importing the CLI (ccxt, aiohttp, pydantic) takes a moment on a cold
start, and Ctrl-C meanwhile must end the command with one line, not a traceback."""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def run() -> None:
    try:
        from botkit.cli import main

        code = main()
    except KeyboardInterrupt:
        sys.stderr.write("botkit: interrupted\n")
        code = EXIT_INTERRUPTED
    raise SystemExit(code)
