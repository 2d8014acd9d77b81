#!/usr/bin/env bash
# Runs the Postman collection with newman against a throwaway development server.
#
#   bash scripts/newman.sh [extra newman options...]
#
# Needs the virtualenv (`make install`) and Node.js with npm. The server comes from
# scripts/live_server.sh (fresh SQLite database, port ${LIVE_PORT:-8765}). newman is
# installed once into a cache outside the repository:
#   NEWMAN_HOME  (default ${XDG_CACHE_HOME:-$HOME/.cache}/messaging_app-newman)
#
# Exit status: newman's (0 when every assertion passed), or 1 when setup fails.
set -euo pipefail

NEWMAN_VERSION="6.2.2"
NEWMAN_DIR="${NEWMAN_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/messaging_app-newman}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COLLECTION="$ROOT/post_man-Collections/messaging_app.postman_collection.json"
ENVIRONMENT="$ROOT/post_man-Collections/messaging_app.postman_environment.json"

log() { printf '[newman.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js (which brings npm) first."
[[ -f "$COLLECTION" && -f "$ENVIRONMENT" ]] || die "collection or environment file missing."

NEWMAN="$NEWMAN_DIR/node_modules/.bin/newman"
if [[ ! -x "$NEWMAN" ]] || [[ "$("$NEWMAN" --version 2>/dev/null || true)" != "$NEWMAN_VERSION" ]]; then
    log "installing newman@$NEWMAN_VERSION into $NEWMAN_DIR"
    mkdir -p "$NEWMAN_DIR"
    npm install --prefix "$NEWMAN_DIR" --no-audit --no-fund --loglevel=error "newman@$NEWMAN_VERSION" >&2
fi

# live_server.sh exports BASE_URL for the command it runs.
# shellcheck disable=SC2016
exec bash "$ROOT/scripts/live_server.sh" bash -c \
    '"$0" run "$1" --environment "$2" --env-var "baseUrl=$BASE_URL" "${@:3}"' \
    "$NEWMAN" "$COLLECTION" "$ENVIRONMENT" "$@"
