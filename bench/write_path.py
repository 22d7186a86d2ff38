"""CPU cost of the persisting path in-process: room messages and `read` markers from many greenlets.

Drives ``messages.post_room_message`` and ``rooms.mark_read`` as the socket handlers call them
(one greenlet per event, each with its own app context, as Engine.IO spawns one per event), at
fixed rates under gevent, with nobody connected (a null notifier), on a SQLite file in WAL mode
with ``synchronous=FULL`` or on a throwaway PostgreSQL database. Prints the process's CPU time
per message and per `read` over the measured seconds, the statements and transactions per
event, and how many events were answered; no sockets, so the figures are the database path's.

    .venv/bin/python bench/write_path.py --db sqlite --msg-rate 400 --read-rate 1200 --seconds 10
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import sqlalchemy as sa  # noqa: E402

sys.path.insert(0, os.getcwd())

from app import create_app  # noqa: E402
from app.config import TestingConfig  # noqa: E402
from app.extensions import db  # noqa: E402
from app.models import Room, RoomMembership, User  # noqa: E402
from app.services import messages, notifier, rooms  # noqa: E402
from app.services.hot_cache import hot_cache  # noqa: E402
from app.services.read_markers import read_markers  # noqa: E402

POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def make_app(url: str):
    settings = {
        "SQLALCHEMY_DATABASE_URI": url,
        "SOCKETIO_ASYNC_MODE": "gevent",
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "hide_parameters": True, "pool_size": 10},
    }
    app = create_app(type("Config", (TestingConfig,), settings))
    app.extensions[notifier.EXTENSION_KEY] = notifier.NullNotifier()
    return app


def seed(app, rooms_count: int, members: int) -> list[tuple[int, str, int]]:
    """Users and rooms of ``members`` each; (user id, room name, room id) for every member."""
    with app.app_context():
        db.create_all()
        conn = db.session.connection()
        users_table, rooms_table = User.__table__, Room.__table__
        count = rooms_count * members
        conn.execute(
            sa.insert(users_table),
            [{"username": f"u{i}", "username_key": f"u{i}", "password_hash": "x"} for i in range(count)],
        )
        conn.execute(sa.insert(rooms_table), [{"name": f"room{r}"} for r in range(rooms_count)])
        user_ids = [row[0] for row in conn.execute(sa.select(User.id).order_by(User.id))]
        room_ids = [row[0] for row in conn.execute(sa.select(Room.id).order_by(Room.id))]
        seats = [
            (user_ids[r * members + m], f"room{r}", room_ids[r]) for r in range(rooms_count) for m in range(members)
        ]
        conn.execute(sa.insert(RoomMembership.__table__), [{"user_id": u, "room_id": rid} for u, _name, rid in seats])
        db.session.commit()
        return seats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--msg-rate", type=float, default=400)
    parser.add_argument("--read-rate", type=float, default=1200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    pg_name = None
    if args.db == "sqlite":
        directory = tempfile.mkdtemp(prefix="write-path-")
        url = f"sqlite:///{Path(directory) / 'bench.db'}"
    else:
        import psycopg

        pg_name = f"sb_write_path_{os.getpid()}"
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{pg_name}"')
        url = POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{pg_name}"
    try:
        app = make_app(url)
        seats = seed(app, args.rooms, args.members)
        run(app, seats, args)
    finally:
        if pg_name is not None:
            import psycopg

            with app.app_context():
                db.engine.dispose()
            with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


def run(app, seats, args) -> None:
    rng = random.Random(5)
    latest: dict[str, int] = {}
    counts = {"messages": 0, "reads": 0, "errors": 0, "statements": 0, "commits": 0}
    client_ids = itertools.count()
    measuring = [False]

    with app.app_context():
        engine = db.engine

    def statement(_conn, _cursor, _statement, _parameters, _context, _executemany):
        if measuring[0]:
            counts["statements"] += 1

    def commit(_conn):
        if measuring[0]:
            counts["commits"] += 1

    sa.event.listen(engine, "before_cursor_execute", statement)
    sa.event.listen(engine, "commit", commit)
    batches = {"message": 0, "read": 0}

    def counted(kind, commit_batch):
        def wrapper(batch):
            if measuring[0]:
                batches[kind] += 1
            return commit_batch(batch)

        return wrapper

    messages.writer._commit = counted("message", messages.writer._commit)  # type: ignore[method-assign]
    with app.app_context():
        marker_writer = read_markers()
    marker_writer._commit = counted("read", marker_writer._commit)  # type: ignore[method-assign]

    def post(user_id: int, room_name: str) -> None:
        with app.app_context():
            try:
                user = hot_cache().user(user_id)
                posted = messages.post_room_message(
                    user, room_name, "hello there, a plain message", f"c{next(client_ids)}"
                )
                latest[room_name] = max(latest.get(room_name, 0), posted.message["id"])
                if measuring[0]:
                    counts["messages"] += 1
            except Exception as error:  # counted; the run goes on
                counts["errors"] += 1
                print("message failed:", repr(error), file=sys.stderr)
            finally:
                db.session.remove()

    def read(user_id: int, room_name: str, message_id: int) -> None:
        with app.app_context():
            try:
                rooms.mark_read(user_id, room_name, message_id)
                if measuring[0]:
                    counts["reads"] += 1
            except Exception as error:
                counts["errors"] += 1
                print("read failed:", repr(error), file=sys.stderr)
            finally:
                db.session.remove()

    # Every user, room and membership in the worker's cache first, as on a server that has been up a while.
    with app.app_context():
        cache = hot_cache()
        for user_id, room_name, room_id in seats:
            cache.user(user_id)
            cache.room(room_name)
            cache.is_member(user_id, room_id)
        db.session.remove()
    # One message per room first, so every `read` has a message to name.
    for _user_id, room_name, _room_id in seats[:: args.members]:
        post(_user_id, room_name)

    def pace(rate: float, spawn_one, until: float) -> None:
        if rate <= 0:
            return
        interval = 1 / rate
        next_at = time.perf_counter()
        while next_at < until:
            now = time.perf_counter()
            while next_at <= now:
                spawn_one()
                next_at += interval
            gevent.sleep(max(0.0, next_at - time.perf_counter()))

    def spawn_message():
        user_id, room_name, _ = rng.choice(seats)
        gevent.spawn(post, user_id, room_name)

    def spawn_read():
        user_id, room_name, _ = rng.choice(seats)
        gevent.spawn(read, user_id, room_name, latest[room_name])

    start = time.perf_counter()
    end = start + args.warmup + args.seconds
    pacers = [
        gevent.spawn(pace, args.msg_rate, spawn_message, end),
        gevent.spawn(pace, args.read_rate, spawn_read, end),
    ]
    gevent.sleep(args.warmup)
    measuring[0] = True
    cpu0, wall0 = time.process_time(), time.perf_counter()
    gevent.joinall(pacers)
    gevent.sleep(0.5)  # let the last events finish
    measuring[0] = False
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    sa.event.remove(engine, "before_cursor_execute", statement)
    sa.event.remove(engine, "commit", commit)
    events = counts["messages"] + counts["reads"]
    result = {
        "db": args.db,
        "msg_rate": args.msg_rate,
        "read_rate": args.read_rate,
        "messages": counts["messages"],
        "reads": counts["reads"],
        "errors": counts["errors"],
        "cpu_s": round(cpu, 3),
        "cpu_share": round(cpu / wall, 3),
        "us_per_event": round(cpu / events * 1e6, 1) if events else None,
        "us_per_message_if_only_messages": round(cpu / counts["messages"] * 1e6, 1) if counts["messages"] else None,
        "statements_per_event": round(counts["statements"] / events, 2) if events else None,
        "commits": counts["commits"],
        "messages_per_batch": round(counts["messages"] / batches["message"], 2) if batches["message"] else None,
        "reads_per_batch": round(counts["reads"] / batches["read"], 2) if batches["read"] else None,
    }
    print(json.dumps(result) if args.json else result)


if __name__ == "__main__":
    main()
