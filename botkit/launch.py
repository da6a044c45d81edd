"""The `botkit` command's first step. Importing the CLI (ccxt, aiohttp, pydantic) takes a moment on a cold
start, and Ctrl-C meanwhile must end the command with one line, not a traceback."""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def run() -> None:
    if sys.argv[1:] == ["--version"]:  # answered before the CLI's imports (ccxt alone takes a second or more)
        from botkit import __version__

        sys.stdout.write(f"botkit, version {__version__}\n")
        raise SystemExit(0)
    try:
        from botkit.cli import main

        code = main()
    except KeyboardInterrupt:
        sys.stderr.write("botkit: interrupted\n")
        code = EXIT_INTERRUPTED
    raise SystemExit(code)
