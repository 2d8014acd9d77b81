#!/usr/bin/env bash
# A local, faithful stand-in for the Kubernetes blue/green switch (kubctl-0x02):
# two production-mode servers of the app (gunicorn + uvicorn workers, DEBUG off) play the blue
# and green Deployments, nginx plays the Service/ingress. Its upstream lives in an included file
# that names one colour, as the Service's selector does; mid-way through a bounded request loop
# the include is switched to green and nginx reloaded, then blue is stopped gracefully (SIGTERM),
# as retiring the old Deployment would. Reports total and failed requests (goal: 0 failed) and
# which colour answered before and after.
#
#   bash scripts/bluegreen_nginx_demo.sh            # DURATION=20 CLIENTS=4 by default
#
# Needs the virtualenv (`make install`) and nginx (installed with apt-get when missing and run
# as root). Everything runs on 127.0.0.1 in a temporary directory removed on exit.
set -euo pipefail

DURATION="${DURATION:-20}"               # seconds of requests
SWITCH_AT="${SWITCH_AT:-$((DURATION / 2))}"   # seconds into the loop: blue -> green
RETIRE_AFTER="${RETIRE_AFTER:-3}"        # seconds after the switch: SIGTERM to blue
CLIENTS="${CLIENTS:-4}"                  # concurrent request loops
WORKERS="${GUNICORN_WORKERS:-2}"         # gunicorn workers per colour
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
GUNICORN="$ROOT/.venv/bin/gunicorn"

log() { printf '[bluegreen] %s\n' "$*"; }
die() { log "error: $*" >&2; exit 2; }

for v in DURATION SWITCH_AT RETIRE_AFTER CLIENTS WORKERS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number"
done
((DURATION >= 6 && DURATION <= 300)) || die "DURATION must be 6-300 seconds"
((SWITCH_AT >= 2 && SWITCH_AT + RETIRE_AFTER < DURATION)) || die "need 2 <= SWITCH_AT and SWITCH_AT + RETIRE_AFTER < DURATION"
((CLIENTS >= 1 && CLIENTS <= 32)) || die "CLIENTS must be 1-32"
[[ -x "$PY" && -x "$GUNICORN" ]] || die "$ROOT/.venv is missing gunicorn: run 'make install' first"
command -v curl >/dev/null || die "curl not found"
if ! command -v nginx >/dev/null && ! [[ -x /usr/sbin/nginx ]]; then
    [[ "$(id -u)" == 0 ]] || die "nginx is not installed (sudo apt-get install nginx)"
    log "installing nginx (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/bluegreen.XXXXXX")"
declare -A server_pid=()
client_pids=()
nginx_started=0
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local status=$?
    trap - INT TERM
    for pid in "${client_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if ((nginx_started)); then
        "$NGINX" -p "$tmp/nginx/" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" -s quit 2>/dev/null || true
    fi
    for colour in "${!server_pid[@]}"; do kill -TERM -- "-${server_pid[$colour]}" 2>/dev/null || true; done
    for _ in $(seq 50); do
        alive=0
        for colour in "${!server_pid[@]}"; do kill -0 -- "-${server_pid[$colour]}" 2>/dev/null && alive=1; done
        if ((nginx_started)) && [[ -f "$tmp/nginx/nginx.pid" ]] && kill -0 "$(cat "$tmp/nginx/nginx.pid")" 2>/dev/null; then alive=1; fi
        ((alive)) || break
        sleep 0.2
    done
    for colour in "${!server_pid[@]}"; do kill -9 -- "-${server_pid[$colour]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- the app, production mode ---------------------------------------------------------
