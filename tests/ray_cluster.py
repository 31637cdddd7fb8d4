"""A genuine multi-node Ray cluster on loopback for tests: ``ray start --head`` plus more
``ray start --address`` nodes (each with its own CPUs, custom resources and a small object
store), all with one private ``--temp-dir``; ``stop()`` ends exactly the processes of that
cluster, found by PID (every process whose command line names the temp dir, and their
descendants), never by name, so other Ray instances on the machine are left alone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
OBJECT_STORE = 80 * 2 ** 20  # bytes: the smallest Ray accepts is 75 MiB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _procs() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line and the paths of its open files) of every process (from
    /proc): Ray's agents retitle themselves (``ray::DashboardAgent``), but their log files stay
    open in the session folder, under the temp dir."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        files = []
        try:
            for fd in (d / "fd").iterdir():
                try:
                    files.append(os.readlink(fd))
                except OSError:
                    pass
        except OSError:
            pass
        out[int(d.name)] = (ppid, " ".join([cmd, *files]))
    return out


def processes_of(temp_dir: str, port: int | None = None) -> list[int]:
    """Every process of the Ray instance whose temp dir is ``temp_dir`` (and of the Ray-client
    server on ``port``), with their descendants."""
    procs = _procs()
    roots = {pid for pid, (_, cmd) in procs.items() if pid != os.getpid() and (
        temp_dir in cmd or (port is not None and "ray.util.client.server" in cmd and f":{port} " in cmd + " "))}
    found, frontier = set(roots), set(roots)
    while frontier:
        frontier = {pid for pid, (ppid, _) in procs.items() if ppid in frontier and pid not in found}
        found |= frontier
    return sorted(found)


def kill_all(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL what is left after 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        if not any(_alive(p) for p in pids):
            return


class LocalCluster:
    def __init__(self):
        self.temp_dir = tempfile.mkdtemp(prefix="fmray-", dir="/tmp")  # short: Ray's socket paths have a limit
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                    "OMP_NUM_THREADS": "1", "RAY_TMPDIR": self.temp_dir}

    def _start(self, args: list[str]) -> None:
        cmd = [RAY, "start", "--node-ip-address", "127.0.0.1", "--temp-dir", self.temp_dir,
               "--object-store-memory", str(OBJECT_STORE), "--disable-usage-stats", *args]
        res = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=180)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")

    def start_head(self, num_cpus: int, resources: dict[str, float] | None = None) -> None:
        self._start(["--head", "--port", str(self.port), "--num-cpus", str(num_cpus), "--include-dashboard", "false",
                     "--resources", json.dumps(resources or {})])

    def add_node(self, num_cpus: int, resources: dict[str, float] | None = None) -> None:
        self._start(["--address", self.address, "--num-cpus", str(num_cpus), "--resources",
                     json.dumps(resources or {})])

    def pids(self) -> list[int]:
        return processes_of(self.temp_dir, self.port)

    def stop(self) -> None:
        kill_all(self.pids())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
