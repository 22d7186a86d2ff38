# Switchboard production image: gunicorn with one gevent-websocket worker per container.
# Run several containers behind nginx (deploy/nginx.conf) to scale out; see docker-compose.yml.

# Base images; override with --build-arg to build from a mirror or locally made bases.
ARG NODE_IMAGE=node:20-slim
ARG PYTHON_IMAGE=python:3.11-slim

# --- browser assets: socket.io-client and markdown-it, pinned by package-lock.json -------------------------
FROM ${NODE_IMAGE} AS assets
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error \
 && mkdir vendor \
 && cp node_modules/socket.io-client/dist/socket.io.esm.min.js \
       node_modules/socket.io-client/dist/socket.io.esm.min.js.map \
       node_modules/socket.io-client/dist/socket.io.min.js \
       node_modules/socket.io-client/dist/socket.io.min.js.map \
       vendor/ \
 && cp node_modules/markdown-it/dist/browser/markdown-it.esm.min.mjs vendor/markdown-it.esm.min.js

# --- the application ------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 switchboard \
 && useradd --system --uid 10001 --gid switchboard --home-dir /app --shell /usr/sbin/nologin switchboard

WORKDIR /app
# Requirements first, so code changes reuse the installed-packages layer.
COPY requirements.txt ./
RUN pip install --requirement requirements.txt

COPY . .
COPY --from=assets /build/vendor/ static/vendor/
# The app writes only to instance/ (the SQLite file when DATABASE_URL is unset, and uploads under
# instance/uploads, where compose mounts the volume every instance shares); the code stays root-owned.
RUN mkdir -p instance/uploads \
 && chown switchboard:switchboard instance instance/uploads \
 && chmod 0755 docker-entrypoint.sh

ENV SWITCHBOARD_ENV=production \
    HOST=0.0.0.0 \
    PORT=5000 \
    WEB_CONCURRENCY=1 \
    FLASK_APP=wsgi

# Numeric, so a runtime can verify it is not root (Kubernetes runAsNonRoot).
USER 10001:10001
EXPOSE 5000

# OCI images have no health check: with buildah or podman, build with --format docker to keep it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '5000'), timeout=4)"]

ENTRYPOINT ["/app/docker-entrypoint.sh"]
