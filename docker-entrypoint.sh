#!/bin/sh
# Container entry point: bring the database schema up to date, then serve with gunicorn.
# Given a command instead (`docker compose run app1 flask --app wsgi users create-admin NAME`), run that.
set -eu

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

# Retried because the database may still be starting, and because two instances starting
# together race to migrate: the loser's transaction fails and its retry finds nothing to do.
attempts="${DB_UPGRADE_ATTEMPTS:-10}"
attempt=1
until flask --app wsgi db upgrade; do
    if [ "$attempt" -ge "$attempts" ]; then
        echo "docker-entrypoint: database upgrade failed $attempts times, giving up" >&2
        exit 1
    fi
    echo "docker-entrypoint: database upgrade failed (attempt $attempt of $attempts), retrying in 3s" >&2
    attempt=$((attempt + 1))
    sleep 3
done

exec gunicorn -c gunicorn.conf.py wsgi:app
