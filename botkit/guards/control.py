"""The manual control channel: `botkit halt` and `botkit resume` act on a running bot through a file
beside its journal (`<journal>.control`), one JSON line per command, appended. The bot reads new lines
on every kill-switch tick (at least four times a second), so a command takes effect within a second.
A file keeps working in a container (a shared volume) and needs no port.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Command = Literal["halt", "resume"]


def control_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".control")


def send(path: Path, command: Command, reason: str = "", who: str = "") -> None:
    """Append one command (a single write, so a reader never sees half a line)."""
    line = json.dumps({"command": command, "reason": reason, "who": who or operator(), "at": time.time()}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class ControlCommand:
    command: Command
    reason: str
    who: str


class ControlInbox:
    """Reads the commands appended since the bot started (earlier ones are history, not orders)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = path.stat().st_size if path.exists() else 0

    def read(self) -> list[ControlCommand]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next read
        self._offset += len(complete)
        commands = []
        for raw in complete.splitlines():
            try:
                entry = json.loads(raw)
                if entry.get("command") in ("halt", "resume"):
                    commands.append(
                        ControlCommand(entry["command"], str(entry.get("reason", "")), str(entry.get("who", "")))
                    )
            except (ValueError, AttributeError):
                continue  # not ours to act on; never a reason to crash the bot
        return commands


def operator() -> str:
    """Who runs this command (for the journal)."""
    try:
        return os.getlogin()
    except OSError:
        return os.environ.get("USER", "operator")
