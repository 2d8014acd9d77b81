#!/usr/bin/env bash
# Runs the Postman collection with newman against a throwaway development server.
#
#   bash scripts/newman.sh [extra newman options...]
#
# Needs the virtualenv (`make install`) and Node.js with npm. Every run uses a
# fresh SQLite database in a temporary directory; nothing in the repository is
# touched. newman is installed once into a cache outside the repository.
#
# Environment:
#   NEWMAN_PORT            port of the temporary server (default 8765)
#   NEWMAN_HOME            where newman is installed
#                          (default ${XDG_CACHE_HOME:-$HOME/.cache}/messaging_app-newman)
#   NEWMAN_SERVER_TIMEOUT  seconds to wait for the server to answer (default 30)
#
# Exit status: newman's (0 when every assertion passed), or 1 when setup fails.
set -euo pipefail

NEWMAN_VERSION="6.2.2"
PORT="${NEWMAN_PORT:-8765}"
NEWMAN_DIR="${NEWMAN_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/messaging_app-newman}"
SERVER_TIMEOUT="${NEWMAN_SERVER_TIMEOUT:-30}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="$ROOT/.venv/bin/python"
COLLECTION="$ROOT/post_man-Collections/messaging_app.postman_collection.json"
ENVIRONMENT="$ROOT/post_man-Collections/messaging_app.postman_environment.json"
BASE_URL="http://127.0.0.1:${PORT}"

log() { printf '[newman.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$PY" ]] || die "$PY not found: run 'make install' first."
command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js (which brings npm) first."
[[ -f "$COLLECTION" && -f "$ENVIRONMENT" ]] || die "collection or environment file missing."

tmp="$(mktemp -d "${TMPDIR:-/tmp}/messaging_app-newman.XXXXXX")"
server_pid=""

cleanup() {
    local status=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        # Give it a moment to stop, then insist.
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Answers with any HTTP status (401 included) once the server is up.
server_answers() {
    "$PY" - "$BASE_URL/api/" <<'EOF' >/dev/null 2>&1
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
EOF
}

show_server_log() {
    log "server log ($tmp/server.log):"
    sed 's/^/    /' "$tmp/server.log" >&2 || true
}

if server_answers; then
    die "something already answers on $BASE_URL; pick another port with NEWMAN_PORT=..."
fi

export DJANGO_DEBUG=1
export DATABASE_URL="sqlite:///$tmp/db.sqlite3"

log "migrating a fresh database in $tmp"
"$PY" manage.py migrate --no-input -v 0

log "starting the server on $BASE_URL"
"$PY" manage.py runserver "127.0.0.1:${PORT}" --noreload >"$tmp/server.log" 2>&1 &
server_pid=$!

deadline=$((SECONDS + SERVER_TIMEOUT))
until server_answers; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        show_server_log
        die "the server exited before answering."
    fi
    if ((SECONDS >= deadline)); then
        show_server_log
        die "the server did not answer within ${SERVER_TIMEOUT}s."
    fi
    sleep 0.5
done

NEWMAN="$NEWMAN_DIR/node_modules/.bin/newman"
if [[ ! -x "$NEWMAN" ]] || [[ "$("$NEWMAN" --version 2>/dev/null || true)" != "$NEWMAN_VERSION" ]]; then
    log "installing newman@$NEWMAN_VERSION into $NEWMAN_DIR"
    mkdir -p "$NEWMAN_DIR"
    npm install --prefix "$NEWMAN_DIR" --no-audit --no-fund --loglevel=error "newman@$NEWMAN_VERSION" >&2
fi

log "running the collection"
status=0
"$NEWMAN" run "$COLLECTION" \
    --environment "$ENVIRONMENT" \
    --env-var "baseUrl=$BASE_URL" \
    "$@" || status=$?

if ((status != 0)); then
    log "newman failed (exit $status)"
    show_server_log
fi
exit "$status"
