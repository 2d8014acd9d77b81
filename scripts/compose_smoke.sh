#!/usr/bin/env bash
# Proof for docker-compose.yml: validate it, then bring the whole stack up with
# podman-compose exactly as a fresh clone would (no .env), walk the API on the published
# port, start the worker and its beat (a periodic task must run end to end), check every
# healthcheck and the one-shot migration, and tear it all down.
#
#   bash scripts/compose_smoke.sh             # validate + full run
#   COMPOSE_SMOKE_VALIDATE_ONLY=1 bash scripts/compose_smoke.sh
#
# No image registry is reachable here, so mysql:8.0 and redis:7 are local stand-ins
# (Debian's MariaDB and Redis, built once and cached by tag; docker/standin/), as is
# python:3.11-slim. Needs root (or sudo) for podman. podman-compose comes from PyPI into a
# tools virtualenv. Always removes its containers, network and volume.
#
# podman 4.3 (Debian 12) cannot honour this file's depends_on conditions by itself (see
# step 3), so the script starts the services in that order and checks each condition.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=docker/standin/podman-env.sh disable=SC1091
source docker/standin/podman-env.sh
# shellcheck source=docker/standin/api-round-trip.sh disable=SC1091
source docker/standin/api-round-trip.sh

PROJECT="messagingsmoke$$"
WORK="$(mktemp -d)"
T0=$SECONDS
declare -a SUMMARY=()
STACK_UP=""

note() { SUMMARY+=("$*"); log "$*"; }
fail() {
    log "FAIL: $*"
    if [[ -n $STACK_UP ]]; then
        local c
        for c in $(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}'); do
            log "--- last log lines of $c ---"
            podman logs --tail 25 "$c" >&2 2>&1 || true
        done
    fi
    exit 1
}

compose() { "$PODMAN_COMPOSE" -f docker-compose.yml -p "$PROJECT" "$@"; }

cleanup() {
    local rc=$?
    set +e
    if [[ -n $STACK_UP ]]; then
        compose down -v -t 10 >"$WORK/down.log" 2>&1 || tail -20 "$WORK/down.log" >&2
        # Whatever podman-compose left behind.
        podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman rm -f >/dev/null 2>&1
        podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman volume rm -f >/dev/null 2>&1
        podman network ls -q --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman network rm -f >/dev/null 2>&1
    fi
    rm -rf "$WORK"
    if ((rc == 0)); then
        printf '\n==== compose smoke: PASS in %ss ====\n' "$((SECONDS - T0))"
    else
        printf '\n==== compose smoke: FAIL (exit %s) after %ss ====\n' "$rc" "$((SECONDS - T0))"
    fi
    printf '  %s\n' "${SUMMARY[@]}"
    [[ -z $STACK_UP ]] || printf '  cleaned up: project %s (containers, network, volume)\n' "$PROJECT"
}
trap cleanup EXIT

# --- 1. validate -------------------------------------------------------------------------------
t=$SECONDS
ensure_podman
PODMAN_COMPOSE="$(ensure_tool podman-compose podman-compose)"
TOOLS_PYTHON="$(dirname "$PODMAN_COMPOSE")/python"
# The fully interpolated file, as podman-compose reads it. WEB_PORT is pinned so the
# rendering does not depend on the caller's environment.
WEB_PORT=8000 compose config >"$WORK/config.yml" 2>"$WORK/config.err" \
    || { cat "$WORK/config.err" >&2; fail "podman-compose config"; }
# What the issue asks of the file, checked on the rendered configuration.
"$TOOLS_PYTHON" - "$WORK/config.yml" <<'PY' || fail "docker-compose.yml does not meet its requirements"
import sys

import yaml

config = yaml.safe_load(open(sys.argv[1]))
services = config["services"]
problems = []


def need(condition, message):
    if not condition:
        problems.append(message)


need(set(services) >= {"web", "migrate", "db", "redis"}, "services web, migrate, db, redis")
need("build" in services["web"], "web is built from the Dockerfile")
need(services["migrate"].get("image") == services["web"].get("image"), "migrate uses the web image")
need(services["db"].get("image", "").endswith("mysql:8.0"), "db is mysql:8.0")
need(services["redis"].get("image", "").endswith("redis:7"), "redis is redis:7")
for name in ("web", "db", "redis"):
    need(services[name].get("healthcheck", {}).get("test"), f"{name} has a healthcheck")
