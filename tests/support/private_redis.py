"""A Redis server of a test's own, on a free port, which the test may stop and start at will.

The shared Redis serves other tests at the same time; only a private one can be restarted.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from tests.support import components
from tests.support.live_server import free_port


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.binary = shutil.which("redis-server") or components.missing("redis-server is not installed")
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        # No persistence: a restart comes back empty, as the deployment's Redis does.
        with open(self.directory / f"redis-{self.port}.log", "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                cwd=self.directory,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():
                        return self
                except redis.RedisError:
                    pass
                assert self.process.poll() is None, f"redis-server exited with {self.process.returncode}"
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """SIGKILL: the way a crashed Redis goes, without a goodbye to its clients."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
