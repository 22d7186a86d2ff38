#!/bin/sh
# Container entry point: check the settings, bring the database schema up to date, then serve with gunicorn.
# Given a command instead (`docker compose run app1 flask --app wsgi users create-admin NAME`), run that.
set -eu

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

# A missing setting is one clear line and exit status 78 (EX_CONFIG), not ten failed upgrades.
config_error() {
    echo "docker-entrypoint: $*" >&2
    exit 78
}
environment=$(printf '%s' "${SWITCHBOARD_ENV:-development}" | tr '[:upper:]' '[:lower:]')
case "$environment" in
    production)
        [ -n "${SECRET_KEY:-}" ] || config_error "SECRET_KEY is not set; production needs it (the same value on every instance), see deploy/env.example"
        ;;
    development | testing) ;;
    *) config_error "SWITCHBOARD_ENV must be development, production or testing, not '${SWITCHBOARD_ENV}'" ;;
esac

# Until gunicorn replaces this shell, the shell is PID 1, which gets no default signal handling:
# stop on TERM and INT, taking the running step with it. Each step runs in the background so
# that `wait` returns as soon as a signal arrives.
step=""
stop() {
    echo "docker-entrypoint: stopped before the server started" >&2
    if [ -n "$step" ]; then
        kill -TERM "$step" 2>/dev/null || true
    fi
    exit 143
}
trap stop TERM INT
run_step() {
    "$@" &
    step=$!
    status=0
    wait "$step" || status=$?
    step=""
    return "$status"
}

# Retried because the database may still be starting, and because two instances starting
# together race to migrate: the loser's transaction fails and its retry finds nothing to do.
attempts="${DB_UPGRADE_ATTEMPTS:-10}"
attempt=1
until run_step flask --app wsgi db upgrade; do
    if [ "$attempt" -ge "$attempts" ]; then
        echo "docker-entrypoint: database upgrade failed $attempts times, giving up" >&2
        exit 1
    fi
    echo "docker-entrypoint: database upgrade failed (attempt $attempt of $attempts), retrying in 3s" >&2
    attempt=$((attempt + 1))
    run_step sleep 3
done

trap - TERM INT
# gunicorn becomes PID 1 and handles TERM itself: a graceful stop.
exec gunicorn -c gunicorn.conf.py wsgi:app
