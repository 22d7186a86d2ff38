"""Search latency and socket upload throughput, Switchboard only (`make bench` runs it after run.py).

Search: 100,000 messages in a fresh SQLite database migrated with `flask db upgrade` (so the FTS5
index is the migration's), then queries of one to three common words through the service, as the
`search` event runs them; p50 and p99 in milliseconds.

Uploads: one real gunicorn + gevent-websocket server, python-socketio clients over websocket, each
sending 100 KB PNG images with the `upload` event and waiting for each ack; uploads per second and
MB per second over the whole run.

Environment: BENCH_TINY=1 is the smoke-test scale; BENCH_OUTPUT is where the JSON goes
(default bench/results/).
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import sqlalchemy as sa

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent
RESULTS = Path(os.environ.get("BENCH_OUTPUT") or BENCH / "results")
TINY = os.environ.get("BENCH_TINY") == "1"
MESSAGES = 2_000 if TINY else 100_000
QUERIES = 20 if TINY else 500
UPLOAD_CLIENTS = 1 if TINY else 4
UPLOADS_EACH = 3 if TINY else 50
IMAGE_BYTES = 100 * 1024

sys.path.insert(0, str(ROOT))

VOCABULARY = (
    "deploy release train meeting budget draft lunch noon review alert pager incident design "
    "customer invoice backlog sprint retro roadmap hiring launch metrics dashboard outage patch "
    "coffee friday weekend travel visa office remote laptop keyboard monitor server database "
    "cache queue socket thread memory disk network latency throughput zoë café naïve résumé"
)
WORDS = VOCABULARY.split()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def server_env(database_url: str, upload_dir: str) -> dict:
    return {
        **os.environ,
        "SWITCHBOARD_ENV": "development",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "bench-secret",
        "UPLOAD_DIR": upload_dir,
        "RATE_LIMIT_COUNT": "1000000",
        "STATS_INTERVAL_SECONDS": "60",
    }


def migrate(env: dict) -> None:
    subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True
    )


def bench_search(directory: Path) -> dict:
    database_url = f"sqlite:///{directory / 'search.db'}"
    migrate(server_env(database_url, str(directory / "uploads")))
    os.environ["SWITCHBOARD_ENV"] = "development"
    os.environ["SECRET_KEY"] = "bench-secret"
    from app import create_app
    from app.extensions import db
    from app.models import Room, utcnow
    from app.services import search, users

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "UPLOAD_DIR": str(directory / "uploads")})
    rng = random.Random(7)
    with app.app_context():
        user = users.register_user("searcher", "bench-password-1")
        general = db.session.scalar(sa.select(Room.id).where(Room.name == "general"))
        table = sa.table(
            "messages",
            sa.column("room_id"),
            sa.column("sender_id"),
            sa.column("body"),
            sa.column("created_at"),
            sa.column("deleted"),
            sa.column("rev"),
        )
        started = time.monotonic()
        batch = 5_000
        for first in range(0, MESSAGES, batch):
            rows = [
                {
                    "room_id": general,
                    "sender_id": user.id,
                    "body": " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16))),
                    "created_at": utcnow(),
                    "deleted": False,
                    "rev": first + offset + 1,
                }
                for offset in range(min(batch, MESSAGES - first))
            ]
            db.session.execute(sa.insert(table), rows)
            db.session.commit()
        indexed_seconds = time.monotonic() - started
        timings: list[float] = []
        found: list[int] = []
        for _ in range(QUERIES):
            query = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
            begin = time.perf_counter()
            result = search.search_messages(user, query, limit=20)
            timings.append((time.perf_counter() - begin) * 1000)
            found.append(len(result))
        db.session.remove()
        db.engine.dispose()
    return {
        "messages": MESSAGES,
        "queries": QUERIES,
        "insert_and_index_seconds": round(indexed_seconds, 2),
        "p50_ms": round(percentile(timings, 0.50), 2),
        "p99_ms": round(percentile(timings, 0.99), 2),
        "mean_results": round(statistics.mean(found), 1),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def png_of_about(size: int, seed: int) -> bytes:
    from PIL import Image

    side = int((size / 3) ** 0.5)
    image = Image.frombytes("RGB", (side, side), random.Random(seed).randbytes(side * side * 3))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def bench_uploads(directory: Path) -> dict:
    import socketio

    database_url = f"sqlite:///{directory / 'uploads.db'}"
    env = server_env(database_url, str(directory / "uploads"))
    migrate(env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(directory / "server.log", "wb")  # noqa: SIM115 - open for the server's whole life
    server = subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"the server did not start; see {directory / 'server.log'}")
            time.sleep(0.1)
        images = [png_of_about(IMAGE_BYTES, seed) for seed in range(8)]
        clients = []
        for index in range(UPLOAD_CLIENTS):
            name = f"uploader{index}"
            requests.post(url + "/api/register", json={"username": name, "password": "bench-password-1"}, timeout=10)
            token = requests.post(
                url + "/api/token", json={"username": name, "password": "bench-password-1"}, timeout=10
            ).json()["token"]
            client = socketio.Client()
            client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
            clients.append(client)
        failures: list[dict] = []
        sent_bytes = [0]
        lock = threading.Lock()

        def upload_all(client, offset: int) -> None:
            for number in range(UPLOADS_EACH):
                data = images[(offset + number) % len(images)]
                answer = client.call("upload", {"name": f"{number}.png", "type": "image/png", "data": data}, timeout=60)
                with lock:
                    if not answer.get("ok"):
                        failures.append(answer)
                    sent_bytes[0] += len(data)

        started = time.monotonic()
        threads = [threading.Thread(target=upload_all, args=(c, i)) for i, c in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - started
        for client in clients:
            client.disconnect()
        uploads = UPLOAD_CLIENTS * UPLOADS_EACH
        return {
            "clients": UPLOAD_CLIENTS,
            "uploads": uploads,
            "image_bytes": round(statistics.mean(len(i) for i in images)),
            "failed": len(failures),
            "seconds": round(seconds, 2),
            "uploads_per_s": round(uploads / seconds, 1),
            "mb_per_s": round(sent_bytes[0] / seconds / 1e6, 2),
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)
        log.close()


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sb-bench-files-") as scratch:
        directory = Path(scratch)
        results = {
            "scale": "tiny" if TINY else "full",
            "search": bench_search(directory),
            "uploads": bench_uploads(directory),
        }
    search_result, upload_result = results["search"], results["uploads"]
    print(
        f"\nSearch over {search_result['messages']:,} messages (SQLite FTS5), {search_result['queries']} queries: "
        f"p50 {search_result['p50_ms']} ms, p99 {search_result['p99_ms']} ms"
    )
    print(
        f"Socket uploads of {upload_result['image_bytes'] // 1024} KB PNGs, {upload_result['clients']} clients: "
        f"{upload_result['uploads_per_s']} uploads/s, {upload_result['mb_per_s']} MB/s, {upload_result['failed']} failed"
    )
    path = RESULTS / f"files-search-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"JSON: {path}")
    return 0 if upload_result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
