"""The benchmark: runs each scenario against Switchboard and the Node reference server, side by side.

Each server runs pinned to core 0 and the Node load generator (bench/loadgen.mjs) to core 1. For
every phase the harness reads the server's and the generator's CPU time from /proc, so a table row
whose generator was saturated is marked as meaningless rather than reported as a server figure.
Results are printed as tables and written as JSON to bench/results/ (or $BENCH_OUTPUT).

Environment: BENCH_SCENARIOS=2,4 picks scenarios; BENCH_QUICK=1 is a short run; BENCH_TINY=1 is
the few-client run of the test suite's smoke test; BENCH_PROFILE=1 samples the Switchboard worker
with py-spy during scenario 2's fastest rate and every rate of scenario 5 (py-spy must be installed in the venv).
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
P99_KNEE_MS = 100.0
POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET_KEY = "bench-secret-key"

SCALES = {
    "full": {
        "idle_levels": [1000, 5000, 10000],
        "idle_users": 1000,
        "room_members": 100,
        "room_rates": [20, 50, 100, 200],
        "big_room_members": 1000,
        "big_room_rates": [5, 10, 20],
        "seconds": 10,
        "ack_seconds": 5,
        "ack_inflight": [1, 16],
        "persist_rooms": 20,
        "persist_rates": [50, 100, 200, 400, 800, 1600],
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
        "room_rates": [50, 200],
        "big_room_members": 1000,
        "big_room_rates": [10],
        "seconds": 3,
        "ack_seconds": 2,
        "ack_inflight": [1, 16],
        "persist_rooms": 10,
        "persist_rates": [100, 400, 1600],
        "persist_seconds": 3,
        "queue_members": 100,
        "queue_rates": [50],
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
        "drain_seconds": 5,
        "official_clients": 2,
    },
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

    @property
    def pid(self) -> int:
        raise NotImplementedError

    def stop(self) -> None:
        stop_process_group(self.process)
        self.process = None

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class SwitchboardServer(Server):
    """gunicorn + gevent-websocket, started as `make run` starts it, on a migrated fresh database."""

    kind = "switchboard"

    def __init__(self, database_url: str, log_path: Path, *, extra_env: dict | None = None):
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
    """bench/reference-server.mjs: the same events on Node's socket.io, state in memory."""

    kind = "reference"

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path

    def start(self) -> ReferenceServer:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["taskset", "-c", SERVER_CPU, "node", str(BENCH / "reference-server.mjs")],
                cwd=ROOT,
                env={**os.environ, "PORT": str(self.port)},
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
    """Every acked message reached every other member exactly once, and nothing else arrived."""
    return (
        traffic["acked"] == traffic["sent"]
        and traffic["missing"] == 0
        and traffic["duplicates"] == 0
        and traffic["unexpected"] == 0
        and traffic["delivered"] == traffic["expected"]
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
            },
            "scenarios": {},
        }

    # -- servers --------------------------------------------------------------

    def switchboard(self, label: str, database_url: str | None = None, extra_env: dict | None = None):
        url = database_url or f"sqlite:///{self.workdir / f'{label}.db'}"
        server = SwitchboardServer(url, self.workdir / f"{label}.log", extra_env=extra_env)
        server.migrate()
        return server.start()

    def servers(self, label: str):
        """Starters for Switchboard on a fresh SQLite file and for the reference, in that order."""
        return (
            lambda: self.switchboard(f"{label}-switchboard"),
            lambda: ReferenceServer(self.workdir / f"{label}-reference.log").start(),
        )

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
                        profile = self.start_profile(label, server, rate, rates)
                        step = generator.call(
                            "traffic",
                            run_id=uuid.uuid4().hex[:8],
                            rooms=[{"name": f"{label}room", "members": indices}],
                            rate=rate,
                            seconds=s["seconds"],
                            drain_seconds=s["drain_seconds"],
                        )
                        step["correct"] = correct(step)
                        if profile is not None:
                            step["profile"] = self.finish_profile(profile)
                        steps.append(step)
                        if not step["drained"]:
                            break  # a backlog would spill into the next, faster step
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
        """(5) Persisted messages in 10-member rooms, rate rising until p99 passes 100 ms."""
        s = self.scale
        room_count, members = s["persist_rooms"], 10
        out = {}
        for start in self.servers("s5"):
            with start() as server:
                users = server.seed_users(room_count * members, "persist")
                steps = []
                acked_messages: list = []
                with self.generator(f"s5-{server.kind}", server) as generator:
                    self.connect_all(generator, server, [u["token"] for u in users], official=s["official_clients"])
                    rooms = []
                    for r in range(room_count):
                        indices = list(range(r * members, (r + 1) * members))
                        joined = generator.call("join", room=f"persist{r}", clients=indices)
                        if joined["joined"] != members:
                            raise RuntimeError(f"join failed: {joined['errors']}")
                        rooms.append({"name": f"persist{r}", "members": indices})
                    for rate in s["persist_rates"]:
                        profile = self.start_profile("s5", server, rate, s["persist_rates"])
                        step = generator.call(
                            "traffic",
                            run_id=uuid.uuid4().hex[:8],
                            rooms=rooms,
                            rate=rate,
                            seconds=s["persist_seconds"],
                            drain_seconds=s["drain_seconds"],
                            return_acked=server.kind == "switchboard",
                        )
                        acked_messages.extend(step.pop("acked_messages", []))
                        step["correct"] = correct(step)
                        if profile is not None:
                            step["profile"] = self.finish_profile(profile)
                        steps.append(step)
                        if step["latency_ms"]["p99"] is None or step["latency_ms"]["p99"] > P99_KNEE_MS:
                            break
                        if not step["correct"] or step["generator_saturated"]:
                            break
                        time.sleep(0.5)
                result = {"rooms": room_count, "members": members, "steps": steps}
                passing = [
                    step["rate"] for step in steps if step["correct"] and step["latency_ms"]["p99"] <= P99_KNEE_MS
                ]
                result["highest_rate_p99_under_100ms"] = max(passing) if passing else None
                if server.kind == "switchboard":
                    result["database_check"] = check_stored(server.database_url, acked_messages)
                out[server.kind] = result
        return out

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
                steps.append(step)
                if not step["drained"]:
                    break  # a backlog would spill into the next, faster step
                time.sleep(0.5)
        return {"servers": len(servers), "steps": steps}

    # -- profiling ------------------------------------------------------------

    def start_profile(self, label: str, server: Server, rate: float, rates: list[float]):
        """py-spy on the Switchboard worker: scenario 2 at its top rate, scenario 5 at every rate."""
        wanted = (label == "s2" and rate == max(rates)) or label == "s5"
        if not (self.profile and wanted and server.kind == "switchboard"):
            return None
        py_spy = shutil.which("py-spy") or str(VENV_BIN / "py-spy")
        if not Path(py_spy).exists():
            print("BENCH_PROFILE=1 needs py-spy (.venv/bin/pip install py-spy); not profiling", file=sys.stderr)
            return None
        output = self.workdir / f"{label}-profile-{rate:g}.txt"
        seconds = self.scale["persist_seconds" if label == "s5" else "seconds"]
        process = subprocess.Popen(
            [py_spy, "record", "--pid", str(server.pid), "--duration", str(int(seconds))]
            + ["--rate", "200", "--format", "raw", "--output", str(output), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return process, output

    def finish_profile(self, profile) -> dict:
        process, output = profile
        process.wait(timeout=60)
        return summarise_profile(output)

    # -- running --------------------------------------------------------------

    SCENARIOS = {
        1: ("idle connections", "scenario_idle"),
        2: ("room of 100 members", "scenario_room"),
        3: ("room of 1000 members", "scenario_big_room"),
        4: ("ack round trips", "scenario_acks"),
        5: ("persisted messages, 10-member rooms", "scenario_persist"),
        6: ("two workers over Redis + PostgreSQL", "scenario_queue"),
    }

    def run(self) -> dict:
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
        self.save()
        return self.results

    def save(self) -> Path:
        path = RESULTS / f"bench-{self.stamp}.json"
        path.write_text(json.dumps(self.results, indent=2))
        return path


def delta(a, b):
    return None if a is None or b is None else round(a - b, 2)


def check_stored(database_url: str, acked_messages: list) -> dict:
    """Every acked message is in the database, under the id its ack gave."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = dict(
                connection.execute(sa.text("SELECT client_id, id FROM messages WHERE client_id IS NOT NULL")).all()
            )
    finally:
        engine.dispose()
    lost = [client_id for message_id, client_id in acked_messages if stored.get(client_id) != message_id]
    return {"acked": len(acked_messages), "stored": len(stored), "lost": len(lost), "lost_examples": lost[:5]}


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


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[fmt(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def traffic_check(step: dict) -> str:
    if step["correct"]:
        return "ok"
    problems = []
    for key in ("missing", "duplicates", "unexpected", "unanswered"):
        if step[key]:
            problems.append(f"{key}={step[key]}")
    errors = sum(step["errors"].values())
    if errors:
        problems.append(f"errors={errors}")
    return ",".join(problems) or "FAIL"


def generator_flag(step: dict) -> str:
    return f"{fmt(100 * step['generator_cpu'], 0)}%" + (" SAT" if step["generator_saturated"] else "")


def traffic_cells(step: dict | None, detailed: bool) -> list:
    if step is None:
        return ["not run"] + ["-"] * (7 if detailed else 6)
    cells = [step["deliveries_per_s"], step["latency_ms"]["p50"]]
    cells += [step["latency_ms"]["p95"]] if detailed else []
    cells += [step["latency_ms"]["p99"], traffic_check(step), f"{fmt(100 * sum(step['server_cpu']), 0)}%"]
    return cells + [others_on_server_core(step), generator_flag(step)]


def others_on_server_core(step: dict) -> str:
    """Share of the server's core taken by processes other than the server under test."""
    busy = step.get("core_busy", {}).get("server_core")
    if busy is None:
        return "-"
    return f"{fmt(100 * max(0.0, busy - sum(step['server_cpu'])), 0)}%"


def traffic_rows(sb_steps: list, ref_steps: list) -> list[list]:
    """One row per rate; a side that stopped early (a backlog at a lower rate) shows "not run"."""
    by_rate: dict = {}
    for side, steps in ((0, sb_steps), (1, ref_steps)):
        for step in steps:
            by_rate.setdefault(step["rate"], [None, None])[side] = step
    rows = []
    for rate, (sb, ref) in sorted(by_rate.items()):
        p99 = ratio(sb["latency_ms"]["p99"], ref["latency_ms"]["p99"], higher_is_better=False) if sb and ref else "-"
        rows.append([rate] + traffic_cells(sb, True) + traffic_cells(ref, False) + [p99])
    return rows


TRAFFIC_HEADERS = [
    "msg/s",
    "SB deliv/s",
    "p50",
    "p95",
    "p99",
    "check",
    "cpu",
    "other",
    "gen",
    "ref deliv/s",
    "p50",
    "p99",
    "check",
    "cpu",
    "other",
    "gen",
    "p99 SB/ref",
]


def report(results: dict) -> str:
    out = [
        f"Switchboard (SB) vs Node socket.io reference (ref); scale {results['meta']['scale']}; "
        f"servers on core {SERVER_CPU}, generator on core {GENERATOR_CPU}; latencies in ms; "
        f"cpu = server share of one core; other = share of the server's core used by other processes; "
        f"gen = generator share (SAT: saturated, figure unreliable); "
        f"load average before {tuple(round(x, 2) for x in results['meta']['loadavg_before'])}"
    ]
    for number, result in results["scenarios"].items():
        title = Bench.SCENARIOS[int(number)][0]
        if number in ("2", "3") and "switchboard" in result:
            title = f"room of {result['switchboard']['members']} members"
        out.append(f"\n({number}) {title}  [{result.get('seconds', '?')} s]")
        if "failed" in result or "not_run" in result:
            out.append("  FAILED: " + result["failed"] if "failed" in result else "  not run: " + result["not_run"])
            continue
        if number == "1":
            rows = []
            for sb, ref in zip(result["switchboard"]["levels"], result["reference"]["levels"], strict=False):
                rows.append(
                    [
                        sb["sockets"],
                        sb["users"],
                        sb["connect_per_s"],
                        sb["kb_per_socket"],
                        sb["rss_kb"] // 1024,
                        sb["still_connected"],
                        generator_flag(sb),
                        ref["connect_per_s"],
                        ref["kb_per_socket"],
                        ref["rss_kb"] // 1024,
                        ref["still_connected"],
                        generator_flag(ref),
                        ratio(sb["kb_per_socket"], ref["kb_per_socket"], higher_is_better=False),
                    ]
                )
            out.append(
                table(
                    ["sockets", "users", "SB conn/s", "KB/sock", "RSS MB", "up", "gen"]
                    + ["ref conn/s", "KB/sock", "RSS MB", "up", "gen", "KB SB/ref"],
                    rows,
                )
            )
        elif number in ("2", "3"):
            out.append(
                table(TRAFFIC_HEADERS, traffic_rows(result["switchboard"]["steps"], result["reference"]["steps"]))
            )
            profile = result["switchboard"]["steps"][-1].get("profile")
            if profile and "own_pct" in profile:
                out.append(f"  py-spy, SB worker at the top rate ({profile['samples']} samples), own time:")
                out += [f"    {pct:5.1f}%  {frame}" for frame, pct in profile["own_pct"][:10]]
        elif number == "4":
            rows = [
                [
                    sb["inflight"],
                    sb["per_s"],
                    sb["latency_ms"]["p50"],
                    sb["latency_ms"]["p99"],
                    sum(sb["errors"].values()),
                ]
                + [ref["per_s"], ref["latency_ms"]["p50"], ref["latency_ms"]["p99"], sum(ref["errors"].values())]
                + [ratio(sb["per_s"], ref["per_s"], higher_is_better=True)]
                for sb, ref in zip(result["switchboard"]["runs"], result["reference"]["runs"], strict=False)
            ]
            out.append(
                table(
                    ["in flight", "SB acks/s", "p50", "p99", "err", "ref acks/s", "p50", "p99", "err", "ref/SB"], rows
                )
            )
        elif number == "5":
            out.append(
                table(TRAFFIC_HEADERS, traffic_rows(result["switchboard"]["steps"], result["reference"]["steps"]))
            )
            sb, ref = result["switchboard"], result["reference"]
            out.append(
                f"  highest rate with p99 <= {P99_KNEE_MS:.0f} ms: SB {fmt(sb['highest_rate_p99_under_100ms'])}, "
                f"ref {fmt(ref['highest_rate_p99_under_100ms'])} msg/s"
            )
            check = sb["database_check"]
            out.append(f"  database: {check['acked']} acked, {check['stored']} stored, {check['lost']} lost")
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
    results = bench.run()
    print(report(results))
    print(f"\nJSON: {bench.save()}")
    return 0 if all("failed" not in r for r in results["scenarios"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
