"""Shared by the fleet's benchmark and tests (not a benchmark itself): a real redis-server (or valkey-server)
process on a free loopback port."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


def redis_binary() -> str | None:
    return shutil.which("redis-server") or shutil.which("valkey-server")


class RedisServer:
    """One server process: `start`, `stop` (a kill: what a crash looks like), `start` again on the same port.
    `replica_of` makes it a replica of another; `sentinel_of` a Sentinel watching another as the primary
    "mymaster" (a quorum of one, down after 300 ms: failovers in a second or two)."""

    def __init__(self, binary: str, folder: Path, *, replica_of: RedisServer | None = None,
                 sentinel_of: RedisServer | None = None) -> None:  # fmt: skip
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.binary, self.folder = binary, folder
        self.replica_of, self.sentinel_of = replica_of, sentinel_of
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.address = f"127.0.0.1:{self.port}"
        self.process: Any = None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        if self.sentinel_of is not None:  # a Sentinel rewrites its own config file: one of its own
            config = self.folder / f"sentinel-{self.port}.conf"
            primary = self.sentinel_of.port
            config.write_text(f"sentinel monitor mymaster 127.0.0.1 {primary} 1\n"
                              "sentinel down-after-milliseconds mymaster 300\n"
                              "sentinel failover-timeout mymaster 2000\n")  # fmt: skip
            args = [self.binary, str(config), "--sentinel", *args[1:]]
        else:
            args += ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
            if self.replica_of is not None:
                args += ["--replicaof", "127.0.0.1", str(self.replica_of.port)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def cpu_seconds(self) -> float | None:
        """CPU time the server has used so far (Linux's /proc; None elsewhere)."""
        import os

        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, AttributeError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, in ticks

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