# DEBUG off with a throwaway secret; HTTPS redirect stays on: nginx sends X-Forwarded-Proto:
# https as the TLS-terminating ingress does, so the app's proxy-header trust is exercised too.
export DJANGO_DEBUG=0
export DJANGO_SECRET_KEY="bluegreen-demo-only-not-a-secret-$RANDOM$RANDOM$RANDOM$RANDOM"
export DJANGO_ALLOWED_HOSTS="localhost,127.0.0.1"
export DJANGO_NUM_PROXIES=1
export DATABASE_URL="sqlite:///$tmp/db.sqlite3"
export DJANGO_STATIC_ROOT="$tmp/static"
export DJANGO_LOG_LEVEL=WARNING
export GUNICORN_WORKERS="$WORKERS"
export PYTHONDONTWRITEBYTECODE=1
if command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
    # /readyz then checks Redis as well, as in the cluster. Database 14: nothing is written
    # (anonymous requests here stop at authentication, before the throttling counters).
    export REDIS_URL="redis://127.0.0.1:6379/14"
else
    unset REDIS_URL
    log "Redis not answering on 127.0.0.1:6379: running without it"
fi

cd "$ROOT"
t0=$SECONDS
log "migrating a fresh SQLite database and collecting static files ($tmp)"
"$PY" manage.py migrate --no-input -v 0
"$PY" manage.py collectstatic --no-input -v 0

declare -A port=()
start_server() {
    local colour=$1
    port[$colour]="$(free_port)"
    # In a session of its own: cleanup can then stop the master and its workers as one group.
    GUNICORN_BIND="127.0.0.1:${port[$colour]}" setsid "$GUNICORN" --chdir "$ROOT" -c "$ROOT/gunicorn.conf.py" \
        messaging_app.asgi:application >"$tmp/$colour.log" 2>&1 &
    server_pid[$colour]=$!
}
wait_ready() {
    local colour=$1
    for _ in $(seq 150); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:${port[$colour]}/readyz")" == 200 ]] && return 0
        kill -0 "${server_pid[$colour]}" 2>/dev/null || break
        sleep 0.2
    done
    sed 's/^/    /' "$tmp/$colour.log" >&2
    die "$colour did not become ready"
}
start_server blue
start_server green
wait_ready blue
wait_ready green
log "blue: gunicorn pid ${server_pid[blue]} on 127.0.0.1:${port[blue]}; green: pid ${server_pid[green]} on 127.0.0.1:${port[green]} ($WORKERS workers each; ready after $((SECONDS - t0))s)"

