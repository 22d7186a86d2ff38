"""A real Switchboard server for integration tests: gunicorn + gevent-websocket on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """One server process. ``start()`` migrates the database and waits for /healthz."""

    def __init__(self, database_url: str, log_path: Path, *, port: int | None = None, workers: int = 1, env=None):
        self.database_url = database_url
        self.port = port or free_port()
        self.workers = workers
        self.log_path = log_path
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict:
        env = {
            **os.environ,
            "SWITCHBOARD_ENV": "development",
            "DATABASE_URL": self.database_url,
            "SECRET_KEY": "integration-secret",
            "STATS_INTERVAL_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
            "UPLOAD_DIR": str(self.log_path.parent / f"uploads-{self.log_path.stem}"),
            **self.extra_env,
        }
        env.pop("CI_SKIP", None)
        return env

    def migrate(self) -> None:
        subprocess.run(
            [str(VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
            cwd=ROOT,
            env=self.env(),
            check=True,
            capture_output=True,
        )

    def start(self, *, migrate: bool = True, timeout: float = 20.0, healthy: bool = True) -> LiveServer:
        """``healthy=False`` waits only for /healthz to answer at all (a server on a broken disk)."""
        if migrate:
            self.migrate()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(VENV_BIN / "gunicorn"),
                    "--config",
                    "gunicorn.conf.py",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    str(self.workers),
                    "wsgi:app",
                ],
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; see {self.log_path}")
            try:
                status = requests.get(self.url + "/healthz", timeout=1).status_code
                if status == 200 or (not healthy and status == 503):
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /healthz within {timeout}s; see {self.log_path}")

    def _signal_group(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it lingers."""
        if self.process is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL the whole process group: master and workers die at once."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def worker_pids(self) -> list[int]:
        """The gunicorn workers under this server's master process."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def worker_rss_kb(self) -> int:
        """Resident memory of the workers together, in KiB (Linux /proc)."""
        total = 0
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def stop_all(servers: list[LiveServer]) -> None:
    """Stop servers together: each may take its graceful timeout, and they need not take it in turn."""
    for server in servers:
        server._signal_group(signal.SIGTERM)
    for server in servers:
        server.stop()
