"""The benchmark: runs each scenario against Switchboard and the Node reference servers, side by side.

Each server runs pinned to core 0 and the Node load generator (bench/loadgen.mjs) to core 1. For
every phase the harness reads the server's and the generator's CPU time from /proc, so a table row
whose generator was saturated is marked as meaningless rather than reported as a server figure.
Two references run in every scenario but the two-worker one: Node socket.io with everything in
memory (``ref``) and the same server persisting to PostgreSQL with ``pg`` (``ref pg``), which acks
each message only after its INSERT committed. Scenario 5 runs Switchboard on SQLite and on a
throwaway PostgreSQL database, with browsers' ``read`` markers. Every target of the speed issue
(``TARGETS``) is printed with the measured figure and "met", "missed" or "not measured".
Results are printed as tables and written as JSON to bench/results/ (or $BENCH_OUTPUT).

Environment: BENCH_SCENARIOS=2,4 picks scenarios; BENCH_QUICK=1 is a short run; BENCH_TINY=1 is
the few-client run of the test suite's smoke test; BENCH_ROOM_RATES=200,500, BENCH_BIG_ROOM_RATES=10,50
and BENCH_PERSIST_RATES=500,2000 replace the rates of scenarios 2, 3 and 5, BENCH_PERSIST_ROOMS=200 the
number of 10-member rooms of scenario 5; BENCH_PROFILE=1 samples
the Switchboard worker with py-spy (requirements-dev.txt) at every rate of scenarios 2, 3 and 5, and
the report prints the summaries.
``run.py --report bench/results/bench-<stamp>.json`` prints the tables of an earlier run again.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
import sqlalchemy as sa

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent
RESULTS = Path(os.environ.get("BENCH_OUTPUT") or BENCH / "results")
SERVER_CPU = os.environ.get("BENCH_SERVER_CPU", "0")
GENERATOR_CPU = os.environ.get("BENCH_GENERATOR_CPU", "1")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Above this share of one core the generator, not the server, may be what limits the figure.
GENERATOR_SATURATED = 0.90
# Scenario 5 raises the rate until the delivery p99 passes this.
P99_KNEE_MS = 100.0
# A step "kept up" (no backlog) when every message was delivered exactly once, the last delivery
# and ack came within BACKLOG_TAIL_MS of the last send, and the delivery p99 stayed under
# BACKLOG_P99_MS: a server that falls behind piles up seconds of both within one step.
BACKLOG_TAIL_MS = 500.0
BACKLOG_P99_MS = 500.0
# Browsers send `read` this long after the last live message of the open room (static/js/chat.js).
READ_DELAY_MS = 200
POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET_KEY = "bench-secret-key"

# Full scale is sized to finish in about 15 minutes on the 2-core machine (see docs/performance.md).
SCALES = {
    "full": {
        "idle_levels": [1000, 5000, 10000],
        "idle_users": 1000,
        "room_members": 100,
        "room_rates": [50, 100, 200, 350, 500],
        "big_room_members": 1000,
        "big_room_rates": [10, 25, 50],
        "seconds": 6,
        "ack_seconds": 4,
        "ack_inflight": [1, 16],
        "persist_rooms": 100,
        "persist_rates": [250, 500, 1000, 2000, 3200],
        "persist_seconds": 5,
        "queue_members": 100,
        "queue_rates": [20, 50, 100],
        "drain_seconds": 10,
        "official_clients": 3,
    },
    "quick": {
        "idle_levels": [500, 1000],
        "idle_users": 500,
        "room_members": 100,
        "room_rates": [100, 200, 500],
        "big_room_members": 1000,
        "big_room_rates": [10, 50],
        "seconds": 3,
        "ack_seconds": 2,
        "ack_inflight": [1, 16],
        "persist_rooms": 50,
        "persist_rates": [500, 2000, 3200],
        "persist_seconds": 3,
        "queue_members": 100,
        "queue_rates": [100],
        "drain_seconds": 5,
        "official_clients": 2,
    },
    "tiny": {
        "idle_levels": [20, 40],
        "idle_users": 20,
        "room_members": 5,
        "room_rates": [10],
        "big_room_members": 12,
        "big_room_rates": [5],
        "seconds": 1.5,
        "ack_seconds": 1,
        "ack_inflight": [1],
        "persist_rooms": 2,
        "persist_rates": [10, 20],
        "persist_seconds": 1,
        "queue_members": 6,
        "queue_rates": [10],
        # Long enough for a crowded machine: a drain ends as soon as everything has arrived.
        "drain_seconds": 20,
        "official_clients": 2,
    },
}

# Environment variables that replace one scale setting (a comma-separated list of rates).
RATE_OVERRIDES = {
    "room_rates": "BENCH_ROOM_RATES",
    "big_room_rates": "BENCH_BIG_ROOM_RATES",
    "persist_rates": "BENCH_PERSIST_RATES",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def core_ticks() -> dict[str, tuple[int, int]]:
    """(busy, total) clock ticks of every core, from /proc/stat."""
    ticks = {}
    with open("/proc/stat") as stat:
        for line in stat:
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                numbers = [int(v) for v in values]
                idle = numbers[3] + numbers[4]
                ticks[name[3:]] = (sum(numbers[:8]) - idle, sum(numbers[:8]))
    return ticks


def busy_share(before: dict, after: dict, cpu: str) -> float | None:
    if cpu not in before or cpu not in after:
        return None
    busy = after[cpu][0] - before[cpu][0]
    total = after[cpu][1] - before[cpu][1]
    return round(busy / total, 3) if total else None


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(child) for child in listing.read().split()]
    except FileNotFoundError:
        return []


def wait_for_health(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {tail(log_path)}")
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer /healthz in {timeout}s: {tail(log_path)}")


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def stop_process_group(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


class Server:
    """A server under test; ``pid`` is the process whose CPU and memory are measured."""

    kind = ""
    process: subprocess.Popen | None = None
    url = ""
    database_url: str | None = None
    # Run once the process has stopped (a throwaway database is dropped this way).
    cleanup: list[Callable[[], None]]

    @property
    def pid(self) -> int:
        raise NotImplementedError

    def stop(self) -> None:
        stop_process_group(self.process)
        self.process = None
        while getattr(self, "cleanup", None):
            self.cleanup.pop()()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class SwitchboardServer(Server):
    """gunicorn + gevent-websocket, started as `make run` starts it, on a migrated fresh database."""

    kind = "switchboard"

    def __init__(self, database_url: str, log_path: Path, *, extra_env: dict | None = None, kind: str = ""):
        self.kind = kind or self.kind
        self.cleanup = []
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.extra_env = extra_env or {}

    def env(self) -> dict:
        env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "REDIS_PREFIX")}
        env.update(
            {
                "SWITCHBOARD_ENV": "production",
                "SECRET_KEY": SECRET_KEY,
                "SESSION_COOKIE_SECURE": "false",
                "DATABASE_URL": self.database_url,
                # The contract's 20 messages per 10 s per user would refuse most of a 200 msg/s run.
                "RATE_LIMIT_COUNT": "100000000",
                # Likewise the flood budgets (a bench sender is one socket) and the cap on
                # handshakes from one address (every bench client connects from 127.0.0.1).
                "SOCKET_EVENT_BURST": "100000000",
                "SOCKET_EVENT_REFILL_PER_SECOND": "100000000",
                "USER_EVENT_BURST": "100000000",
                "USER_EVENT_REFILL_PER_SECOND": "100000000",
                "ANONYMOUS_HANDSHAKES_PER_ADDRESS": "0",
                "WEB_CONCURRENCY": "1",
                "LOG_LEVEL": "warning",
                "PYTHONUNBUFFERED": "1",
                **self.extra_env,
            }
        )
        return env

    def migrate(self) -> None:
        subprocess.run(
            [str(VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
            cwd=ROOT,
            env=self.env(),
            check=True,
            capture_output=True,
        )

    def start(self) -> SwitchboardServer:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["taskset", "-c", SERVER_CPU, str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py"]
                + ["--bind", f"127.0.0.1:{self.port}", "wsgi:app"],
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_health(self.url, self.process, self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int:
        workers = children(self.process.pid)
        if len(workers) != 1:
            raise RuntimeError(f"expected one gunicorn worker, found {workers}")
        return workers[0]

    def seed_users(self, count: int, prefix: str) -> list[dict]:
        """Users with tokens, written by bench/seed_users.py with the server's own settings."""
        done = subprocess.run(
            [sys.executable, str(BENCH / "seed_users.py"), "--count", str(count), "--prefix", prefix],
            cwd=ROOT,
            env=self.env(),
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(done.stdout)["users"]


class ReferenceServer(Server):
    """bench/reference-server.mjs: the same events on Node's socket.io, state in memory, or with
    ``persist`` every message INSERTed into a throwaway PostgreSQL database before its ack."""

    kind = "reference"

    def __init__(self, log_path: Path, *, persist: bool = False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.persist = persist
        self.cleanup = []
        if persist:
            self.kind = "reference_pg"

    def start(self) -> ReferenceServer:
        env = {**os.environ, "PORT": str(self.port)}
        env.pop("DATABASE_URL", None)
        try:
            if self.persist:
                self.database_url = create_postgres_database()
                self.cleanup.append(lambda: drop_postgres_database(self.database_url))
                env["DATABASE_URL"] = self.database_url.replace("postgresql+psycopg://", "postgresql://")
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    ["taskset", "-c", SERVER_CPU, "node", str(BENCH / "reference-server.mjs")],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            wait_for_health(self.url, self.process, self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def seed_users(self, count: int, prefix: str) -> list[dict]:
        """The reference takes any token as the username."""
        return [{"id": None, "username": f"{prefix}{i:06d}", "token": f"{prefix}{i:06d}"} for i in range(count)]


@dataclass
class Generator:
    """The Node load generator, pinned to its own core, driven one JSON command at a time."""

    log_path: Path
    watched: list[Server] = field(default_factory=list)
    process: subprocess.Popen | None = None

    def __enter__(self) -> Generator:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in __exit__
        self.process = subprocess.Popen(
            ["taskset", "-c", GENERATOR_CPU, "node", str(BENCH / "loadgen.mjs")],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.process.stdin.close()
            self.process.wait(timeout=15)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            stop_process_group(self.process)
        self.log.close()

    def call(self, command: str, **args) -> dict:
        """Run one command; the answer carries the CPU each watched server and the generator used."""
        before = {server: cpu_seconds(server.pid) for server in self.watched}
        generator_before = cpu_seconds(self.process.pid)
        cores_before = core_ticks()
        started = time.monotonic()
        self.process.stdin.write(json.dumps({"command": command, **args}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        wall = time.monotonic() - started
        if not line:
            raise RuntimeError(f"load generator exited: {tail(self.log_path)}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"load generator failed on {command}: {answer['error']}")
        generator_share = (cpu_seconds(self.process.pid) - generator_before) / wall
        cores_after = core_ticks()
        answer["wall_seconds"] = round(wall, 3)
        answer["server_cpu"] = [round((cpu_seconds(s.pid) - before[s]) / wall, 3) for s in self.watched]
        answer["generator_cpu"] = round(generator_share, 3)
        answer["generator_saturated"] = generator_share >= GENERATOR_SATURATED
        # How busy each pinned core was in all: what the server and generator did not use went to
        # other processes on the machine, which taskset does not keep off these cores.
        answer["core_busy"] = {
            "server_core": busy_share(cores_before, cores_after, SERVER_CPU),
            "generator_core": busy_share(cores_before, cores_after, GENERATOR_CPU),
        }
        return answer


def correct(traffic: dict) -> bool:
    """Every acked message reached every other member exactly once, nothing else arrived, and
    every `read` marker sent (if any) was answered ok."""
    reads = traffic.get("reads")
    return (
        traffic["acked"] == traffic["sent"]
        and traffic["missing"] == 0
        and traffic["duplicates"] == 0
        and traffic["unexpected"] == 0
        and traffic["delivered"] == traffic["expected"]
        and (reads is None or (reads["ok"] == reads["sent"] and reads["unanswered"] == 0))
    )


def kept_up(step: dict) -> bool:
    """No backlog in this step: correct, drained, and neither the tail nor the p99 piled up."""
    p99 = step["latency_ms"]["p99"]
    return (
        step["correct"]
        and step["drained"]
        and step.get("tail_ms", 0.0) <= BACKLOG_TAIL_MS
        and p99 is not None
        and p99 <= BACKLOG_P99_MS
    )


class Bench:
    def __init__(self, scale: str, scenarios: list[int], profile: bool):
        self.scale_name = scale
        self.scale = SCALES[scale]
        self.scenarios = scenarios
        self.profile = profile
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.workdir = RESULTS / f"run-{self.stamp}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.postgres_missing = postgres_unavailable()
        self.results: dict = {
            "meta": {
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "scale": scale,
                "scenarios": scenarios,
                "host": platform.node(),
                "cpus": os.cpu_count(),
                "loadavg_before": os.getloadavg(),
                "server_cpu": SERVER_CPU,
                "generator_cpu": GENERATOR_CPU,
                "python": platform.python_version(),
                "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
                "commit": subprocess.run(
                    ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
                ).stdout.strip(),
                "postgres_missing": self.postgres_missing,
                "profile": profile,
            },
            "scenarios": {},
        }

    # -- servers --------------------------------------------------------------

    def switchboard(
        self, label: str, database_url: str | None = None, extra_env: dict | None = None, kind: str = ""
    ) -> SwitchboardServer:
        url = database_url or f"sqlite:///{self.workdir / f'{label}.db'}"
        server = SwitchboardServer(url, self.workdir / f"{label}.log", extra_env=extra_env, kind=kind)
        server.migrate()
        return server.start()

    def switchboard_on_postgres(self, label: str) -> SwitchboardServer:
        """Switchboard on a throwaway PostgreSQL database, dropped when the server stops."""
        database_url = create_postgres_database()
        try:
            server = self.switchboard(label, database_url, kind="switchboard_pg")
        except BaseException:
            drop_postgres_database(database_url)
            raise
        server.cleanup.append(lambda: drop_postgres_database(database_url))
        return server

    def servers(self, label: str) -> list[Callable[[], Server]]:
        """Starters for Switchboard on a fresh SQLite file, the in-memory reference and the
        PostgreSQL-persisting reference (when PostgreSQL is reachable), in that order."""
        starters: list[Callable[[], Server]] = [
            lambda: self.switchboard(f"{label}-switchboard"),
            lambda: ReferenceServer(self.workdir / f"{label}-reference.log").start(),
        ]
        if self.postgres_missing is None:
            starters.append(lambda: ReferenceServer(self.workdir / f"{label}-reference_pg.log", persist=True).start())
        return starters

    def generator(self, label: str, *watched: Server) -> Generator:
        return Generator(self.workdir / f"{label}-loadgen.log", list(watched))

    def connect_all(self, generator: Generator, server: Server, tokens: list[str], official: int = 0) -> dict:
        answer = generator.call("connect", url=server.url, tokens=tokens, official=official)
        if answer["failed"]:
            raise RuntimeError(f"{answer['failed']} of {len(tokens)} sockets did not connect: {answer['errors']}")
        return answer

    # -- scenarios ------------------------------------------------------------

    def scenario_idle(self) -> dict:
        """(1) Idle sockets: connect rate and resident memory per socket."""
        s = self.scale
        out = {}
        for start in self.servers("s1"):
            with start() as server:
                users = server.seed_users(s["idle_users"], "idle")
                rows = []
                with self.generator(f"s1-{server.kind}", server) as generator:
                    time.sleep(0.5)
                    baseline = rss_kb(server.pid)
                    connected = 0
                    for level in s["idle_levels"]:
                        tokens = [users[i % len(users)]["token"] for i in range(connected, level)]
                        before = rss_kb(server.pid)
                        answer = self.connect_all(generator, server, tokens)
                        connected = level
                        time.sleep(1.0)  # let the server finish the connect work it queued
                        census = generator.call("census")
                        after = rss_kb(server.pid)
                        rows.append(
                            {
                                "sockets": level,
                                "users": min(level, len(users)),
                                "connect_per_s": round(answer["per_s"], 1),
                                "connect_seconds": round(answer["seconds"], 2),
                                "failed": answer["failed"],
                                "still_connected": census["connected"],
                                "rss_kb": after,
                                "kb_per_socket": round((after - baseline) / level, 1),
                                "kb_per_socket_this_step": round((after - before) / len(tokens), 1),
                                "presence_frames": census["events"].get("presence", 0),
                                "server_cpu": answer["server_cpu"][0],
                                "generator_cpu": answer["generator_cpu"],
                                "generator_saturated": answer["generator_saturated"],
                            }
                        )
                out[server.kind] = {"baseline_rss_kb": baseline, "levels": rows}
        return out

    def room_traffic(self, label: str, members: int, rates: list[float]) -> dict:
        """One room of `members` sockets (a few of them socket.io-client), at each rate in turn."""
        s = self.scale
        out = {}
        for start in self.servers(label):
            with start() as server:
                users = server.seed_users(members, f"{label}m")
                with self.generator(f"{label}-{server.kind}", server) as generator:
                    connected = self.connect_all(
                        generator, server, [u["token"] for u in users], official=s["official_clients"]
                    )
                    indices = list(range(connected["first_index"], connected["first_index"] + members))
                    joined = generator.call("join", room=f"{label}room", clients=indices)
                    if joined["joined"] != members:
                        raise RuntimeError(f"join failed: {joined['errors']}")
                    steps = []
                    for rate in rates:
                        profile = self.start_profile(label, server, rate)
                        step = generator.call(
                            "traffic",
                            run_id=uuid.uuid4().hex[:8],
                            rooms=[{"name": f"{label}room", "members": indices}],
                            rate=rate,
                            seconds=s["seconds"],
                            drain_seconds=s["drain_seconds"],
                        )
                        step["correct"] = correct(step)
                        step["kept_up"] = kept_up(step)
                        if profile is not None:
                            step["profile"] = self.finish_profile(profile)
                        steps.append(step)
                        if not step["kept_up"]:
                            break  # a faster step would only pile onto the backlog
                        time.sleep(0.5)
                out[server.kind] = {
                    "members": members,
                    "connect_per_s": round(connected["per_s"], 1),
                    "join_seconds": round(joined["seconds"], 2),
                    "steps": steps,
                }
        return out

    def scenario_room(self) -> dict:
        """(2) A 100-member room at rising message rates."""
        return self.room_traffic("s2", self.scale["room_members"], self.scale["room_rates"])

    def scenario_big_room(self) -> dict:
        """(3) A 1000-member room at low rates: fan-out cost per message."""
        return self.room_traffic("s3", self.scale["big_room_members"], self.scale["big_room_rates"])

    def scenario_acks(self) -> dict:
        """(4) Acked request/response round trips per second from one client."""
        out = {}
        for start in self.servers("s4"):
            with start() as server:
                users = server.seed_users(1, "acker")
                with self.generator(f"s4-{server.kind}", server) as generator:
                    self.connect_all(generator, server, [users[0]["token"]])
                    runs = [
                        generator.call(
                            "acks",
                            client=0,
                            event="who",
                            payload={},
                            seconds=self.scale["ack_seconds"],
                            inflight=inflight,
                        )
                        for inflight in self.scale["ack_inflight"]
                    ]
                out[server.kind] = {"runs": runs}
        return out

    def scenario_persist(self) -> dict:
        """(5) Persisted messages from many senders in 10-member rooms, with browsers' `read`
        markers, rate rising until p99 passes 100 ms: Switchboard on SQLite and on PostgreSQL,
        and both references."""
        s = self.scale
        out: dict = {"rooms": s["persist_rooms"], "members": 10, "read_delay_ms": READ_DELAY_MS}
        starters: list[tuple[str, Callable[[], Server]]] = [
            ("switchboard", lambda: self.switchboard("s5-switchboard")),
            ("switchboard_pg", lambda: self.switchboard_on_postgres("s5-switchboard_pg")),
            ("reference", lambda: ReferenceServer(self.workdir / "s5-reference.log").start()),
            ("reference_pg", lambda: ReferenceServer(self.workdir / "s5-reference_pg.log", persist=True).start()),
        ]
        for kind, start in starters:
            if kind.endswith("_pg") and self.postgres_missing:
                out[kind] = {"not_run": self.postgres_missing}
                continue
            try:
                with start() as server:
                    out[kind] = self.persist_run(server)
            except Exception as error:  # noqa: BLE001 - one database failing must not lose the others
                out[kind] = {"failed": f"{type(error).__name__}: {error}"}
        return out

    def persist_run(self, server: Server) -> dict:
        s = self.scale
        room_count, members = s["persist_rooms"], 10
        rates = s["persist_rates"]
        users = server.seed_users(room_count * members, "persist")
        steps = []
        acked_messages: list = []
        stored = server.database_url is not None
        label = f"s5-{server.kind}"
        with self.generator(label, server) as generator:
            connected = self.connect_all(generator, server, [u["token"] for u in users], official=s["official_clients"])
            first = connected["first_index"]
            rooms = []
            for r in range(room_count):
                indices = list(range(first + r * members, first + (r + 1) * members))
                joined = generator.call("join", room=f"persist{r}", clients=indices)
                if joined["joined"] != members:
                    raise RuntimeError(f"join failed: {joined['errors']}")
                rooms.append({"name": f"persist{r}", "members": indices})
            for rate in rates:
                profile = self.start_profile(label, server, rate)
                step = generator.call(
                    "traffic",
                    run_id=uuid.uuid4().hex[:8],
                    rooms=rooms,
                    rate=rate,
                    seconds=s["persist_seconds"],
                    drain_seconds=s["drain_seconds"],
                    return_acked=stored,
                    room_choice="random",
                    reads=True,
                    read_delay_ms=READ_DELAY_MS,
                )
                acked_messages.extend(step.pop("acked_messages", []))
                step["correct"] = correct(step)
                step["kept_up"] = kept_up(step)
                if profile is not None:
                    step["profile"] = self.finish_profile(profile)
                steps.append(step)
                if step["latency_ms"]["p99"] is None or step["latency_ms"]["p99"] > P99_KNEE_MS:
                    break
                if not step["correct"] or step["generator_saturated"]:
                    break
                time.sleep(0.5)
        result: dict = {
            "rooms": room_count,
            "members": members,
            "connect_per_s": round(connected["per_s"], 1),
            "steps": steps,
        }
        passing = [step["rate"] for step in steps if step["correct"] and step["latency_ms"]["p99"] <= P99_KNEE_MS]
        result["highest_rate_p99_under_100ms"] = max(passing) if passing else None
        if stored:
            table_name = "ref_messages" if server.kind == "reference_pg" else "messages"
            result["database_check"] = check_stored(server.database_url, acked_messages, table_name)
        return result

    def scenario_queue(self) -> dict:
        """(6) Two Switchboard workers sharing a Redis queue and PostgreSQL, members split across them."""
        s = self.scale
        reason = queue_unavailable()
        if reason:
            return {"not_run": reason}
        database_url = create_postgres_database()
        prefix = f"bench_{uuid.uuid4().hex[:10]}"
        members = s["queue_members"]
        out: dict = {"members": members}
        try:
            # Baseline: one worker on the same PostgreSQL database, no queue.
            single = self.switchboard("s6-single", database_url)
            try:
                users = single.seed_users(members, "queue")
                out["single"] = self.queue_steps("s6-single", [single], users)
            finally:
                single.stop()
            redis_env = {"REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix}
            pair = []
            try:
                for label in ("s6-a", "s6-b"):
                    pair.append(self.switchboard(label, database_url, redis_env))
                out["pair"] = self.queue_steps("s6-pair", pair, users)
            except Exception as error:  # noqa: BLE001 - a queue that does not work yet is reported, not fatal
                out["pair"] = {"not_run": f"{type(error).__name__}: {error}"}
            finally:
                for server in pair:
                    server.stop()
        finally:
            drop_postgres_database(database_url)
            forget_redis_keys(prefix)
        if "steps" in out.get("pair", {}):
            out["added_latency_ms"] = [
                {
                    "rate": one["rate"],
                    "p50": delta(two["latency_ms"]["p50"], one["latency_ms"]["p50"]),
                    "p99": delta(two["latency_ms"]["p99"], one["latency_ms"]["p99"]),
                    "correct": one["correct"] and two["correct"],
                }
                for one, two in zip(out["single"]["steps"], out["pair"]["steps"], strict=False)
            ]
        return out

    def queue_steps(self, label: str, servers: list[Server], users: list[dict]) -> dict:
        """A room whose members are split evenly across `servers`, at each queue rate."""
        s = self.scale
        with self.generator(label, *servers) as generator:
            indices = []
            share = -(-len(users) // len(servers))
            for n, server in enumerate(servers):
                batch = users[n * share : (n + 1) * share]
                answer = self.connect_all(generator, server, [u["token"] for u in batch], official=1)
                indices.extend(range(answer["first_index"], answer["first_index"] + len(batch)))
            joined = generator.call("join", room="queueroom", clients=indices)
            if joined["joined"] != len(indices):
                raise RuntimeError(f"join failed: {joined['errors']}")
            steps = []
            for rate in s["queue_rates"]:
                step = generator.call(
                    "traffic",
                    run_id=uuid.uuid4().hex[:8],
                    rooms=[{"name": "queueroom", "members": indices}],
                    rate=rate,
                    seconds=s["seconds"],
                    drain_seconds=s["drain_seconds"],
                )
                step["correct"] = correct(step)
                step["kept_up"] = kept_up(step)
                steps.append(step)
                if not step["drained"]:
                    break  # a backlog would spill into the next, faster step
                time.sleep(0.5)
        return {"servers": len(servers), "steps": steps}

    # -- profiling ------------------------------------------------------------

    def start_profile(self, label: str, server: Server, rate: float):
        """py-spy on the Switchboard worker at every rate of scenarios 2, 3 and 5 (the report prints
        the profile of the last rate each ran, where it saturated if it did; the JSON keeps all)."""
        wanted = label in ("s2", "s3") or label.startswith("s5")
        if not (self.profile and wanted and server.kind.startswith("switchboard")):
            return None
        py_spy = shutil.which("py-spy") or str(VENV_BIN / "py-spy")
        if not Path(py_spy).exists():
            print("BENCH_PROFILE=1 needs py-spy (pip install -r requirements-dev.txt); not profiling", file=sys.stderr)
            return None
        output = self.workdir / f"{label}-profile-{rate:g}.txt"
        seconds = self.scale["persist_seconds" if label.startswith("s5") else "seconds"]
        process = subprocess.Popen(
            [py_spy, "record", "--pid", str(server.pid), "--duration", str(max(1, int(seconds)))]
            + ["--rate", "200", "--format", "raw", "--output", str(output), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        return process, output

    def finish_profile(self, profile) -> dict:
        process, output = profile
        try:
            _, errors = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, errors = process.communicate()
        summary = summarise_profile(output)
        if "error" in summary and errors:
            summary["error"] += ": " + errors.strip().splitlines()[-1]
        return summary

    # -- running --------------------------------------------------------------

    SCENARIOS = {
        1: ("idle connections", "scenario_idle"),
        2: ("room of 100 members", "scenario_room"),
        3: ("room of 1000 members", "scenario_big_room"),
        4: ("ack round trips", "scenario_acks"),
        5: ("persisted messages from many senders, 10-member rooms, with read markers", "scenario_persist"),
        6: ("two workers over Redis + PostgreSQL", "scenario_queue"),
    }

    def run(self) -> dict:
        began = time.monotonic()
        for number in self.scenarios:
            title, method = self.SCENARIOS[number]
            print(f"== scenario {number}: {title}", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                result = getattr(self, method)()
            except Exception as error:  # noqa: BLE001 - one broken scenario must not lose the others
                result = {"failed": f"{type(error).__name__}: {error}"}
            result["seconds"] = round(time.monotonic() - started, 1)
            self.results["scenarios"][str(number)] = result
            self.save()
        self.results["meta"]["loadavg_after"] = os.getloadavg()
        self.results["meta"]["total_seconds"] = round(time.monotonic() - began, 1)
        self.results["targets"] = evaluate_targets(self.results)
        self.save()
        return self.results

    def save(self) -> Path:
        path = RESULTS / f"bench-{self.stamp}.json"
        path.write_text(json.dumps(self.results, indent=2))
        return path


def delta(a, b):
    return None if a is None or b is None else round(a - b, 2)


def check_stored(database_url: str, acked_messages: list, table_name: str = "messages") -> dict:
    """Every acked message is in the database, under the id its ack gave."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = dict(
                connection.execute(
                    sa.text(f"SELECT client_id, id FROM {table_name} WHERE client_id IS NOT NULL")  # noqa: S608
                ).all()
            )
    finally:
        engine.dispose()
    lost = [client_id for message_id, client_id in acked_messages if stored.get(client_id) != message_id]
    return {"acked": len(acked_messages), "stored": len(stored), "lost": len(lost), "lost_examples": lost[:5]}


def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used for the runs that need it, or None."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3):
            pass
    except Exception as error:  # noqa: BLE001 - any failure means those runs cannot happen
        return f"PostgreSQL unreachable: {error}"
    return None


def queue_unavailable() -> str | None:
    """Why the two-worker scenario cannot run here, or None."""
    probe = subprocess.run(
        [sys.executable, "-c", "import app.services.redis_state"], cwd=ROOT, capture_output=True, text=True
    )
    if probe.returncode != 0:
        return "app.services.redis_state does not import: " + (probe.stderr.strip().splitlines() or ["?"])[-1]
    try:
        import psycopg
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        with psycopg.connect(POSTGRES_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3):
            pass
    except Exception as error:  # noqa: BLE001 - any failure means the scenario cannot run
        return f"Redis or PostgreSQL unreachable: {error}"
    return None


def create_postgres_database() -> str:
    import psycopg

    name = f"sb_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL.replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_postgres_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL.replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def forget_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def summarise_profile(path: Path, top: int = 15) -> dict:
    """Top frames of a py-spy raw (collapsed) profile: by own samples and by inclusive samples."""
    if not path.exists():
        return {"error": "py-spy wrote no profile"}
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        count = int(samples)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def share(counter: Counter) -> list:
        return [[frame, round(100 * n / total, 1)] for frame, n in counter.most_common(top)]

    return {"samples": total, "file": str(path), "own_pct": share(own), "inclusive_pct": share(inclusive)}


# -- the targets of the speed issue -----------------------------------------------

Measured = tuple[str, bool | None]  # the figure as printed, and met (True), missed (False) or not measured (None)


@dataclass(frozen=True)
class Target:
    """One target: what it asks, the scenario that measures it, and how to read it off a result.

    ``measure(scenario_result, server_kind)`` reads the figure of one server; the target is judged
    on ``switchboard`` and the same figure is shown for each of ``references``."""

    scenario: str
    text: str
    measure: Callable[[dict, str], Measured]
    switchboard: str = "switchboard"
    references: tuple[str, ...] = ("reference", "reference_pg")


def side_of(result: dict, kind: str) -> tuple[dict | None, str]:
    """The part of a scenario result for one server, or None and why it is missing."""
    side = result.get(kind)
    if side is None:
        return None, "not run"
    if "failed" in side:
        return None, "failed: " + side["failed"]
    if "not_run" in side:
        return None, "not run: " + side["not_run"]
    return side, ""


def step_kept_up(step: dict) -> bool:
    return step["kept_up"] if "kept_up" in step else kept_up(step)


def backlog_figure(step: dict) -> str:
    return (
        f"backlog at {fmt(step['rate'])} msg/s: {step['deliveries_per_s']:,.0f} deliveries/s, "
        f"p99 {fmt(step['latency_ms']['p99'])} ms, tail {fmt(step.get('tail_ms'), 0)} ms, {traffic_check(step)}"
    )


def p99_at(rate: float, limit_ms: float) -> Callable[[dict, str], Measured]:
    def measure(result: dict, kind: str) -> Measured:
        side, why = side_of(result, kind)
        if side is None:
            return why, None
        step = next((st for st in side["steps"] if st["rate"] == rate), None)
        if step is None:
            behind = [st for st in side["steps"] if st["rate"] < rate and not step_kept_up(st)]
            if behind:
                return backlog_figure(behind[0]) + f"; {fmt(rate)} msg/s not reached", False
            return f"{fmt(rate)} msg/s not in this run", None
        p99 = step["latency_ms"]["p99"]
        if not step["correct"]:
            return f"p99 {fmt(p99)} ms, delivery check {traffic_check(step)}", False
        return f"p99 {fmt(p99)} ms", p99 is not None and p99 <= limit_ms

    return measure


def no_backlog_up_to(rate: float) -> Callable[[dict, str], Measured]:
    def measure(result: dict, kind: str) -> Measured:
        side, why = side_of(result, kind)
        if side is None:
            return why, None
        steps = [st for st in side["steps"] if st["rate"] <= rate]
        behind = [st for st in steps if not step_kept_up(st)]
        if behind:
            return backlog_figure(behind[0]), False
        top = next((st for st in steps if st["rate"] == rate), None)
        if top is None:
            reached = max((st["rate"] for st in steps), default=None)
            return f"kept up to {fmt(reached)} msg/s; {fmt(rate)} msg/s not in this run", None
        return (
            f"no backlog up to {fmt(rate)} msg/s: {top['deliveries_per_s']:,.0f} deliveries/s, "
            f"p99 {fmt(top['latency_ms']['p99'])} ms",
            True,
        )

    return measure


def persisted(rate: float) -> Callable[[dict, str], Measured]:
    def measure(result: dict, kind: str) -> Measured:
        side, why = side_of(result, kind)
        if side is None:
            return why, None
        steps = side["steps"]
        good = [
            st
            for st in steps
            if st["correct"] and st["latency_ms"]["p99"] is not None and st["latency_ms"]["p99"] <= P99_KNEE_MS
        ]
        best = max(good, key=lambda st: st["rate"], default=None)
        check = side.get("database_check")
        lost = check["lost"] if check else 0
        loss = f", {lost} of {check['acked']} acked lost" if check else ""
        reads = best.get("reads") if best else None
        read_rate = f", {reads['per_s_while_sending']:,.0f} reads/s" if reads else ""
        if best is None:
            first = steps[0] if steps else None
            figure = (
                f"none: at {fmt(first['rate'])} msg/s p99 {fmt(first['latency_ms']['p99'])} ms, {traffic_check(first)}"
                if first
                else "no step ran"
            )
            return figure + loss, False
        figure = f"{fmt(best['rate'])} msg/s with p99 {fmt(best['latency_ms']['p99'])} ms{read_rate}{loss}"
        if lost:
            return figure, False
        if best["rate"] >= rate:
            return figure, True
        if len(good) == len(steps):
            return figure + f" ({fmt(rate)} msg/s not tried)", None
        return figure, False

    return measure


def idle_sockets(sockets: int, field_name: str, limit: float, at_most: bool) -> Callable[[dict, str], Measured]:
    def measure(result: dict, kind: str) -> Measured:
        side, why = side_of(result, kind)
        if side is None:
            return why, None
        unit = "KB per socket" if field_name == "kb_per_socket" else "connects/s"
        level = next((lv for lv in side["levels"] if lv["sockets"] == sockets), None)
        if level is None:
            last = side["levels"][-1] if side["levels"] else None
            seen = f" (at {last['sockets']:,} sockets: {fmt(last[field_name])} {unit})" if last else ""
            return f"{sockets:,} sockets not in this run{seen}", None
        value = level[field_name]
        figure = f"{fmt(value)} {unit} at {sockets:,} sockets"
        if level["still_connected"] != sockets or level["failed"]:
            return figure + f", only {level['still_connected']:,} still connected", False
        return figure, value <= limit if at_most else value >= limit

    return measure


def redis_added_p50(rate: float, limit_ms: float) -> Callable[[dict, str], Measured]:
    def measure(result: dict, kind: str) -> Measured:
        if "not_run" in result:
            return "not run: " + result["not_run"], None
        if "not_run" in result.get("pair", {}):
            return "two workers not run: " + result["pair"]["not_run"], None
        added = next((row for row in result.get("added_latency_ms", []) if row["rate"] == rate), None)
        if added is None:
            return f"{fmt(rate)} msg/s not in this run", None
        one = next(st for st in result["single"]["steps"] if st["rate"] == rate)
        two = next(st for st in result["pair"]["steps"] if st["rate"] == rate)
        figure = (
            f"{added['p50']:+.1f} ms p50 (1 worker {fmt(one['latency_ms']['p50'])}, "
            f"2 workers {fmt(two['latency_ms']['p50'])})"
        )
        if not (one["correct"] and two["correct"]):
            return figure + f", delivery check {traffic_check(one)} / {traffic_check(two)}", False
        return figure, added["p50"] is not None and added["p50"] <= limit_ms

    return measure


def acks_per_second(limit: float) -> Callable[[dict, str], Measured]:
    def measure(result: dict, kind: str) -> Measured:
        side, why = side_of(result, kind)
        if side is None:
            return why, None
        clean = [run for run in side["runs"] if not run["errors"] and not run["timed_out"]]
        if not clean:
            return "every run had errors", False
        best = max(clean, key=lambda run: run["per_s"])
        return f"{best['per_s']:,.0f}/s ({best['inflight']} in flight)", best["per_s"] >= limit

    return measure


# The targets of the speed issue (one gevent worker pinned to one core, every message persisted,
# the same run as the references), in the order.
TARGETS: tuple[Target, ...] = (
    Target("2", "100-member room: p99 <= 15 ms at 200 msg/s", p99_at(200, 15.0)),
    Target("2", "100-member room: no backlog up to 500 msg/s (50,000 deliveries/s)", no_backlog_up_to(500)),
    Target("3", "1000-member room: p99 <= 30 ms at 10 msg/s", p99_at(10, 30.0)),
    Target("3", "1000-member room: no backlog at 50 msg/s", no_backlog_up_to(50)),
    Target(
        "5",
        "SQLite: >= 2,000 acked msg/s, p99 <= 100 ms, zero loss (10-member rooms, read markers)",
        persisted(2000),
    ),
    Target(
        "5",
        "PostgreSQL: >= 2,000 acked msg/s, p99 <= 100 ms, zero loss (10-member rooms, read markers)",
        persisted(2000),
        switchboard="switchboard_pg",
    ),
    Target("1", "10,000 idle sockets at <= 30 KB each", idle_sockets(10000, "kb_per_socket", 30.0, at_most=True)),
    Target(
        "1",
        ">= 1,000 connects/s (the step to 10,000 sockets)",
        idle_sockets(10000, "connect_per_s", 1000.0, at_most=False),
    ),
    Target("6", "Redis between two workers adds <= 1 ms p50 at 100 msg/s", redis_added_p50(100, 1.0), references=()),
    Target("4", ">= 5,000 acked round trips/s from one client", acks_per_second(5000.0)),
)


def evaluate_targets(results: dict) -> list[dict]:
    """Every target with Switchboard's figure, its status, and the references' figures."""
    rows = []
    for target in TARGETS:
        result = results["scenarios"].get(target.scenario)
        row: dict = {"scenario": target.scenario, "target": target.text, "references": {}}
        if result is None:
            row.update(figure=f"scenario {target.scenario} not in this run", status="not run")
        elif "failed" in result or ("not_run" in result and target.scenario != "6"):
            row.update(figure=result.get("failed") or result.get("not_run"), status="not run")
        else:
            figure, met = target.measure(result, target.switchboard)
            status = "met" if met else "missed" if met is False else "not measured"
            row.update(figure=figure, status=status)
            for kind in target.references:
                row["references"][kind] = target.measure(result, kind)[0]
        rows.append(row)
    return rows


# -- the printed report ---------------------------------------------------------


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def ratio(ours, theirs, higher_is_better: bool) -> str:
    if not ours or not theirs:
        return "-"
    return f"{(theirs / ours if higher_is_better else ours / theirs):.1f}x"


def table(headers: list[str], rows: list[list], left: int = 0) -> str:
    """Columns right-aligned, the first ``left`` of them left-aligned."""
    cells = [[fmt(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(
            (v.ljust(w) if i < left else v.rjust(w)) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers)] + [line(row) for row in cells])


def traffic_check(step: dict) -> str:
    if step["correct"]:
        return "ok" if step_kept_up(step) else "backlog"
    problems = []
    for key in ("missing", "duplicates", "unexpected", "unanswered"):
        if step[key]:
            problems.append(f"{key}={step[key]}")
    errors = sum(step["errors"].values())
    if errors:
        problems.append(f"errors={errors}")
    reads = step.get("reads")
    if reads and reads["unanswered"]:
        problems.append(f"reads unanswered={reads['unanswered']}")
    if reads and reads["errors"]:
        problems.append(f"read errors={sum(reads['errors'].values())}")
    return ",".join(problems) or "FAIL"


def generator_flag(step: dict) -> str:
    return f"{fmt(100 * step['generator_cpu'], 0)}%" + (" SAT" if step["generator_saturated"] else "")


def cpu_share(step: dict) -> str:
    return f"{fmt(100 * sum(step['server_cpu']), 0)}%"


def others_on_server_core(step: dict) -> str:
    """Share of the server's core taken by processes other than the server under test."""
    busy = step.get("core_busy", {}).get("server_core")
    if busy is None:
        return "-"
    return f"{fmt(100 * max(0.0, busy - sum(step['server_cpu'])), 0)}%"


def sb_cells(step: dict | None, reads: bool) -> list:
    width = 10 + (2 if reads else 0)
    if step is None:
        return ["not run"] + ["-"] * (width - 1)
    latency = step["latency_ms"]
    cells = [step["deliveries_per_s"], latency["p50"], latency["p95"], latency["p99"], step["ack_ms"]["p99"]]
    if reads:
        read = step.get("reads") or {}
        cells += [read.get("per_s_while_sending"), (read.get("ack_ms") or {}).get("p99")]
    return cells + [
        step.get("tail_ms"),
        traffic_check(step),
        cpu_share(step),
        others_on_server_core(step),
        generator_flag(step),
    ]


def ref_cells(step: dict | None) -> list:
    if step is None:
        return ["not run", "-", "-", "-", "-"]
    return [
        step["latency_ms"]["p50"],
        step["latency_ms"]["p99"],
        traffic_check(step),
        cpu_share(step),
        generator_flag(step),
    ]


def traffic_table(result: dict, switchboard: str = "switchboard", reads: bool = False) -> str:
    """One row per rate: Switchboard in detail, then each reference; a side that stopped early
    (a backlog at a lower rate) or did not run shows "not run"."""
    kinds = [switchboard, "reference", "reference_pg"]
    by_rate: dict = {}
    for n, kind in enumerate(kinds):
        side, _ = side_of(result, kind)
        for step in side["steps"] if side else []:
            by_rate.setdefault(step["rate"], [None] * len(kinds))[n] = step
    rows = []
    for rate, (sb, ref, ref_pg) in sorted(by_rate.items()):
        rows.append([rate] + sb_cells(sb, reads) + ref_cells(ref) + ref_cells(ref_pg))
    headers = ["msg/s", "SB deliv/s", "p50", "p95", "p99", "ack p99"]
    headers += ["reads/s", "read p99"] if reads else []
    headers += ["tail", "check", "cpu", "other", "gen"]
    headers += ["ref p50", "p99", "check", "cpu", "gen", "ref pg p50", "p99", "check", "cpu", "gen"]
    lines = [table(headers, rows)]
    for kind in kinds:
        side, why = side_of(result, kind)
        if side is None:
            lines.append(f"  {SERVER_NAMES[kind]}: {why}")
    return "\n".join(lines)


SERVER_NAMES = {
    "switchboard": "SB",
    "switchboard_pg": "SB on PostgreSQL",
    "reference": "ref (Node, in memory)",
    "reference_pg": "ref pg (Node + pg, INSERT committed before the ack)",
}


def profile_lines(label: str, profile: dict | None, top: int = 10) -> list[str]:
    if not profile:
        return []
    if "own_pct" not in profile:
        return [f"  py-spy, {label}: {profile.get('error', 'no profile')}"]
    lines = [f"  py-spy, {label} ({profile['samples']} samples, {profile['file']}):"]
    lines.append("    own time:")
    lines += [f"      {pct:5.1f}%  {frame}" for frame, pct in profile["own_pct"][:top]]
    lines.append("    inclusive:")
    lines += [f"      {pct:5.1f}%  {frame}" for frame, pct in profile["inclusive_pct"][:top]]
    return lines


def targets_report(rows: list[dict]) -> str:
    """Each target on one line (status, scenario, target, Switchboard's figure), the references'
    figures for the same target on the next."""
    width = max(len(row["status"]) for row in rows)
    lines = []
    for row in rows:
        lines.append(f"  {row['status'].upper().ljust(width)}  ({row['scenario']}) {row['target']}: {row['figure']}")
        references = "; ".join(
            f"{SERVER_NAMES[kind].split(' (')[0]}: {figure}" for kind, figure in row["references"].items()
        )
        if references:
            lines.append(f"  {' ' * width}      {references}")
    counts = Counter(row["status"] for row in rows)
    summary = ", ".join(f"{counts[s]} {s}" for s in ("met", "missed", "not measured", "not run") if counts[s])
    return "\n".join(lines + [f"  {summary}"])


def report(results: dict) -> str:
    meta = results["meta"]
    out = [
        f"Switchboard (SB) vs Node socket.io references: ref (in memory) and ref pg (persisting to PostgreSQL); "
        f"scale {meta['scale']}; commit {meta.get('commit', '?')}; "
        f"servers on core {meta.get('server_cpu', SERVER_CPU)}, generator on core {meta.get('generator_cpu', GENERATOR_CPU)}; "
        f"latencies in ms; tail = ms from the last send to the last delivery or ack; "
        f"check: ok, backlog (tail or p99 over {BACKLOG_TAIL_MS:.0f} ms) or what went wrong; "
        f"cpu = server share of one core; other = share of the server's core used by other processes; "
        f"gen = generator share (SAT: saturated, figure unreliable); "
        f"load average before {tuple(round(x, 2) for x in meta['loadavg_before'])}"
    ]
    if meta.get("postgres_missing"):
        out.append(f"PostgreSQL runs skipped: {meta['postgres_missing']}")
    for number, result in results["scenarios"].items():
        title = Bench.SCENARIOS[int(number)][0]
        if number in ("2", "3") and "switchboard" in result and "members" in result["switchboard"]:
            title = f"room of {result['switchboard']['members']} members"
        out.append(f"\n({number}) {title}  [{result.get('seconds', '?')} s]")
        if "failed" in result or ("not_run" in result and number != "5"):
            out.append("  FAILED: " + result["failed"] if "failed" in result else "  not run: " + result["not_run"])
            continue
        if number == "1":
            kinds = ["switchboard", "reference", "reference_pg"]
            levels = {kind: (side_of(result, kind)[0] or {"levels": []})["levels"] for kind in kinds}
            rows = []
            for n, sb in enumerate(levels["switchboard"]):
                row = [sb["sockets"], sb["users"], sb["connect_per_s"], sb["kb_per_socket"], sb["rss_kb"] // 1024]
                row += [sb["still_connected"], generator_flag(sb)]
                for kind in kinds[1:]:
                    ref = levels[kind][n] if n < len(levels[kind]) else None
                    row += [ref["connect_per_s"], ref["kb_per_socket"], ref["still_connected"]] if ref else ["-"] * 3
                rows.append(row)
            out.append(
                table(
                    ["sockets", "users", "SB conn/s", "KB/sock", "RSS MB", "up", "gen"]
                    + ["ref conn/s", "KB/sock", "up", "ref pg conn/s", "KB/sock", "up"],
                    rows,
                )
            )
        elif number in ("2", "3"):
            out.append(traffic_table(result))
            sb, _ = side_of(result, "switchboard")
            if sb and sb["steps"]:
                out += profile_lines(f"SB at {fmt(sb['steps'][-1]['rate'])} msg/s", sb["steps"][-1].get("profile"))
        elif number == "4":
            kinds = ["switchboard", "reference", "reference_pg"]
            runs = {kind: (side_of(result, kind)[0] or {"runs": []})["runs"] for kind in kinds}
            rows = []
            for n, sb in enumerate(runs["switchboard"]):
                row = [
                    sb["inflight"],
                    sb["per_s"],
                    sb["latency_ms"]["p50"],
                    sb["latency_ms"]["p99"],
                    sum(sb["errors"].values()),
                ]
                for kind in kinds[1:]:
                    ref = runs[kind][n] if n < len(runs[kind]) else None
                    row += [ref["per_s"], ref["latency_ms"]["p99"], sum(ref["errors"].values())] if ref else ["-"] * 3
                rows.append(row)
            out.append(
                table(
                    [
                        "in flight",
                        "SB acks/s",
                        "p50",
                        "p99",
                        "err",
                        "ref acks/s",
                        "p99",
                        "err",
                        "ref pg acks/s",
                        "p99",
                        "err",
                    ],
                    rows,
                )
            )
        elif number == "5":
            out.append(
                f"  {result.get('rooms', '?')} rooms of {result.get('members', 10)} members, each message to a random room, "
                f"every client sending `read` {result.get('read_delay_ms', READ_DELAY_MS)} ms after the last message it saw "
                f"(reads/s: sent while messages were being sent; read p99: its ack)"
            )
            for kind, name in (("switchboard", "SQLite"), ("switchboard_pg", "PostgreSQL")):
                out.append(f"  Switchboard on {name}:")
                out.append(traffic_table(result, switchboard=kind, reads=True))
            knees = []
            for kind in ("switchboard", "switchboard_pg", "reference", "reference_pg"):
                side, why = side_of(result, kind)
                knees.append(
                    f"{SERVER_NAMES[kind].split(' (')[0]} {fmt(side['highest_rate_p99_under_100ms']) if side else '-'}"
                )
            out.append(f"  highest rate with p99 <= {P99_KNEE_MS:.0f} ms (msg/s): " + ", ".join(knees))
            for kind in ("switchboard", "switchboard_pg", "reference_pg"):
                side, _ = side_of(result, kind)
                check = side.get("database_check") if side else None
                if check:
                    out.append(
                        f"  database, {SERVER_NAMES[kind].split(' (')[0]}: {check['acked']} acked, "
                        f"{check['stored']} stored, {check['lost']} lost"
                    )
            for kind in ("switchboard", "switchboard_pg"):
                side, _ = side_of(result, kind)
                for step in side["steps"] if side else []:
                    out += profile_lines(
                        f"{SERVER_NAMES[kind]} at {fmt(step['rate'])} msg/s", step.get("profile"), top=8
                    )
        elif number == "6":
            single, pair = result["single"], result["pair"]
            if "not_run" in pair:
                out.append("  two workers not run: " + pair["not_run"])
                continue
            rows = []
            for one, two, added in zip(single["steps"], pair["steps"], result["added_latency_ms"], strict=False):
                rows.append(
                    [one["rate"], one["latency_ms"]["p50"], one["latency_ms"]["p99"], traffic_check(one)]
                    + [two["latency_ms"]["p50"], two["latency_ms"]["p99"], traffic_check(two)]
                    + [added["p50"], added["p99"], generator_flag(two)]
                )
            out.append(
                table(
                    [
                        "msg/s",
                        "1 worker p50",
                        "p99",
                        "check",
                        "2 workers p50",
                        "p99",
                        "check",
                        "added p50",
                        "p99",
                        "gen",
                    ],
                    rows,
                )
            )
    if "total_seconds" in meta:
        out.append(
            f"\nTotal {meta['total_seconds']:.0f} s; load average after "
            f"{tuple(round(x, 2) for x in meta['loadavg_after'])}"
        )
    out.append("\nTargets (one gevent worker on one core, every message persisted):")
    out.append(targets_report(evaluate_targets(results)))
    return "\n".join(out)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        print(report(json.loads(Path(sys.argv[2]).read_text())))
        return 0
    scale = (
        "tiny" if os.environ.get("BENCH_TINY") == "1" else "quick" if os.environ.get("BENCH_QUICK") == "1" else "full"
    )
    chosen = os.environ.get("BENCH_SCENARIOS", "1,2,3,4,5,6")
    scenarios = sorted({int(part) for part in chosen.split(",") if part.strip()})
    unknown = [n for n in scenarios if n not in Bench.SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {unknown}; choose from 1-6", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    bench = Bench(scale, scenarios, profile=os.environ.get("BENCH_PROFILE") == "1")
    if os.environ.get("BENCH_PERSIST_ROOMS"):
        bench.scale = {**bench.scale, "persist_rooms": int(os.environ["BENCH_PERSIST_ROOMS"])}
    for key, variable in RATE_OVERRIDES.items():
        if os.environ.get(variable):
            bench.scale = {
                **bench.scale,
                key: [
                    float(part) if "." in part else int(part)
                    for part in os.environ[variable].split(",")
                    if part.strip()
                ],
            }
    results = bench.run()
    print(report(results))
    print(f"\nJSON: {bench.save()}")
    return 0 if all("failed" not in r for r in results["scenarios"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