deps = {name: services[name].get("depends_on", {}) for name in services}
need(deps["migrate"].get("db", {}).get("condition") == "service_healthy", "migrate waits for a healthy db")
need(deps["web"].get("migrate", {}).get("condition") == "service_completed_successfully",
     "web waits for migrate to complete successfully")
need(deps["web"].get("redis", {}).get("condition") == "service_healthy", "web waits for a healthy redis")
need(any(str(v).split(":")[0] == "db-data" or (isinstance(v, dict) and v.get("source") == "db-data")
         for v in services["db"].get("volumes", [])), "db keeps its data in the db-data volume")
need("db-data" in (config.get("volumes") or {}), "db-data is a named volume")
need(any("8000" in str(p) for p in services["web"].get("ports", [])), "web publishes port 8000")
env = services["web"].get("environment", {})
if isinstance(env, list):
    env = dict(item.split("=", 1) for item in env)
need(str(env.get("DJANGO_SECURE_SSL_REDIRECT")) == "0" and str(env.get("DJANGO_SECURE_COOKIES")) == "0",
     "plain-HTTP defaults: DJANGO_SECURE_SSL_REDIRECT=0, DJANGO_SECURE_COOKIES=0")
need(str(env.get("DATABASE_URL", "")).startswith("mysql://") and "@db:3306/" in str(env.get("DATABASE_URL", "")),
     "DATABASE_URL points at the db service")
need(env.get("DJANGO_SECRET_KEY"), "a DJANGO_SECRET_KEY default")
# The background worker and ONE beat (periodic tasks: the email digests), with the notification
# settings every process reads (docs/notifications.md).
need({"worker", "beat"} <= set(services), "services worker and beat")
need((services.get("beat", {}).get("command") or [])[:4] == ["celery", "-A", "messaging_app", "beat"], "beat runs celery beat")
for name in ("web", "worker", "beat"):
    got = services.get(name, {}).get("environment", {})
    if isinstance(got, list):
        got = dict(item.split("=", 1) for item in got)
    for key in ("PUSH_VAPID_PRIVATE_KEY", "PUSH_VAPID_SUBJECT", "EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT",
                "EMAIL_DIGEST_INTERVAL_SECONDS", "DEFAULT_FROM_EMAIL", "PUBLIC_BASE_URL"):
        need(key in got, f"{name} gets {key}")
env_files = services["web"].get("env_file", [])
need(any(isinstance(e, dict) and e.get("required") is False for e in env_files) or not env_files,
     "env_file .env is optional (required: false)")
if problems:
    sys.exit("missing: " + "; ".join(problems))
print(f"{len(services)} services, all requirements met")
PY
note "podman-compose $("$PODMAN_COMPOSE" version 2>/dev/null | awk '/podman-compose version/ {print $3}') config: valid; structure checks passed ($((SECONDS - t))s)"

if [[ -n ${COMPOSE_SMOKE_VALIDATE_ONLY:-} ]]; then
    note "COMPOSE_SMOKE_VALIDATE_ONLY set: stack not started"
    exit 0
fi

# --- 2. images: stand-ins for the registry images; the app image is built by compose ------------
t=$SECONDS
ensure_python_base
ensure_service_images
note "base and service images ready ($((SECONDS - t))s)"

# --- 3. up, as from a fresh clone (no .env) ------------------------------------------------------------
# podman 4.3 cannot run `podman-compose up -d` of this file in one go: web is created with
# --requires=db,migrate,redis and podman then tries to start the exited migrate container
# again and fails ("generating dependency graph ... not found in input list"); and it does
# not enforce service_healthy. So the script starts the services in the order depends_on
# prescribes and checks each condition itself: db and redis healthy (their own
# healthchecks), migrate completed with exit 0, then web. Docker Compose does the same
# from the file alone.
[[ ! -e .env ]] || log "note: a .env exists here and is used (interpolation and env_file)"
WEB_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export WEB_PORT
# Docker image format for the app image, so its HEALTHCHECK is kept.
export BUILDAH_FORMAT=docker

container_of() {
    podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -1
}
# wait_healthy <service> <seconds>: run its healthcheck until it passes (no systemd here
# to schedule it).
wait_healthy() {
    local c i
    c="$(container_of "$1")"
    [[ -n $c ]] || fail "no $1 container"
    for ((i = 0; i < $2; i++)); do
        podman healthcheck run "$c" >/dev/null 2>&1 && return 0
        [[ $(podman inspect --format '{{.State.Running}}' "$c") == true ]] || fail "$1 exited"
        sleep 1
    done
    fail "$1 not healthy within $2 s"
}

