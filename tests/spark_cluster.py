"""A Spark standalone cluster on this machine for the tests: one master and two workers,
each a separate JVM started from pyspark's own jars, sharing nothing with the driver.

The daemons run with a scrubbed environment (no PYTHONPATH, no PYSPARK_PYTHON, another
time zone), so executors are processes of their own with their own working directory,
environment and clock settings: whatever assumes the driver's memory, files or
environment fails here as it would on a real cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

#: The daemons' time zone: far from UTC, so executors that read local time show up.
WORKER_TZ = "Pacific/Kiritimati"  # UTC+14


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class StandaloneCluster:
    """``start()`` a master and ``workers`` workers of ``cores`` cores each; ``stop()`` them all."""

    def __init__(self, workers: int = 2, cores: int = 1, memory: str = "1g") -> None:
        import pyspark

        self.spark_home = Path(pyspark.__file__).parent
        self.folder = Path(tempfile.mkdtemp(prefix="jf-spark-cluster-"))
        self.workers, self.cores, self.memory = workers, cores, memory
        self.port, self.webui_port = free_port(), free_port()
        self.master_url = f"spark://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen[bytes]] = []

    def _environment(self) -> dict[str, str]:
        """What a daemon on another machine would have: no Python path, another time zone."""
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "JAVA_HOME", "USER")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(SPARK_HOME=str(self.spark_home), SPARK_DAEMON_MEMORY="256m", TZ=WORKER_TZ)
        return env

    def _launch(self, name: str, main_class: str, *args: str) -> None:
        # pyspark's own launcher: it sets the classpath and execs the JVM (so the pid is the JVM's)
        command = [str(self.spark_home / "bin" / "spark-class"), main_class, *args]
        log = (self.folder / f"{name}.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                cwd=self.folder,
                start_new_session=True,  # its own group: executors die with it
            )  # fmt: skip
        )

    def start(self, timeout: float = 180.0) -> StandaloneCluster:
        self._launch(
            "master", "org.apache.spark.deploy.master.Master",
            "--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.webui_port),
        )  # fmt: skip
        for i in range(self.workers):
            work_dir = self.folder / f"worker{i}"
            work_dir.mkdir()
            self._launch(
                f"worker{i}", "org.apache.spark.deploy.worker.Worker", self.master_url,
                "--host", "127.0.0.1", "--webui-port", str(free_port()), "--cores", str(self.cores),
                "--memory", self.memory, "--work-dir", str(work_dir),
            )  # fmt: skip
        self._wait_for_workers(timeout)
        return self

    def state(self) -> dict[str, object]:
        """The master's JSON status page (workers, applications)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.webui_port}/json/", timeout=5) as response:
            state: dict[str, object] = json.load(response)
            return state

    def _wait_for_workers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                break
            try:
                if self.state().get("aliveworkers") == self.workers:
                    return
            except OSError:
                pass  # the master is not listening yet
            time.sleep(0.5)
        logs = self.logs()
        self.stop()
        raise RuntimeError(
            f"the Spark standalone cluster did not come up with {self.workers} workers:\n{logs}"
        )

    def logs(self, tail: int = 30) -> str:
        parts = []
        for log in sorted(self.folder.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def stop(self) -> None:
        """Workers first (they stop their executors), then the master; each process group goes."""
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for process in self.processes:
            try:  # executors or Python workers left behind in a group
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.processes.clear()
        shutil.rmtree(self.folder, ignore_errors=True)
