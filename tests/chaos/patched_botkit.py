"""`botkit` with one guardrail taken out, for the chaos suite's runs with a guardrail off in a separate process:

python -m tests.chaos.patched_botkit PATCH botkit-arguments...
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from botkit.cli import main
from botkit.runtime.journal import Journal
from botkit.runtime.stops import Stops


def buffered_journal() -> None:
    """The journal is written every 30 s and nothing waits for it, as with buffered logging: an order can
    leave before the row naming it is on disk. (Longer than the killed session lives, so the kill always
    lands before a write: a shorter period made the test's outcome depend on where the kill fell.)"""
    pending: list[tuple[Journal, str, dict[str, Any]]] = []
    lock = threading.Lock()
    record = Journal.record

    def buffered(self: Journal, kind: str, **data: Any) -> None:
        with lock:
            pending.append((self, kind, data))

    async def durable(self: Journal, kind: str, **data: Any) -> None:
        buffered(self, kind, **data)

    def write_every_second() -> None:
        while True:
            time.sleep(30)
            with lock:
                rows = pending[:]
                pending.clear()
            for journal, kind, data in rows:
                record(journal, kind, **data)

    threading.Thread(target=write_every_second, daemon=True).start()
    Journal.record, Journal.durable = buffered, durable  # type: ignore[method-assign]


def no_stop_reconciliation() -> None:
    """The stops an earlier session left on the exchange are not looked at when the bot starts."""

    async def skip(self: Stops, triggers: Any) -> None:
        return None

    Stops.at_start = skip  # type: ignore[method-assign]


PATCHES = {"buffered-journal": buffered_journal, "no-stop-reconciliation": no_stop_reconciliation}

if __name__ == "__main__":
    PATCHES[sys.argv[1]]()
    sys.exit(main(sys.argv[2:]))
