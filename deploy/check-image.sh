#!/bin/sh
# Build the production image and drive it, with buildah alone (no daemon): run this when the
# Dockerfile, docker-entrypoint.sh, deploy/ or the requirements change, and note the run in
# docs/operations.md ("The image, last checked"). Too slow for `make test`.
#
#   deploy/check-image.sh [TAG]             # default switchboard:check
#   LOCAL_BASES=1 deploy/check-image.sh      # first make the bases from Debian (deploy/local-bases.sh)
#   SKIP_BUILD=1 deploy/check-image.sh       # drive an image already built
#   CHECK_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres deploy/check-image.sh
#
# It checks the image's configuration (numeric user 10001, health check, entry point), that the
# entry point refuses to start without SECRET_KEY, and then, on SQLite and (given
# CHECK_POSTGRES_URL, a database the check may create databases from) on PostgreSQL: the entry
# point migrates and serves, the image's own HEALTHCHECK command passes, and deploy/drive_image.py,
# run inside the image beside the server, registers, connects over Socket.IO, sends a message and
# gets its ack. Each step prints its duration.
set -eu
cd "$(dirname "$0")/.."

tag="${1:-switchboard:check}"
driver="${BUILDAH_STORAGE_DRIVER:-vfs}"
port="${CHECK_PORT:-18077}"
bah() { buildah --storage-driver "$driver" "$@"; }
now() { date +%s; }
step_started=$(now)
step() {
    finished=$(now)
    echo "check-image: $1 ($((finished - step_started)) s)"
    step_started=$finished
}
fail() {
    echo "check-image: FAILED: $*" >&2
    exit 1
}

if [ "${LOCAL_BASES:-0}" = 1 ]; then
    deploy/local-bases.sh
    step "local bases ready"
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    BUILDAH_STORAGE_DRIVER="$driver" deploy/build-image.sh "$tag"
    step "built $tag"
fi

# One inspect (each costs seconds on vfs): user and entry point, then the health check's words.
inspected=$(bah inspect --type image --format '{{.Docker.Config.User}}|{{.Docker.Config.Entrypoint}}{{range .Docker.Config.Healthcheck.Test}}{{"\n"}}{{.}}{{end}}' "$tag")
config=$(echo "$inspected" | sed -n 1p)
echo "check-image: user|entrypoint = $config"
[ "$config" = "10001:10001|[/app/docker-entrypoint.sh]" ] || fail "unexpected image configuration: $config"
# The exec form ["CMD", "python", "-c", SCRIPT]: the script is the fourth word.
[ "$(echo "$inspected" | sed -n 2,4p | tr '\n' ' ')" = "CMD python -c " ] || fail "no exec-form python HEALTHCHECK"
healthcheck=$(echo "$inspected" | sed -n '5,$p')
case "$healthcheck" in *"/healthz"*) ;; *) fail "the HEALTHCHECK does not ask /healthz" ;; esac
step "image configuration"

container=$(bah from --pull=false "$tag")
server=""
server_pid=""
cleanup() {
    if [ -n "$server" ]; then
        [ -z "$server_pid" ] || kill -TERM "$server_pid" 2>/dev/null || true
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    bah rm "$container" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

run() { bah run --isolation chroot "$@"; }

[ "$(run "$container" -- id -u)" = 10001 ] || fail "the image does not run as UID 10001"
status=0
run --env SWITCHBOARD_ENV=production --env SECRET_KEY= "$container" -- /app/docker-entrypoint.sh 2>/tmp/check-image-nokey.$$ || status=$?
message=$(cat /tmp/check-image-nokey.$$)
rm -f /tmp/check-image-nokey.$$
[ "$status" = 78 ] || fail "without SECRET_KEY the entry point exited $status, not 78: $message"
case "$message" in *"SECRET_KEY is not set"*) ;; *) fail "without SECRET_KEY: $message" ;; esac
step "runs as UID 10001; no SECRET_KEY: exit 78, one line"

# serve LABEL [DATABASE_URL]: the entry point as the image runs it (migrate, then gunicorn) in the
# background, the image's health check until it passes, the drive, then SIGTERM and a clean exit.
serve() {
    label="$1" database_url="${2:-}"
    set -- --env SECRET_KEY=image-check-secret --env HOST=127.0.0.1 --env "PORT=$port" --env LOG_FORMAT=json
    if [ -n "$database_url" ]; then
        set -- "$@" --env "DATABASE_URL=$database_url"
    fi
    log="/tmp/check-image-$label.$$.log"
    if run --env "PORT=$port" "$container" -- python -c "$healthcheck" >/dev/null 2>&1; then
        fail "something already serves port $port (CHECK_PORT picks another)"
    fi
    # buildah run does not pass signals on, and chroot isolation shares the host's process ids:
    # the shell prints its pid and becomes the entry point, which becomes gunicorn, as PID 1
    # would in a container, so SIGTERM goes where `docker stop` sends it.
    run "$@" "$container" -- sh -c 'echo "pid $$"; exec /app/docker-entrypoint.sh' >"$log" 2>&1 &
    server=$!
    attempts=0
    until run --env "PORT=$port" "$container" -- python -c "$healthcheck" >/dev/null 2>&1; do
        attempts=$((attempts + 1))
        if [ "$attempts" -ge 60 ] || ! kill -0 "$server" 2>/dev/null; then
            cat "$log" >&2
            fail "$label: the server never became healthy"
        fi
        sleep 1
    done
    server_pid=$(sed -n 's/^pid \([0-9][0-9]*\)$/\1/p' "$log" | head -n 1)
    [ -n "$server_pid" ] || fail "$label: the server's pid is unknown"
    step "$label: migrated, serving, HEALTHCHECK passes"
    drive=$(run "$container" -- python -c "$(cat deploy/drive_image.py)" "http://127.0.0.1:$port") \
        || { cat "$log" >&2; fail "$label: the Socket.IO drive failed"; }
    step "$label: Socket.IO client sent a message and got its ack: $drive"
    kill -TERM "$server_pid"
    status=0
    wait "$server" || status=$?
    server=""
    [ "$status" = 0 ] || { cat "$log" >&2; fail "$label: the server exited $status after SIGTERM"; }
    lines=$(sed 1d "$log" | grep -c . || true)
    json_lines=$(sed 1d "$log" | grep -c '^{.*}$' || true)
    [ "$lines" = "$json_lines" ] || { cat "$log" >&2; fail "$label: a log line is not JSON"; }
    rm -f "$log"
    step "$label: stopped by SIGTERM with status 0; all $json_lines log lines JSON"
}

serve sqlite
if [ -n "${CHECK_POSTGRES_URL:-}" ]; then
    name="switchboard_image_check_$$"
    admin_url="$CHECK_POSTGRES_URL"
    run --env "ADMIN_URL=$admin_url" "$container" -- python -c "
import os, sqlalchemy as sa
engine = sa.create_engine(os.environ['ADMIN_URL'], isolation_level='AUTOCOMMIT')
with engine.connect() as connection:
    connection.execute(sa.text('CREATE DATABASE $name'))
"
    serve postgresql "${admin_url%/*}/$name"
    run --env "ADMIN_URL=$admin_url" "$container" -- python -c "
import os, sqlalchemy as sa
engine = sa.create_engine(os.environ['ADMIN_URL'], isolation_level='AUTOCOMMIT')
with engine.connect() as connection:
    connection.execute(sa.text('DROP DATABASE $name WITH (FORCE)'))
"
fi
echo "check-image: all checks passed for $tag"
