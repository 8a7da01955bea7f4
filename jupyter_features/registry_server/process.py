"""Run a registry server as a child process: for tests, benchmarks and notebooks' demos.

with start_server("sqlite:///r.db", token_file="tokens.txt") as server:
    reg = registry_client.connect(server.url, token="...")
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import RegistryUnavailableError

__all__ = ["RunningServer", "free_port", "start_server"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextmanager
def start_server(
    store_url: str,
    *,
    token_file: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    log: str | os.PathLike[str] | None = None,
    startup_timeout: float = 60.0,
    workers: int = 1,
    fast_reads: bool = True,
) -> Iterator[RunningServer]:
    """Start `jupyter-features registry serve` on a free port; stop it on exit."""
    import httpx

    port = port or free_port(host)
    log_path = Path(log) if log else Path(os.devnull)
    command = [sys.executable, "-m", "jupyter_features.cli", "registry", "serve", "--store", store_url,
               "--host", host, "--port", str(port), "--log-level", "warning"]  # fmt: skip
    if token_file is not None:
        command += ["--token-file", str(token_file)]
    if workers != 1:
        command += ["--workers", str(workers)]
    if not fast_reads:
        command.append("--framework-reads")
    with open(log_path, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = RunningServer(url=f"http://{host}:{port}", process=process, log=log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RegistryUnavailableError(
                    f"registry server exited with status {process.returncode}: {server.output()[-2000:]}"
                )
            try:
                if httpx.get(f"{server.url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RegistryUnavailableError(f"registry server did not start within {startup_timeout:.0f}s")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