# --- nginx in front ---------------------------------------------------------------------
mkdir -p "$tmp/nginx"
NGINX_PORT="$(free_port)"
write_upstream() {   # the "Service selector": which colour the upstream names
    local colour=$1
    cat >"$tmp/nginx/upstream.conf.new" <<EOF
upstream messaging_app {
    server 127.0.0.1:${port[$colour]};
    keepalive 16;
}
add_header X-Upstream-Color $colour always;
add_header X-Upstream-Addr \$upstream_addr always;
EOF
    mv "$tmp/nginx/upstream.conf.new" "$tmp/nginx/upstream.conf"
}
write_upstream blue
user_line=""
[[ "$(id -u)" == 0 ]] && user_line="user root;"
cat >"$tmp/nginx/nginx.conf" <<EOF
$user_line
worker_processes 2;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 512; }
http {
    access_log $tmp/nginx/access.log;
    client_body_temp_path $tmp/nginx/client_body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    include $tmp/nginx/upstream.conf;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://messaging_app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            # Stands in for the ingress, which terminates TLS.
            proxy_set_header X-Forwarded-Proto https;
            proxy_read_timeout 60s;
        }
    }
}
EOF
nginx_cmd() { "$NGINX" -p "$tmp/nginx/" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" "$@"; }
nginx_cmd -t -q || die "nginx rejected the configuration"
nginx_cmd
nginx_started=1
BASE="http://127.0.0.1:$NGINX_PORT"
for _ in $(seq 50); do curl -s -o /dev/null --max-time 1 "$BASE/healthz" && break; sleep 0.1; done
log "nginx on $BASE -> blue"

# --- the request loop ---------------------------------------------------------------------
# "<path> <expected status>": the probes, an API call the app refuses without a token (JSON
# 401) and a static file served by WhiteNoise.
checks=("/healthz 200" "/readyz 200" "/api/ping/ 401" "/static/admin/css/base.css 200")
client() {
    local out=$1 end=$((SECONDS + DURATION)) n=0 item path expected line
    while ((SECONDS < end && n < DURATION * 500)); do
        for item in "${checks[@]}"; do
            path="${item% *}"
            expected="${item#* }"
            # <ms since start> <path> <expected> <status> <colour>
            line="$(curl -s -o /dev/null --max-time 5 -w "%{http_code} %header{x-upstream-color}" "$BASE$path" || true)"
            echo "$(($(date +%s%3N) - start_ms)) $path $expected ${line:-000} " >>"$out"
            n=$((n + 1))
        done
    done
}
start_ms=$(date +%s%3N)
for i in $(seq "$CLIENTS"); do
    client "$tmp/results.$i" &
    client_pids+=("$!")
done
log "$CLIENTS clients for ${DURATION}s: ${checks[*]}"

sleep "$SWITCH_AT"
write_upstream green
switch_ms=$(($(date +%s%3N) - start_ms))
nginx_cmd -s reload
log "t=${switch_ms}ms: upstream -> green, nginx reloaded"
sleep "$RETIRE_AFTER"
retire_ms=$(($(date +%s%3N) - start_ms))
kill -TERM "${server_pid[blue]}" 2>/dev/null || log "blue had already exited"
log "t=${retire_ms}ms: SIGTERM to blue (graceful stop, as when the old Deployment is scaled down)"
wait "${client_pids[@]}" || true
client_pids=()
end_ms=$(($(date +%s%3N) - start_ms))
blue_stopped="no"
kill -0 "${server_pid[blue]}" 2>/dev/null || blue_stopped="yes"

# Memory of the green server (master + workers), for the Deployment's resource requests.
green_rss_kb="$(ps -o rss= --pid "${server_pid[green]}" --ppid "${server_pid[green]}" | awk '{s += $1} END {print s + 0}')"

# --- report --------------------------------------------------------------------------------
ok=1
cat "$tmp"/results.* >"$tmp/results"
awk -v sw="$switch_ms" -v rt="$retire_ms" -v dur="$end_ms" '
    {
        total++
        if ($4 != $3) { failed++; why[$2 " -> " $4]++ }
        colour = ($5 == "") ? "none" : $5
        if ($1 < sw) before[colour]++; else after[colour]++
        if (colour == "blue" && $1 > last_blue) last_blue = $1
        if (colour == "green" && (first_green == "" || $1 < first_green)) first_green = $1
        if ($1 >= rt + 1000 && colour != "green") late++
    }
    END {
        printf "[bluegreen] requests: %d in %.1fs (%.0f/s), failed: %d\n", total, dur / 1000, total * 1000 / dur, failed + 0
        for (w in why) printf "[bluegreen]   failed %s: %d\n", w, why[w]
        printf "[bluegreen] before the switch (t < %dms):", sw; for (c in before) printf " %s=%d", c, before[c]; print ""
        printf "[bluegreen] after the switch:";                  for (c in after) printf " %s=%d", c, after[c]; print ""
        printf "[bluegreen] last blue answer at t=%dms, first green at t=%dms (switch at %dms)\n", last_blue, first_green, sw
        if (late) printf "[bluegreen] %d answers not from green more than 1 s after blue was stopped\n", late
        exit (total > 0 && failed == 0 && late == 0 && before["blue"] > 0 && after["green"] > 0) ? 0 : 1
    }' "$tmp/results" || ok=0
log "blue stopped by the end: $blue_stopped; green server RSS (master + $WORKERS workers): $((green_rss_kb / 1024)) MiB"
grep -E '\[(error|crit|alert|emerg)\]' "$tmp/nginx/error.log" | sed 's/^/[bluegreen] nginx: /' | head -n 5 || true
if ((ok)); then
    log "RESULT: switch without a failed request"
else
    log "RESULT: FAILED (see above)"
    exit 1
fi
