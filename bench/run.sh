#!/usr/bin/env bash
# `make bench`: Switchboard against the Node socket.io reference, side by side (see bench/run.py).
set -euo pipefail
cd "$(dirname "$0")/.."

# Ten thousand sockets need as many descriptors in the server and the generator.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ ! -d node_modules/socket.io ] || [ ! -d node_modules/ws ] || [ ! -d node_modules/pg ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

exec .venv/bin/python bench/run.py "$@"
