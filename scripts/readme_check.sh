#!/usr/bin/env bash
# shellcheck disable=SC2016  # single-quoted $BASE_URL belongs to the generated script
# Proves the README's curl walkthrough works as written: extracts the ```bash block under
# "## Try it with curl" and runs it against a throwaway server, failing on any HTTP error.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
block="$(mktemp)"
trap 'rm -f "$block"' EXIT

{
    echo 'set -euo pipefail'
    # Any 4xx/5xx fails the walkthrough; the block's own output stays visible.
    echo 'curl() { command curl --fail-with-body "$@"; }'
    awk '/^## Try it with curl/ {section=1} section && /^```bash/ {inside=1; next}
         inside && /^```/ {exit} inside {print}' "$ROOT/README.md" |
        sed 's#^API=http://127.0.0.1:8000/api#API="$BASE_URL/api"#'
} >"$block"

grep -q 'API="$BASE_URL/api"' "$block" || { echo "README walkthrough not found or API= line changed" >&2; exit 1; }
bash "$ROOT/scripts/live_server.sh" bash "$block" >/dev/null
echo "README walkthrough: every request succeeded"
