"""gunicorn settings shared by `make run`, the tests and the container image."""

import gc
import os

from gevent.pywsgi import WSGIHandler
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from geventwebsocket.handler import WebSocketHandler

import logjson

# A client gets this long to send a request's line and headers (also: how long an idle
# keep-alive connection is kept), and this long for each read or write of a body after
# them. Without them a client that trickles its headers holds a connection for good.
HEADER_TIMEOUT_SECONDS = float(os.environ.get("HTTP_HEADER_TIMEOUT_SECONDS", 30))
BODY_TIMEOUT_SECONDS = float(os.environ.get("HTTP_BODY_TIMEOUT_SECONDS", 60))


# Each connection's buffered reader (pywsgi's default is 8 KB, held for a websocket's whole life).
# Request lines and headers are read line by line through it and websocket frames are small;
# larger reads (bodies, big frames) bypass the buffer.
READ_BUFFER_BYTES = int(os.environ.get("HTTP_READ_BUFFER_BYTES", 1024))


# The cyclic garbage collector's thresholds in the worker (Python's default is 700,10,10). A worker
# holding thousands of sockets has millions of long-lived objects: with the default, the heap
# growing as sockets connect triggers a full collection every ~25 % of growth, each one pausing
# every socket of the worker (hundreds of ms at a few thousand sockets). A larger first
# threshold makes those checks rarer; young cycles are still collected.
GC_THRESHOLDS = tuple(int(part) for part in os.environ.get("GC_THRESHOLDS", "10000,10,10").split(","))


def tune_garbage_collector(thresholds: tuple[int, ...] = GC_THRESHOLDS) -> None:
    """Leave what the worker loaded at start-up out of every later collection, and set the thresholds."""
    gc.freeze()
    gc.set_threshold(*thresholds)


class TimedWebSocketHandler(WebSocketHandler):
    """gevent-websocket's handler with read timeouts; a websocket, once upgraded, has Engine.IO's pings.

    The worker's open connections are kept in ``open_connections``, so that a stopping worker can
    end them (``app.sockets.connections.close_all_when_stopping``): once ``stopping`` is set, no
    connection is kept alive after the request it is serving.
    """

    open_connections: set = set()
    stopping = False
    # True while the connection waits for the line of its next request (kept alive, idle).
    waiting_for_request = False

    def handle(self):
        self.open_connections.add(self)
        try:
            super().handle()
        finally:
            self.open_connections.discard(self)

    def __init__(self, sock, address, server, rfile=None):
        super().__init__(sock, address, server, rfile)
        if rfile is None:
            self.rfile.close()  # the default 8 KB reader; closing it leaves the socket open
            self.rfile = sock.makefile("rb", READ_BUFFER_BYTES)

    def read_requestline(self):
        self.socket.settimeout(HEADER_TIMEOUT_SECONDS)
        self.waiting_for_request = True
        try:
            return super().read_requestline()
        finally:
            self.waiting_for_request = False

    def run_websocket(self):
        # Upgraded: the request's parsed headers (an email Message of about 1.5 KB) are not read
        # again for the websocket's whole life; the environ has every value the app reads.
        self.headers = None
        super().run_websocket()

    def read_request(self, raw_requestline):
        result = super().read_request(raw_requestline)
        self.socket.settimeout(None if self._connection_upgrade_requested() else BODY_TIMEOUT_SECONDS)
        if self.stopping:
            self.close_connection = True
        return result


class TimedWebSocketWorker(GeventWebSocketWorker):
    wsgi_handler = TimedWebSocketHandler


def check_handler_internals() -> None:
    """Stop the start if gevent's pywsgi or gevent-websocket read a request's parsed headers other
    than before the application runs (TimedWebSocketHandler.run_websocket drops them)."""
    readers = set()
    for cls in (WSGIHandler, WebSocketHandler):
        for name, function in vars(cls).items():
            code = getattr(function, "__code__", None)
            if code is None:
                continue
            names = set(code.co_names).union(*(c.co_names for c in code.co_consts if hasattr(c, "co_names")))
            if "headers" in names:
                readers.add(name)
    expected = {"read_request", "_connection_upgrade_requested", "_headers", "get_environ"}
    if readers != expected or "run_websocket" not in WebSocketHandler.run_application.__code__.co_names:
        raise RuntimeError(
            "gevent's pywsgi or gevent-websocket changed how a request's headers are read "
            f"(methods reading them: {sorted(readers)}): pin the versions or update "
            "TimedWebSocketHandler.run_websocket in gunicorn.conf.py."
        )


check_handler_internals()


# HOST and PORT as the contract names them; a --bind on the command line (as `make run` gives) wins.
bind = [f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"]
worker_class = TimedWebSocketWorker
# gunicorn's default of 1000 silently caps how many sockets one gevent worker holds.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", 20000))
workers = int(os.environ.get("WEB_CONCURRENCY", 1))
control_socket_disable = True
graceful_timeout = 5
timeout = 60
accesslog = os.environ.get("ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# LOG_FORMAT=json: gunicorn's own lines (start, workers booting and exiting, signals) are JSON too.
JSON_LOGS = os.environ.get("LOG_FORMAT", "text").strip().lower() == "json"
if JSON_LOGS:
    logconfig_dict = logjson.gunicorn_logconfig(loglevel)


def on_starting(server):
    """Metrics of several workers add up through files in PROMETHEUS_MULTIPROC_DIR: start from none."""
    if JSON_LOGS:
        logjson.route_stray_output()
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.remove(os.path.join(directory, name))


def child_exit(server, worker):
    """A dead worker's connected-sockets gauge stops counting."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """On SIGTERM the worker closes its sockets at once instead of waiting out graceful_timeout."""
    import gevent

    from app.sockets.connections import close_all_when_stopping

    if JSON_LOGS:
        logjson.route_stray_output(greenlets=True)

    gevent.spawn(close_all_when_stopping, worker, worker.wsgi, TimedWebSocketHandler)
    tune_garbage_collector()
