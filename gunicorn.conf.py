"""gunicorn settings shared by `make run`, the tests and the container image."""

import os

# HOST and PORT as the contract names them; a --bind on the command line (as `make run` gives) wins.
bind = [f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"]
worker_class = "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"
# gunicorn's default of 1000 silently caps how many sockets one gevent worker holds.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", 20000))
workers = int(os.environ.get("WEB_CONCURRENCY", 1))
control_socket_disable = True
graceful_timeout = 5
timeout = 60
accesslog = os.environ.get("ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")


def on_starting(server):
    """Metrics of several workers add up through files in PROMETHEUS_MULTIPROC_DIR: start from none."""
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
