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