t=$SECONDS
compose build web >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; fail "podman-compose build web"; }
note "podman-compose build web: $((SECONDS - t))s"

t=$SECONDS
STACK_UP=1
compose up -d --no-deps db redis >"$WORK/up.log" 2>&1 || { tail -20 "$WORK/up.log" >&2; fail "up db redis"; }
wait_healthy db 180
wait_healthy redis 60
note "db (mysql:8.0 stand-in) and redis healthy $((SECONDS - t))s after start"

t=$SECONDS
compose up -d --no-deps migrate >>"$WORK/up.log" 2>&1 || { tail -20 "$WORK/up.log" >&2; fail "up migrate"; }
migrate="$(container_of migrate)"
[[ -n $migrate ]] || fail "no migrate container"
exit_code="$(podman wait "$migrate")"
podman logs "$migrate" >"$WORK/migrate.log" 2>&1
[[ $exit_code == 0 ]] || { tail -30 "$WORK/migrate.log" >&2; fail "migrate exited with $exit_code"; }
note "migrate: exit 0 in $((SECONDS - t))s, $(grep -c '  Applying ' "$WORK/migrate.log") migrations applied"

t=$SECONDS
compose up -d --no-deps web >>"$WORK/up.log" 2>&1 || { tail -20 "$WORK/up.log" >&2; fail "up web"; }
BASE="http://127.0.0.1:$WEB_PORT"
ready=""
for _ in $(seq 120); do
    code="$(curl -s -o "$WORK/readyz.json" -w '%{http_code}' "$BASE/readyz" || true)"
    if [[ $code == 200 ]]; then ready=1; break; fi
    sleep 0.5
done
[[ -n $ready ]] || fail "/readyz on $BASE did not answer 200 within 60 s (last: ${code:-none})"
note "web ready on $BASE (published port) in $((SECONDS - t))s; /readyz: $(cat "$WORK/readyz.json")"
wait_healthy web 30
note "healthchecks of db, redis and web pass"

# --- 4. the API round trip, through the published port ---------------------------------------------------
api_round_trip "$BASE" "$WORK"

# WebSocket events need Redis across workers: make sure the app really uses the redis service.
grep -q '"redis": true' "$WORK/readyz.json" || fail "the app does not use the redis service"
web="$(container_of web)"
podman logs "$web" >"$WORK/web.log" 2>&1
if grep -F -q 'Traceback' "$WORK/web.log"; then
    grep -F -A20 'Traceback' "$WORK/web.log" | head -40 >&2
    fail "web logged a traceback"
fi
note "web log: $(grep -c 'messaging_app.requests' "$WORK/web.log") request lines, no traceback"

# --- 5. the background worker and ONE beat: beat's periodic email digests run on the worker ----------
# A short digest interval for this run only (compose reads it when it creates the containers).
t=$SECONDS
EMAIL_DIGEST_INTERVAL_SECONDS=2 compose up -d --no-deps worker beat >>"$WORK/up.log" 2>&1 ||
    { tail -20 "$WORK/up.log" >&2; fail "up worker beat"; }
wait_healthy worker 120
wait_healthy beat 60
worker="$(container_of worker)"
ran=""
for _ in $(seq 120); do
    if podman logs "$worker" 2>&1 | grep -Eq 'Task notifications\.email_digests\[[^]]*\] succeeded'; then ran=1; break; fi
    sleep 0.5
done
if [[ -z $ran ]]; then
    podman logs --tail 30 "$worker" >&2 || true
    podman logs --tail 30 "$(container_of beat)" >&2 || true
    fail "no email digest run enqueued by beat succeeded on the worker within 60 s"
fi
note "worker and beat healthy; a digest run beat enqueued succeeded on the worker $((SECONDS - t))s after they started"
# The worker's metrics (METRICS_PORT in compose): that run is counted, summed over its pool.
scrape='import urllib.request as u; print(u.urlopen("http://127.0.0.1:9100/metrics", timeout=5).read().decode())'
metrics="$(podman exec "$worker" python -c "$scrape" 2>&1)" || { echo "$metrics" | tail -5 >&2; fail "worker metrics: no answer on :9100"; }
echo "$metrics" | grep -Eq '^messaging_tasks_total\{.*task="notifications\.email_digests".*\} [1-9]' ||
    { echo "$metrics" | grep -i task | head -10 >&2; fail "worker metrics: the digest run is not counted"; }
note "the worker's /metrics on :9100 counts the digest runs"
note "total $((SECONDS - T0))s"
