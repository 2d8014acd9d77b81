#!/usr/bin/env bash
# Runs the Postman collection with newman, again and again against the same live servers.
#
#   bash scripts/newman.sh [extra newman options...]
#
# Two passes, each on its own throwaway server from scripts/live_server.sh (fresh SQLite
# database, DJANGO_DEBUG=1, port ${LIVE_PORT:-a free one}):
#   1. development rates (what `make run` applies): NEWMAN_RUNS (default 3) runs back to back;
#   2. production rates (settings.PRODUCTION_THROTTLE_RATES, passed as THROTTLE_*):
#      NEWMAN_PRODUCTION_RUNS (default 2; 0 skips the pass) runs back to back, then the next
#      logins must meet a 429 with Retry-After within the login limit, so the limit is live.
# Extra options go to every `newman run`; runs after the first print only failed assertions.
# Needs the virtualenv (`make install`) and Node.js with npm. newman is installed once into a
# cache outside the repository: NEWMAN_HOME (default ${XDG_CACHE_HOME:-$HOME/.cache}/messaging_app-newman).
#
# Exit status: 0 when every run passed every assertion (and the 429 came), else non-zero.
set -euo pipefail

NEWMAN_VERSION="6.2.2"
NEWMAN_DIR="${NEWMAN_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/messaging_app-newman}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COLLECTION="$ROOT/post_man-Collections/messaging_app.postman_collection.json"
ENVIRONMENT="$ROOT/post_man-Collections/messaging_app.postman_environment.json"
NEWMAN="$NEWMAN_DIR/node_modules/.bin/newman"
SELF="$ROOT/scripts/$(basename "${BASH_SOURCE[0]}")"  # live_server.sh runs commands from $ROOT

log() { printf '[newman.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Inner half, run by live_server.sh with $BASE_URL set: COUNT runs, then (for "production") the 429 probe.
if [[ "${1:-}" == "--runs" ]]; then
    label="$2" count="$3"
    shift 3
    quiet=()
    for i in $(seq "$count"); do
        start=$SECONDS
        log "$label rates: run $i of $count against $BASE_URL"
        "$NEWMAN" run "$COLLECTION" --environment "$ENVIRONMENT" --env-var "baseUrl=$BASE_URL" \
            --working-dir "$ROOT/post_man-Collections" \
            "${quiet[@]}" "$@" || { log "$label rates: run $i of $count failed"; exit 1; }
        log "$label rates: run $i of $count passed in $((SECONDS - start)) s"
        quiet=(--reporter-cli-no-success-assertions)
    done
    if [[ "$label" == "production" ]]; then
        limit="${THROTTLE_LOGIN%%/*}"
        for attempt in $(seq $((limit + 1))); do
            headers="$(curl -s -o /dev/null -D - -X POST -H 'Content-Type: application/json' \
                -d '{"email": "nobody@example.com", "password": "wrong"}' "$BASE_URL/api/token/")"
            if [[ "$headers" == "HTTP/1.1 429"* ]]; then
                retry="$(printf '%s' "$headers" | tr -d '\r' | sed -n 's/^[Rr]etry-[Aa]fter: *//p')"
                [[ -n "$retry" ]] || die "the 429 carries no Retry-After header"
                log "production rates: login $attempt after the runs was refused: 429, Retry-After $retry s" \
                    "(THROTTLE_LOGIN=$THROTTLE_LOGIN)"
                exit 0
            fi
        done
        die "no 429 within $((limit + 1)) logins after the runs: THROTTLE_LOGIN=$THROTTLE_LOGIN is not applied"
    fi
    exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js (which brings npm) first."
[[ -f "$COLLECTION" && -f "$ENVIRONMENT" ]] || die "collection or environment file missing."
[[ -x "$ROOT/.venv/bin/python" ]] || die "$ROOT/.venv/bin/python not found: run 'make install' first."

if [[ ! -x "$NEWMAN" ]] || [[ "$("$NEWMAN" --version 2>/dev/null || true)" != "$NEWMAN_VERSION" ]]; then
    log "installing newman@$NEWMAN_VERSION into $NEWMAN_DIR"
    mkdir -p "$NEWMAN_DIR"
    npm install --prefix "$NEWMAN_DIR" --no-audit --no-fund --loglevel=error "newman@$NEWMAN_VERSION" >&2
fi

# The production pass runs beside the development one (own server, own port, own counters), its
# output held back until the development pass is done: CI waits for the longer pass only.
production_pid="" production_log=""
if ((${NEWMAN_PRODUCTION_RUNS:-2} > 0)); then
    # THROTTLE_ANON=120/min THROTTLE_LOGIN=20/min ...: the defaults a server with DEBUG off applies.
    read -r -a production_rates < <(cd "$ROOT" && DJANGO_DEBUG=1 .venv/bin/python -c \
        'from messaging_app.settings import PRODUCTION_THROTTLE_RATES as r
print(" ".join(f"THROTTLE_{scope.upper()}={rate}" for scope, rate in r.items()))')
    production_log="$(mktemp "${TMPDIR:-/tmp}/messaging_app-newman.XXXXXX")"
    trap 'rm -f "$production_log"' EXIT
    ( [[ -z "${LIVE_PORT:-}" ]] || export LIVE_PORT=$((LIVE_PORT + 1))
      exec env "${production_rates[@]}" bash "$ROOT/scripts/live_server.sh" \
          bash "$SELF" --runs production "${NEWMAN_PRODUCTION_RUNS:-2}" "$@" ) >"$production_log" 2>&1 &
    production_pid=$!
    log "production rates (${production_rates[*]}): pass started, its output follows the development pass"
fi

status=0
bash "$ROOT/scripts/live_server.sh" bash "$SELF" --runs development "${NEWMAN_RUNS:-3}" "$@" || status=$?

if [[ -n "$production_pid" ]]; then
    production_status=0
    wait "$production_pid" || production_status=$?
    log "---- production rates pass ----"
    cat "$production_log"
    ((production_status == 0)) || { log "production rates pass failed (exit $production_status)"; status=1; }
fi
((status == 0)) && log "every run passed"
exit "$status"
