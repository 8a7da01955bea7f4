"""A real Redis Cluster on loopback ports for the tests: ``redis-server --cluster-enabled yes`` per
node and ``redis-cli --cluster create``, every process stopped at the end whatever happened."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def _free_ports(n: int) -> list[int]:
    """``n`` free loopback ports whose cluster bus ports (port + 10000) are free too."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{name} is not installed; CI needs it for the Redis Cluster tests", pytrace=False)
        pytest.skip(f"{name} is not installed")
    return found


class LocalRedisCluster:
    """``masters`` primaries (each with ``replicas`` replicas) in ``folder``; ``url`` for the store."""

    def __init__(
        self, folder: Path, *, masters: int = 3, replicas: int = 1, full_coverage: bool = True
    ) -> None:
        self.folder = folder
        self.masters = masters
        self.replicas = replicas
        self.full_coverage = full_coverage
        self.ports = _free_ports(masters * (1 + replicas))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:2])

    def start(self) -> LocalRedisCluster:
        server, cli = _binary("redis-server"), _binary("redis-cli")
        try:
            for port in self.ports:
                self._start_node(server, port)
            for port in self.ports:
                self._wait_port(port)
            create = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                      "--cluster-replicas", str(self.replicas), "--cluster-yes"]  # fmt: skip
            done = subprocess.run(create, capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                raise RuntimeError(
                    f"redis-cli --cluster create failed: {done.stdout[-2000:]} {done.stderr[-2000:]}"
                )
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, server: str, port: int) -> None:
        node_dir = self.folder / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", str(node_dir / "nodes.conf"), "--cluster-node-timeout", "1000",
             "--cluster-require-full-coverage", "yes" if self.full_coverage else "no",
             "--save", "", "--appendonly", "no", "--dir", str(node_dir), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def _wait_port(self, port: int) -> None:
        for _ in range(500):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    return
            except OSError:
                if self.procs[port].poll() is not None:
                    raise RuntimeError(f"redis-server on port {port} exited at start") from None
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {port} did not start")

    def info(self, port: int, section: str) -> dict[str, str]:
        cli = _binary("redis-cli")
        out = subprocess.run(
            [cli, "-p", str(port), section, *(["info"] if section == "cluster" else [])],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node says ``cluster_state:ok`` and each primary has its replicas."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [p for p, proc in self.procs.items() if proc.poll() is None]
            states = [self.info(p, "cluster").get("cluster_state", "").strip() for p in live]
            if states and all(s == "ok" for s in states):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the Redis Cluster on ports {self.ports} did not reach cluster_state:ok")

    def primaries(self) -> list[int]:
        """Ports of the running primaries."""
        out = []
        for port, proc in self.procs.items():
            if proc.poll() is None:
                role = self.info(port, "info").get("role", "").strip()
                if role == "master":
                    out.append(port)
        return out

    def kill(self, port: int) -> None:
        """SIGKILL one node (no goodbye to its clients or its peers)."""
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait()
