"""CPU per delivery of room emits: a bare Socket.IO server with direct writes, raw websocket readers in another process.

    python bench/fanout_cpu.py --members 100 --rate 500 --seconds 6
    python bench/fanout_cpu.py --members 1000 --rate 10 --seconds 6

The server (this process, gevent, core 0) is a python-socketio server on gevent-websocket with
app/sockets/fanout.py installed, as the gunicorn worker runs it, but without the app: every
connecting socket joins one room, and the server then emits a chat-sized ``message`` event to
that room ``rate`` times a second, skipping one member as the app skips the sender. The readers
(a child process, core 1) read and discard. Printed: the server's CPU time (user + system) per
delivery and per emit, the direct and queued counts, and the wall time of one emit to the whole
room (p50/p99), which is how long the last member waits behind the first.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import selectors  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PAYLOAD = {
    "id": 123456,
    "room": "general",
    "body": "a message of about the length people type in a chat room, with some words",
    "client_id": "5f0c3a1e9b2d4c7a8e6f1b3d5a7c9e0f",
    "created_at": "2026-11-30T12:00:00.123456+00:00",
    "edited_at": None,
    "rev": 987654,
    "sender": {"id": 42, "username": "someone", "display_name": "Someone", "avatar": None},
    "reply_to": None,
    "files": [],
}


def readers(port: int, count: int) -> None:
    """The child: open ``count`` websockets, send CONNECT on each, then read and discard until the server closes."""
    selector = selectors.DefaultSelector()
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096)
        # "40", masked with a zero key
        sock.sendall(b"\x81\x82\x00\x00\x00\x0040")
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    total = 0
    open_count = count
    while open_count:
        for key, _ in selector.select(timeout=1):
            try:
                data = key.fileobj.recv(262144)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            if not data:
                selector.unregister(key.fileobj)
                open_count -= 1
            total += len(data)
    sys.stdout.write(f"{total}\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--readers", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args()
    if options.readers:
        readers(options.port, options.members)
        return

    import gevent
    import socketio
    from gevent.pywsgi import WSGIServer
    from geventwebsocket.handler import WebSocketHandler

    from app.sockets import fanout

    sio = socketio.Server(async_mode="gevent", ping_interval=600, ping_timeout=600)
    fanout.check_fanout_internals()
    direct = fanout.install_direct_writes(sio)
    connected = []

    @sio.on("connect")
    def connect(sid, environ, auth=None):
        sio.enter_room(sid, "room")
        connected.append(sid)

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    port = listener.getsockname()[1]
    server = WSGIServer(listener, socketio.WSGIApp(sio), handler_class=WebSocketHandler, log=None)
    server.start()
    child = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, __file__, "--readers", "--port", str(port)]
        + ["--members", str(options.members)],
        stdout=subprocess.PIPE,
        text=True,
    )
    while len(connected) < options.members:
        gevent.sleep(0.05)
    gevent.sleep(0.5)
    skip = connected[0]

    def emits(count: int, durations: list[float]) -> None:
        interval = 1.0 / options.rate
        start = time.perf_counter()
        for number in range(count):
            pause = start + number * interval - time.perf_counter()
            if pause > 0:
                gevent.sleep(pause)
            began = time.perf_counter()
            sio.emit("message", PAYLOAD, to="room", skip_sid=skip)
            durations.append(time.perf_counter() - began)
        gevent.sleep(0.3)

    emits(int(options.rate), [])  # warm up for a second
    before_direct, before_queued = direct._direct._value.get(), direct._queued._value.get()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    durations: list[float] = []
    count = int(options.rate * options.seconds)
    emits(count, durations)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    system = after.ru_stime - usage.ru_stime
    deliveries = count * (options.members - 1)
    durations.sort()
    made_direct = direct._direct._value.get() - before_direct
    made_queued = direct._queued._value.get() - before_queued
    server.stop()
    for sid in list(connected):
        sio.disconnect(sid)
    print(
        json.dumps(
            {
                "members": options.members,
                "rate": options.rate,
                "emits": count,
                "cpu_us_per_delivery": round(cpu / deliveries * 1e6, 3),
                "sys_share": round(system / cpu, 2),
                "cpu_us_per_emit": round(cpu / count * 1e6, 1),
                "cpu_share_of_core": round(cpu / (options.seconds + 0.3), 2),
                "emit_ms_p50": round(durations[len(durations) // 2] * 1e3, 2),
                "emit_ms_p99": round(durations[int(len(durations) * 0.99)] * 1e3, 2),
                "direct": made_direct,
                "queued": made_queued,
            }
        )
    )
    child.kill()


if __name__ == "__main__":
    main()
