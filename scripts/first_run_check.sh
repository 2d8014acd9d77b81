#!/usr/bin/env bash
# A newcomer's first run, from a fresh clone of the committed tree, exactly as the README says:
# `make run` sets up and serves, `make seed` works on the same PORT, every page the landing page
# and the README link to answers (scripts/crawl_links.py, anonymous and logged in), a second
# `make run` on the busy port exits non-zero with a clear message, and no log shows a traceback.
#
#   bash scripts/first_run_check.sh        (FIRST_RUN_PORT=... to choose the port)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${FIRST_RUN_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
BASE_URL="http://127.0.0.1:${PORT}"
work="$(mktemp -d "${TMPDIR:-/tmp}/messaging_app-first-run.XXXXXX")"
server_pid=""

log() { printf '[first_run] %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; for f in "$work"/*.log; do log "--- $f"; tail -n 40 "$f" >&2; done; exit 1; }
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local status=$?
    if [[ -n "$server_pid" ]]; then
        kill -TERM -- "-$server_pid" 2>/dev/null || true
        for _ in $(seq 20); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.25; done
        kill -KILL -- "-$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

git clone -q "$ROOT" "$work/clone"
cd "$work/clone"

log "make run on port $PORT (a fresh clone: it installs, migrates, then serves)"
started=$SECONDS
setsid env PORT="$PORT" make run >"$work/run.log" 2>&1 &
server_pid=$!
until curl -s -o /dev/null --max-time 2 "$BASE_URL/"; do
    kill -0 "$server_pid" 2>/dev/null || fail "make run exited before serving"
    ((SECONDS - started < 600)) || fail "make run did not serve within 600 s"
    sleep 1
done
log "serving after $((SECONDS - started)) s"

PORT="$PORT" make seed >"$work/seed.log" 2>&1 || fail "make seed failed"
grep -q "$BASE_URL" "$work/seed.log" || fail "make seed does not print links to port $PORT"
grep -q "127.0.0.1:8000" "$work/seed.log" && [[ "$PORT" != 8000 ]] && fail "make seed still prints port 8000"

python3 scripts/crawl_links.py "$BASE_URL" --email alice@example.com --password demo-password-123 \
    || fail "a page the landing page or README links to is broken"

log "a second make run on the busy port must exit non-zero with a clear message"
set +e
PORT="$PORT" timeout 120 make run >"$work/busy.log" 2>&1
busy_status=$?
set -e
((busy_status != 0 && busy_status != 124)) || fail "make run on a busy port exited $busy_status (124: it hung)"
grep -qi "in use" "$work/busy.log" || fail "make run on a busy port did not say the port is in use"

if grep -n "Traceback" "$work"/*.log; then fail "a traceback in the logs"; fi
log "first run: served, seeded, every linked page answered, busy port refused, no traceback"
