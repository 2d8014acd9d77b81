#!/usr/bin/env bash
# Runs a command against a throwaway development server, then stops the server.
#
#   bash scripts/live_server.sh COMMAND [ARGS...]
#
# The server uses a fresh SQLite database (and attachments directory) in a temporary directory and listens on
# 127.0.0.1:${LIVE_PORT:-a free port}; COMMAND sees its address in $BASE_URL. Exit status:
# COMMAND's, or 1 when the server cannot be started. Needs the virtualenv (`make install`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
# A free port unless LIVE_PORT names one, so a busy 8765 never fails a run.
PORT="${LIVE_PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
TIMEOUT="${LIVE_SERVER_TIMEOUT:-30}"
export BASE_URL="http://127.0.0.1:${PORT}"

log() { printf '[live_server] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

(($# > 0)) || die "usage: bash scripts/live_server.sh COMMAND [ARGS...]"
[[ -x "$PY" ]] || die "$PY not found: run 'make install' first."

tmp="$(mktemp -d "${TMPDIR:-/tmp}/messaging_app-live.XXXXXX")"
server_pid=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local status=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 10); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

answers() { curl -s -o /dev/null --max-time 2 "$BASE_URL/api/"; }
show_log() { log "server log:"; sed 's/^/    /' "$tmp/server.log" >&2 || true; }

answers && die "something already answers on $BASE_URL; pick another port with LIVE_PORT=..."

cd "$ROOT"
export DJANGO_DEBUG=1 DATABASE_URL="sqlite:///$tmp/db.sqlite3" DJANGO_MEDIA_ROOT="$tmp/media"
"$PY" manage.py migrate --no-input -v 0
"$PY" manage.py runserver "127.0.0.1:${PORT}" --noreload >"$tmp/server.log" 2>&1 &
server_pid=$!

deadline=$((SECONDS + TIMEOUT))
until answers; do
    kill -0 "$server_pid" 2>/dev/null || { show_log; die "the server exited before answering."; }
    ((SECONDS < deadline)) || { show_log; die "the server did not answer within ${TIMEOUT}s."; }
    sleep 0.5
done
log "serving on $BASE_URL"

status=0
"$@" || status=$?
((status == 0)) || { log "command failed (exit $status)"; show_log; }
exit "$status"
