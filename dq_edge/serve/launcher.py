"""`dq-edge serve` as a child process on free loopback ports: for the tests, the load benchmark
and scripts that need a running server for a while."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from dq_edge.errors import DQEdgeError
from dq_edge.serve.server import Endpoints

READY_LINE = "stop with Ctrl-C"  # the last line `dq-edge serve` prints once the server is ready


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def process_tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:"))
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, StopIteration):  # exited meanwhile, or a kernel thread without VmRSS
            continue
    return total


class ServeProcess:
    """`python -m dq_edge serve --engine ENGINE ...extra` on free loopback ports."""

    def __init__(self, engine: str | Path, extra: list[str] | None = None, startup_timeout_s: float = 300.0):
        http, grpc, metrics = free_ports(3)
        self.endpoints = Endpoints("127.0.0.1", http, grpc, metrics)
        command = [
            sys.executable, "-m", "dq_edge", "serve", "--engine", str(engine), "--host", "127.0.0.1",
            "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics), *(extra or []),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
        self.banner = self._read_banner(startup_timeout_s)

    def _read_banner(self, timeout_s: float) -> str:
        """Lines up to READY_LINE, read by a thread: a pipe read blocks, and a select() on the
        pipe misses lines already buffered by the text reader."""
        lines: "queue.Queue[str | None]" = queue.Queue()

        def pump() -> None:
            for line in self.process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        seen: list[str] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
            if line.startswith(READY_LINE):
                return "".join(seen)
        self.stop()
        raise DQEdgeError(f"dq-edge serve did not become ready (exit code {self.process.poll()})", "run it by hand to see its log")

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def curl_line(self) -> str:
        return next(line.strip() for line in self.banner.splitlines() if line.strip().startswith("curl "))

    def stop(self, timeout_s: float = 120.0) -> int:
        """SIGTERM, then the exit code (in-flight requests finish first)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        return code

    def __enter__(self) -> "ServeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
